"""JobManager events -> a WebUI's progress state, and the WebUI's Interrupt/Skip -> the manager.

Host-independent: ``state`` is anything with the attributes of A1111's ``modules.shared.state``
(job_count, job_no, sampling_step(s), textinfo, interrupted, skipped, begin(), end(),
assign_current_image()), ``lock`` the WebUI's generation lock. While Wan jobs run, a holder
thread owns the lock (the WebUI's own generations wait, as they do for each other), frees the
SD checkpoint first (``before``) and brings it back when the queue is empty (``after``).

Wiring: pass ``before_job``/``after_job`` to ``JobManager`` (the bridge exists first, so a job
left queued by the last session is covered too), then set ``bridge.manager`` and subscribe the
bridge. ``before_job`` blocks the manager's dispatcher until the lock is held and the
checkpoint is unloaded, so the worker never starts loading Wan next to a running SD
generation. The event callback never blocks: it only sets fields.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from typing import Any, Callable


class ProgressBridge:
    """``manager`` may be None at first and set later (the manager takes the bridge's hooks)."""

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
        self._held = threading.Event()  # set once the current holder owns the lock and ran before()
        self._exiting = False  # the current holder decided to let go: the next job needs a new one
        self._jobs = 0  # jobs between before_job and after_job
        self._guard = threading.Lock()  # guards the four fields above
        self._windows = 0
        self._frames = 0
        self._frames_written = 0

    # --- manager events (dispatcher thread: never block) ------------------------------
    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        s = self.state
        if kind == "job_running":
            self._windows = self._frames = self._frames_written = 0
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

    # --- JobManager hooks (dispatcher thread) ----------------------------------------
    def before_job(self, job: dict) -> None:
        """Return once the WebUI's lock is held and ``before`` ran (waits for a running
        WebUI generation to finish first)."""
        with self._guard:
            self._jobs += 1
            if self._holder is None or not self._holder.is_alive() or self._exiting:
                self._held = threading.Event()
                self._exiting = False
                self._holder = threading.Thread(target=self._hold, args=(self._held, self._holder),
                                                name="wan-webui-bridge", daemon=True)
                self._holder.start()
            held = self._held
        held.wait()

    def after_job(self, job: dict) -> None:
        with self._guard:
            self._jobs = max(0, self._jobs - 1)

    # --- the holder thread ------------------------------------------------------------
    def _queue_idle(self) -> bool:
        if self.manager is None:
            return True
        try:
            info = self.manager.state()
        except Exception:  # the manager shut down (its database is closed): nothing more runs
            return True
        return info.get("current") is None and (info.get("queued", 0) == 0 or info.get("paused"))

    def _hold(self, held: threading.Event, previous: threading.Thread | None) -> None:
        if previous is not None:
            previous.join()  # it reloads the checkpoint and ends the WebUI's job first
        try:
            with (self.lock if self.lock is not None else contextlib.nullcontext()):
                try:
                    self.state.begin(job="wan")
                    self._call(self.before)
                finally:
                    held.set()  # never leave the dispatcher waiting
                try:
                    self._watch()
                finally:
                    self._call(self.after)
                    self.state.end()
        finally:
            held.set()

    def _watch(self) -> None:
        """Forward the WebUI's Interrupt/Skip until no job has run for two polls (a job
        hand-over is not the end of the queue: the checkpoint is not reloaded in between)."""
        idle_polls, interrupted = 0, False
        while True:
            if self.state.interrupted and not interrupted and self.manager is not None:
                interrupted = True  # the WebUI's flag stays set until the next begin()
                self._call(self.manager.interrupt)
            elif getattr(self.state, "skipped", False) and self.manager is not None:
                self.state.skipped = False
                self._call(self.manager.skip)
            queue_idle = self._queue_idle()
            with self._guard:
                idle_polls = idle_polls + 1 if self._jobs == 0 and queue_idle else 0
                if idle_polls >= 2:
                    self._exiting = True  # from here on before_job starts a new holder
                    return
            time.sleep(self.poll_seconds)

    @staticmethod
    def _call(fn) -> None:
        try:
            fn()
        except Exception as exc:  # unloading/reloading the SD model (or a closed manager) must not stop Wan
            print(f"deforum-wan: {type(exc).__name__}: {exc}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    def wait_idle(self, timeout: float | None = None) -> bool:
        holder = self._holder
        if holder is None:
            return True
        holder.join(timeout)
        return not holder.is_alive()
