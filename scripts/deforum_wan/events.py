"""Every event a render, the worker, the job queue and a batch emit, with its fields.

Events are plain dicts ``{"event": NAME, "time": seconds, **fields}``: JSON lines on the
worker's pipe and from ``render --events``, callbacks in-process. This table is the
protocol: ``make`` refuses a name it does not hold, and a test checks that every
event the code emits is named here.
"""
from __future__ import annotations

import time

# name -> fields (every one present in the event; values may be null where noted)
EVENTS: dict[str, tuple[str, ...]] = {
    # one render (render.loop.Renderer)
    "started": ("run_dir", "timestring", "windows", "frames", "resume_from_window", "warnings",
                "window_steps"),
    "loading": ("model",),
    "loaded": ("model", "backend", "report", "notes", "warm"),
    "step": ("window", "step", "steps"),
    "window_done": ("window", "windows", "start_frame", "end_frame", "frames_written", "preview"),
    "warning": ("message",),
    "done": ("run_dir", "timestring", "frames", "video", "settings"),  # video: null if skipped
    "interrupted": ("run_dir", "timestring", "frames", "video", "settings"),
    "error": ("settings", "message"),  # render --events: one file of several failed
    # the worker process (service.worker), each job event with "job"
    "ready": ("pid", "keep_warm", "protocol"),
    "bye": (),
    "protocol_error": ("message",),
    "job_started": ("job",),
    "job_done": ("job", "status"),  # status: done | interrupted | cancelled
    "job_error": ("job", "message"),
    # the job queue (service.jobs)
    "job_queued": ("job",),
    "job_running": ("job",),
    "job_cancelled": ("job",),
    "queue_paused": (),
    # a batch (service.batch): a job's windows before it runs, and notes for the person
    "planned": ("window_steps",),
    "note": ("message",),
}
# What a render's consumer sees of its progress (a batch's actors forward these).
PROGRESS = ("started", "loading", "loaded", "step", "window_done", "warning")


def make(name: str, **fields) -> dict:
    """One event; a name outside the table is a bug, caught here rather than by a consumer."""
    if name not in EVENTS:
        raise KeyError(f"unknown event {name!r}")
    return {"event": name, "time": round(time.time(), 3), **fields}
