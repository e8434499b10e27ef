"""JobManager events -> a WebUI's progress state, and the WebUI's Interrupt/Skip -> the manager.

Host-independent: ``state`` is anything with the attributes of A1111's ``modules.shared.state``
(job_count, job_no, sampling_step(s), textinfo, interrupted, skipped, begin(), end(),
assign_current_image()), ``lock`` the WebUI's generation lock. While Wan jobs run, a holder
thread owns the lock (the WebUI's own generations wait, as they do for each other), frees the
SD checkpoint first (``before``) and brings it back when the queue is empty (``after``).
The manager's callback never blocks: it only sets fields and starts the holder.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from typing import Any, Callable


class ProgressBridge:
    def __init__(self, manager, state, *, lock=None, before: Callable[[], Any] | None = None,
                 after: Callable[[], Any] | None = None, load_image: Callable[[str], Any] | None = None,
                 poll_seconds: float = 0.25):
        self.manager = manager
        self.state = state
        self.lock = lock
        self.before = before or (lambda: None)
        self.after = after or (lambda: None)
        self.load_image = load_image
        self.poll_seconds = poll_seconds
        self._holder: threading.Thread | None = None
        self._guard = threading.Lock()
        self._windows = 0
        self._frames = 0
        self._frames_written = 0

    # --- manager events (dispatcher thread: never block) ------------------------------
    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        s = self.state
        if kind == "job_running":
            self._windows = self._frames = self._frames_written = 0
            self._ensure_holder()
        elif kind == "started":
            self._windows, self._frames = event.get("windows", 0), event.get("frames", 0)
            s.job_count = self._windows
            s.job_no = event.get("resume_from_window", 0)
        elif kind == "step":
            s.job_no = event.get("window", 0)
            s.sampling_step, s.sampling_steps = event.get("step", 0), event.get("steps", 0)
            s.textinfo = self._text(event.get("window", 0), event.get("step", 0), event.get("steps", 0))
        elif kind == "window_done":
            s.job_no = event.get("window", 0) + 1
            self._frames_written = event.get("frames_written", 0)
            s.textinfo = self._text(event.get("window", 0), 0, 0)
            self._show(event.get("preview"))
        elif kind == "queue_paused":
            s.interrupted = True  # the tab's Interrupt shows as the WebUI's

    def _text(self, window: int, step: int, steps: int) -> str:
        text = f"Wan: window {min(window + 1, self._windows or window + 1)}/{self._windows or '?'}"
        if steps:
            text += f", step {step}/{steps}"
        return text + f", frames {self._frames_written}/{self._frames}"

    def _show(self, path: str | None) -> None:
        if not path or self.load_image is None:
            return
        try:
            image = self.load_image(path)
        except Exception:  # a preview is optional; the render goes on
            return
        assign = getattr(self.state, "assign_current_image", None)
        if assign is not None:
            assign(image)
        else:
            self.state.current_image = image

    # --- the holder thread ------------------------------------------------------------
    def _ensure_holder(self) -> None:
        with self._guard:
            if self._holder is not None and self._holder.is_alive():
                return
            self._holder = threading.Thread(target=self._hold, name="wan-webui-bridge", daemon=True)
            self._holder.start()

    def _idle(self) -> bool:
        info = self.manager.state()
        return info.get("current") is None and (info.get("queued", 0) == 0 or info.get("paused"))

    def _hold(self) -> None:
        with (self.lock if self.lock is not None else contextlib.nullcontext()):
            self.state.begin(job="wan")
            self._call(self.before)
            try:
                idle_polls, interrupted = 0, False
                while idle_polls < 2:  # twice: a job hand-over is not the end of the queue
                    if self.state.interrupted and not interrupted:
                        interrupted = True  # the WebUI's flag stays set until the next begin()
                        self.manager.interrupt()
                    elif getattr(self.state, "skipped", False):
                        self.state.skipped = False
                        self.manager.skip()
                    idle_polls = idle_polls + 1 if self._idle() else 0
                    time.sleep(self.poll_seconds)
            finally:
                self._call(self.after)
                self.state.end()

    @staticmethod
    def _call(fn) -> None:
        try:
            fn()
        except Exception as exc:  # unloading/reloading the SD model must not stop Wan
            print(f"deforum-wan: {type(exc).__name__}: {exc}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    def wait_idle(self, timeout: float | None = None) -> bool:
        holder = self._holder
        if holder is None:
            return True
        holder.join(timeout)
        return not holder.is_alive()
