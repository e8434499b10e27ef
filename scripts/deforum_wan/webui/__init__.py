"""The Wan tab: the gradio builder, its fields <-> settings, gradio 3/4/6 compatibility, the
host's progress bridge and the worker's host packages. Never imports the WebUI itself."""
