"""Renders for someone else: the job queue and its SQLite store, the worker process and its
client, the /wan_api/ routes, batches here or on Ray."""
