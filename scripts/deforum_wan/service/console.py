"""One console line per moment of a queued job (its start, each window, its end or failure),
for the host's terminal: a WebUI user sees there what the tab shows, and a log keeps it.

``manager.subscribe(ConsoleLog(manager))``; events come from the dispatcher thread.
"""
from __future__ import annotations

import sys
from typing import Callable, TextIO


class ConsoleLog:
    def __init__(self, manager, out: TextIO | None = None, prefix: str = "deforum-wan"):
        self.manager = manager
        self.out = out
        self.prefix = prefix

    def _name(self, job_id: str) -> str:
        try:
            job = self.manager.get(job_id)
        except Exception:  # the record is unreadable now (database trouble): the id still says which
            return f"job {job_id}"
        return f"job {job_id} ({job['name']})" if job.get("name") else f"job {job_id}"

    def __call__(self, event: dict) -> None:
        line = self.line(event)
        if line:
            print(f"{self.prefix}: {line}", file=self.out or sys.stdout, flush=True)

    def line(self, event: dict) -> str | None:
        kind, job = event.get("event"), event.get("job")
        if not job:
            return None
        format_ = _LINES.get(kind)
        return format_(self._name(job), event) if format_ else None


def _started(name: str, e: dict) -> str:
    resumed = f", resuming at window {e['resume_from_window'] + 1}" if e.get("resume_from_window") else ""
    return f"{name} started: {e.get('windows')} windows, {e.get('frames')} frames in {e.get('run_dir')}{resumed}"


def _window(name: str, e: dict) -> str:
    return (f"{name} window {e.get('window', 0) + 1}/{e.get('windows')} done, frames"
            f" {e.get('frames_written')} on disk")


def _done(name: str, e: dict) -> str:
    status = e.get("status")
    tail = f": {e['message']}" if e.get("message") else ""
    return f"{name} {status}{tail}" if status != "done" else f"{name} done"


_LINES: dict[str, Callable[[str, dict], str]] = {
    "job_queued": lambda name, e: f"{name} queued",
    "started": _started,
    "loading": lambda name, e: f"{name} loading {e.get('model')}",
    "window_done": _window,
    "done": lambda name, e: f"{name} finished {e.get('frames')} frames" + (f", video {e['video']}" if e.get("video")
                                                                          else ""),
    "job_done": _done,
    "job_error": lambda name, e: f"{name} failed: {e.get('message')}",
}
