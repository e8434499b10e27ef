"""JobManager events -> a WebUI's progress state, and the WebUI's Interrupt/Skip -> the manager.

Host-independent: ``state`` is anything with the attributes of A1111's ``modules.shared.state``
(job_count, job_no, sampling_step(s), textinfo, interrupted, skipped, begin(), end(),
assign_current_image()), ``lock`` the WebUI's generation lock. While Wan jobs run, a holder
thread owns the lock (the WebUI's own generations wait, as they do for each other), frees the
SD checkpoint first (``before``) and brings it back when the queue is empty (``after``).

The page's own progress bar: ``progress`` is anything with the task calls of A1111's
``modules.progress`` (add_task_to_queue, start_task, finish_task). The tab's Generate/Resume
JS makes a task id as txt2img's does and the tab hands it over (``task_queued`` before the
submit, ``task_jobs`` after): the task is pending until its first job holds the lock, the
WebUI's current task while its jobs run, finished when the last one ends (done, failed,
interrupted or cancelled), so /internal/progress answers for it. The state's fields are kept
so that A1111's progress (job_no/job_count + sampling_step/sampling_steps/job_count) only
grows, stays <= 1, and ``time_start`` is set so that its ETA (elapsed/progress - elapsed) is
the steps left times the seconds per step measured between steps (no model load counted).

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

from .. import events
from .progress_text import position


class ProgressBridge:
    """``manager`` may be None at first and set later (the manager takes the bridge's hooks)."""

    def __init__(self, manager, state, *, lock=None, before: Callable[[], Any] | None = None,
                 after: Callable[[], Any] | None = None, load_image: Callable[[str], Any] | None = None,
                 poll_seconds: float = 0.25, progress=None, clock: Callable[[], float] = time.time):
        self.manager = manager
        self.progress = progress
        self.clock = clock
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
        self._progress: dict | None = None  # events.reduce of the running job's events
        # the page's task ids: job id -> task, and the task of the job holding the lock
        self._task_of: dict[str, str] = {}
        self._running: str | None = None
        self._tasks = threading.Lock()

    # --- the page's task (its progress bar) ------------------------------------------
    def task_queued(self, id_task: str | None) -> None:
        """Before the submit: the page's bar shows "In queue" until the job starts."""
        if id_task and self.progress is not None:
            self._call(lambda: self.progress.add_task_to_queue(id_task))

    def task_jobs(self, id_task: str | None, job_ids: list[str]) -> None:
        """After the submit: the jobs the task follows (none: the submit failed, the task ends)."""
        if not id_task or self.progress is None:
            return
        with self._tasks:
            for job_id in job_ids:
                self._task_of[job_id] = id_task
            start = self._running in job_ids  # the dispatcher was quicker than this call
        if not job_ids:
            self._finish(id_task)
        elif start:
            self._call(lambda: self.progress.start_task(id_task))

    def _job_started(self, job_id: str) -> None:
        """The job holds the WebUI's lock: its task becomes the WebUI's current one."""
        with self._tasks:
            self._running = job_id
            task = self._task_of.get(job_id)
        s = self.state
        s.job = "wan"
        s.job_count, s.job_no, s.sampling_step, s.sampling_steps = 0, 0, 0, 0
        s.textinfo = "Wan: starting"
        s.current_image = None  # the last job's frame is not this one's preview
        s.time_start = self.clock()
        if task is not None and self.progress is not None:
            self._call(lambda: self.progress.start_task(task))

    def _job_ended(self, job_id: str | None) -> None:
        with self._tasks:
            if self._running == job_id:
                self._running = None
            task = self._task_of.pop(job_id, None)
            more = task in self._task_of.values()  # a batch: the task goes on with its next job
        if task is not None and not more and self.progress is not None:
            self._finish(task)

    def _finish(self, task: str) -> None:
        # finish_task leaves a never-started task pending (A1111 starts every task it runs):
        # dropped here, not by start_task, which would take "current" from an SD generation.
        pending = getattr(self.progress, "pending_tasks", None)
        if pending is not None:
            pending.pop(task, None)
        self._call(lambda: self.progress.finish_task(task))

    # --- manager events (dispatcher thread: never block) ------------------------------
    def __call__(self, event: dict) -> None:
        kind = event.get("event")
        s = self.state
        if kind in ("job_done", "job_error"):
            self._job_ended(event.get("job"))
        elif kind == "queue_paused":
            s.interrupted = True  # the tab's Interrupt shows as the WebUI's
        if kind not in events.PROGRESS and kind != "job_running":
            return
        before = None if kind == "job_running" else self._progress  # a job's progress starts with it
        p = self._progress = events.reduce(before, event)
        if kind == "started":
            s.job_no, s.sampling_step, s.job_count = self._timed(p["window"]), 0, p["windows"]
        elif kind == "loading":
            s.textinfo = self._text(p, phase=p["phase"])
        elif kind == "step":
            s.job_no, s.sampling_step, s.sampling_steps = self._timed(p["window"]), self._timed(p["step"]), p["steps"]
            s.textinfo = self._text(p)
            self._pin_clock()
        elif kind == "window_done":
            # the window's steps are in job_no now: sampling_step back to 0 (progress never > 1)
            s.sampling_step, s.job_no = 0, self._timed(p["window"])
            s.textinfo = self._text(p)
            if p["preview"] != (before or {}).get("preview"):
                self._show(p["preview"])

    def _timed(self, value: int) -> int:
        """A progress count as A1111 may see it: 0 until a step time is measured. A1111's ETA
        is elapsed/progress - elapsed: with progress but no time per step it would show the
        seconds since the last pin (an "ETA 0s" at 25 % of a resume); with none it shows no ETA,
        as the tab does until then."""
        return value if self._progress is not None and self._progress["step_seconds"] is not None else 0

    def _pin_clock(self) -> None:
        """A1111's ETA is elapsed/progress - elapsed, elapsed from ``time_start``: with elapsed
        = steps done x seconds per step it is steps left x seconds per step, steady between
        steps and through a model load (0, shown as none, until two steps measured one)."""
        s, per = self.state, (self._progress or {}).get("step_seconds")
        done = s.job_no * s.sampling_steps + s.sampling_step
        s.time_start = self.clock() - done * (per or 0.0)

    @staticmethod
    def _text(p: dict, phase: str = "") -> str:
        """The state's line, worded as the tab's Progress box (progress_text.position); a load
        (``phase``) is named first."""
        return "Wan: " + ", ".join(part for part in (phase, position(p)) if part)

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
        self._job_started(job.get("id"))

    def after_job(self, job: dict) -> None:
        self._job_ended(job.get("id"))  # also when the worker never reported an end
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
            if self._running is not None:
                self._pin_clock()
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
