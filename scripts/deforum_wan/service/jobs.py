"""The render queue the Wan tab, the standalone UI and the API share.

``JobManager`` keeps its jobs in SQLite (``jobstore.py``) and runs them one at a
time in a worker subprocess (``worker.py``), fed by one dispatcher thread that also
reads the worker's events. Whatever the worker does (a Python error, a CUDA OOM, a
segfault, the OOM killer) the host stays up: the job is marked and a new worker
takes the next one.

Queue control, as in the WebUI: ``interrupt()`` stops the running job and pauses
the queue (``submit`` or ``start_queue()`` runs it again); ``skip()`` stops the
running job and goes on; ``cancel(id)`` drops a queued job or stops a running one.
A stopped job keeps its frames and video and can be continued with ``resume(id)``.

Host hooks: ``before_job(job)`` runs on the dispatcher thread before the worker is started
or sent the job, and may block (a WebUI takes its generation lock and frees the SD
checkpoint there, so Wan never loads next to it); ``after_job(job)`` runs once that job
has finished, whatever the outcome. ``job`` is the job's record (``get(id)``).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from .. import events
from ..config.settings import read_settings_file
from ..errors import SettingsError, WanError, describe_error, one_line
from ..models.weights import DEPTH_HINT_ENV, DEPTH_TAB_HINT, DOWNLOAD_HINT_ENV
from ..render.job import CheckedJob, JobSpec, check_job
from .jobstore import FINISHED, PROGRESS_KEYS, JobNotFound, JobStore, StoreUnavailable
from .worker_client import RunnerClosed, WorkerDied, WorkerExited, WorkerRunner

__all__ = ["JobManager", "JobNotFound", "FINISHED"]

Callback = Callable[[dict], None]
FORCE_AFTER = 3.0  # seconds between two stop requests that kill an unresponsive worker
RETRY_SECONDS = 5.0  # a database that cannot be used is tried again this often


class JobManager:
    def __init__(self, db_path: str | os.PathLike, outdir: str | os.PathLike, *, models_dir: str | None = None,
                 keep_warm: bool = False, python: str = sys.executable, env: dict | None = None,
                 before_job: Callable[[dict], None] | None = None, after_job: Callable[[dict], None] | None = None):
        self.outdir = Path(outdir).expanduser().resolve()
        self.models_dir = str(models_dir) if models_dir else None
        self.keep_warm = keep_warm
        self.python = python
        # The worker's messages are read in the tab: missing weights point at its Download buttons.
        self.env = {**(env if env is not None else os.environ),
                    DOWNLOAD_HINT_ENV: "press Download beside the model in the Wan tab", DEPTH_HINT_ENV: DEPTH_TAB_HINT}
        # Set before the dispatcher starts: a job left queued by the last run is covered too.
        self.before_job = before_job
        self.after_job = after_job
        self.store = JobStore(db_path)
        self.store.recover()
        self._state = threading.RLock()  # guards the fields below
        self._wake = threading.Condition(self._state)
        self.runner = WorkerRunner(self.outdir, models_dir=self.models_dir, python=python, env=self.env,
                                   keep_warm=keep_warm)
        self._current: str | None = None
        self._stop_requested: dict[str, float] = {}  # job id -> when the first stop was asked
        self._forced: set[str] = set()  # jobs whose worker was killed on a repeated stop
        self._paused = False
        self._closing = False
        self._live: dict = {}  # the running job's step-level progress (not persisted)
        self._progress: tuple[str, dict] | None = None  # (job id, events.reduce state) of the running job
        self._subscribers: list[Callback] = []
        self._unrecorded: list[tuple[str, dict]] = []  # final states waiting for a writable database
        self.store_error: str | None = None  # why the queue cannot use its database now, if it cannot
        self._thread = threading.Thread(target=self._dispatch, name="wan-jobs", daemon=True)
        self._thread.start()

    # --- submitting --------------------------------------------------------------------
    def submit(self, settings: dict, name: str = "", *, resume: str | None = None) -> str:
        """Validate ``settings`` (a Deforum settings dict) and queue it. Raises SettingsError."""
        return self.submit_batch([(name, settings)], resume=resume)[0]

    def submit_batch(self, items, *, resume: str | None = None, inputs: Iterable[str | os.PathLike] = ()) -> list[str]:
        """Queue ``[(name, settings), ...]``: every one is checked first (``check_job``: its
        settings, its plan, its input files), all or nothing. Input files must lie in the
        output folder, ``inputs`` (folders the caller trusts, e.g. the folder of a settings
        file given on the command line) or the host's input folders."""
        return self.queue_checked(self.check_batch(items, resume=resume, inputs=inputs))

    def check_batch(self, items, *, resume: str | None = None,
                    inputs: Iterable[str | os.PathLike] = ()) -> list[CheckedJob]:
        """``submit_batch``'s checks alone (the slow part): what ``queue_checked`` queues. A door
        that says more about a job before queuing it (the tab: a depth model to fetch) reads
        these rather than checking the job again."""
        items = list(items)
        if not items:
            raise SettingsError("nothing to queue", "<batch>")
        checked = []
        for index, item in enumerate(items):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise SettingsError("each batch item must be (name, settings)", f"<batch item {index + 1}>")
            label = str(item[0] or "") or (f"<batch item {index + 1}>" if len(items) > 1 else "")
            job = check_job(JobSpec(item[1], label, resume), self.outdir, models_dir=self.models_dir, inputs=inputs)
            checked.append(replace(job, spec=replace(job.spec, name=str(item[0] or ""))))
        return checked

    def queue_checked(self, checked: list[CheckedJob]) -> list[str]:
        """Queue what ``check_batch`` (or ``check_job``) passed, as it was checked."""
        ids = self.store.add([(job.spec.name, job.spec.settings, job.spec.resume) for job in checked])
        with self._state:
            self._paused = False  # queuing is "Generate": it also restarts a paused queue
            self._wake.notify_all()
        for job_id in ids:
            self._publish(events.make("job_queued", job=job_id))
        return ids

    def resume(self, job_id: str) -> str:
        """Queue the continuation of an interrupted or failed job (same folder, same seed)."""
        job = self.store.get(job_id)
        if job["status"] not in ("interrupted", "failed") or not job["timestring"] or not job["settings_file"]:
            raise WanError(f"job {job_id} has nothing to resume (status {job['status']})")
        saved = Path(job["settings_file"])
        if not _inside(saved, self.outdir):
            raise WanError(f"job {job_id}'s settings file {saved} is outside {self.outdir}")
        settings = read_settings_file(saved)  # holds the drawn seed and the resolved run
        return self.submit(settings, job["name"], resume=job["timestring"])

    # --- reading -----------------------------------------------------------------------
    def list(self) -> list[dict]:
        return [self._with_live(job) for job in self.store.list()]

    def get(self, job_id: str) -> dict:
        return self._with_live(self.store.get(job_id))

    def settings(self, job_id: str) -> dict:
        """The settings dict a job was submitted with."""
        return self.store.settings(job_id)

    def state(self) -> dict:
        with self._state:
            return {"current": self._current, "paused": self._paused, "queued": self.store.count("queued"),
                    "worker_pid": self.worker_pid, "keep_warm": self.keep_warm, "outdir": str(self.outdir),
                    "database_error": self.store_error}

    @property
    def worker_pid(self) -> int | None:
        return self.runner.pid

    def _with_live(self, job: dict) -> dict:
        with self._state:
            if job["id"] == self._current and job["status"] == "running":
                job["progress"] = {**job["progress"], **self._live}
        return job

    # --- control -----------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """A queued job is cancelled; a running one is stopped at the next step (frames kept)."""
        self.store.get(job_id)  # JobNotFound for an unknown id
        if self.store.set_status_if(job_id, "queued", "cancelled", finished=time.time()):
            self._publish(events.make("job_cancelled", job=job_id))
            return True
        return self._stop(job_id)

    def interrupt(self) -> bool:
        """Stop the running job and pause the queue (the WebUI's Interrupt)."""
        with self._state:
            if self._current is None:
                return False
            self._paused = True
            current = self._current
        self._publish(events.make("queue_paused"))
        return self._stop(current)

    def skip(self) -> bool:
        """Stop the running job and go on with the next queued one (the WebUI's Skip)."""
        with self._state:
            current = self._current
        return self._stop(current) if current else False

    def start_queue(self) -> None:
        """Run queued jobs again after ``interrupt()``."""
        with self._state:
            self._paused = False
            self._wake.notify_all()

    def _stop(self, job_id: str) -> bool:
        """Ask the worker to stop ``job_id`` at its next step. Asked again after
        FORCE_AFTER seconds (a hung worker, or a model load that takes too long), the
        worker is killed: finished windows are on disk, so the job stays resumable."""
        with self._state:
            if job_id != self._current:
                return False
            first = self._stop_requested.setdefault(job_id, time.monotonic())
            force = self.runner.pid is not None and time.monotonic() - first >= FORCE_AFTER
            if force:
                self._forced.add(job_id)
        if force:
            self.runner.kill()
        return True  # the runner passes the request on at the job's next step

    # --- events ------------------------------------------------------------------------
    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (from the dispatcher thread); returns
        a function that unsubscribes. Events carry ``job``; see worker.py for the kinds."""
        with self._state:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._state:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, event: dict) -> None:
        with self._state:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # a broken listener must not stop the queue
                traceback.print_exc(file=sys.stderr)

    # --- shutting down -----------------------------------------------------------------
    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the running job (its frames and video are kept), stop the worker, close the
        database. Queued jobs stay queued for the next start."""
        with self._state:
            if self._closing:
                return
            self._closing = True
            self._wake.notify_all()
        # The worker stops the running job at its next step (frames and video kept), runs
        # nothing more and exits; the dispatcher reads it all.
        self.runner.close(timeout)
        self._thread.join(timeout)
        self.store.close()

    # --- the dispatcher thread ---------------------------------------------------------
    def _dispatch(self) -> None:
        """Run queued jobs until shutdown. Nothing ends this thread but shutdown: a database
        that cannot be read or written (disk full, read-only) is reported and retried."""
        while True:
            try:
                if not self._dispatch_next():
                    return
                if not self._unrecorded:
                    self.store_error = None
            except Exception as exc:
                self._store_problem(exc)
                with self._state:
                    if not self._closing:
                        self._wake.wait(timeout=RETRY_SECONDS)

    def _dispatch_next(self) -> bool:
        """Wait for a queued job and run it; False once shutdown began."""
        self._flush_unrecorded()
        with self._state:
            while not self._closing and (self._paused or self.store.count("queued") == 0):
                self._wake.wait(timeout=5.0)
            if self._closing:
                return False
        job = self.store.claim_next()
        if job is None:
            return True
        try:
            self._run(job)
        except Exception as exc:  # the job fails with the reason; the queue goes on
            traceback.print_exc(file=sys.stderr)
            self._fail(job["id"], f"internal error: {describe_error(exc)}")
        finally:
            with self._state:
                self._current = None
                self._live = {}
                self._stop_requested.pop(job["id"], None)
                self._forced.discard(job["id"])
        return True

    def _flush_unrecorded(self) -> None:
        """Final states the database could not take when they happened (disk full): written
        now that it can, so no job stays "running" forever."""
        while self._unrecorded:
            job_id, fields = self._unrecorded[0]
            self.store.update(job_id, **fields)
            self._unrecorded.pop(0)

    def _run(self, job: dict) -> None:
        job_id = job["id"]
        with self._state:
            self._current = job_id
            self._live = {}
            stopped, closing = job_id in self._stop_requested, self._closing
        if closing:  # claimed as shutdown began: leave it for the next start
            self.store.update(job_id, status="queued", started=None)
            return
        self._publish(events.make("job_running", job=job_id))
        if stopped or self.before_job is None:
            self._run_in_worker(job)
            return
        with self._state:
            self._live = {"phase": "waiting for the host"}
        try:  # after_job pairs with every before_job call, even one that raised
            try:
                self.before_job(self.get(job_id))  # may block
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                self._fail(job_id, f"internal error: the host's before_job hook: {describe_error(exc)}")
                return
            self._run_in_worker(job)
        finally:
            self._after_job(job_id)

    def _after_job(self, job_id: str) -> None:
        if self.after_job is None:
            return
        try:
            self.after_job(self.get(job_id))
        except Exception:  # the job is over; a failing hook must not stop the queue
            traceback.print_exc(file=sys.stderr)

    def _run_in_worker(self, job: dict) -> None:
        job_id = job["id"]
        with self._state:  # again: a stop or a shutdown may have come while before_job waited
            self._live = {}
            stopped, closing = job_id in self._stop_requested, self._closing
        if closing:
            self.store.update(job_id, status="queued", started=None)
            return
        if stopped:
            self._finish(job_id, "cancelled", message="stopped before it started")
            self._publish(events.make("job_done", job=job_id, status="cancelled"))
            return
        spec = JobSpec(job["settings"], job["name"] or "", job["resume"])
        try:
            self.runner.run(spec, job_id, lambda event: self._job_event(job_id, event),
                            should_stop=lambda: job_id in self._stop_requested)
        except RunnerClosed:  # shutdown began before it was sent: the next start runs it
            self.store.update(job_id, status="queued", started=None)
        except WorkerExited as exc:
            self._fail(job_id, str(exc))
        except WorkerDied as exc:
            self._worker_died(job_id, exc)

    def _job_event(self, job_id: str, event: dict) -> None:
        try:
            self._on_event(job_id, event)
        except StoreUnavailable as exc:  # the render goes on; its record catches up later
            self._store_problem(exc)
        self._publish(event)

    def _on_event(self, job_id: str, event: dict) -> None:
        kind = event.get("event")
        with self._state:  # the running job's progress: events.reduce of its events
            before = self._progress[1] if self._progress and self._progress[0] == job_id else None
            progress = events.reduce(before, event)
            self._progress = (job_id, progress)
            if kind in events.PROGRESS:  # every step: memory only, the database gets window_done
                self._live = {"phase": progress["phase"], **_stored(progress), "eta": events.eta(progress)}
        if kind == "started":
            from ..render.run_folder import RunFolder

            run_dir, ts = progress["run_dir"], progress["timestring"]
            self.store.update(job_id, run_dir=run_dir, timestring=ts, progress=_stored(progress),
                              settings_file=str(RunFolder.at(run_dir, ts).settings_file) if run_dir and ts else None)
        elif kind == "window_done":
            self.store.update(job_id, progress=_stored(progress), preview=progress["preview"])
        elif kind in ("done", "interrupted"):
            self.store.update(job_id, progress=_stored(progress), video=event.get("video"),
                              settings_file=event.get("settings"), drift_chart=event.get("drift_chart"))
        elif kind == "job_done":
            status = progress["status"]
            with self._state:
                requeue = status == "cancelled" and self._closing and job_id not in self._stop_requested
            message = event.get("message")
            if status == "interrupted":  # not the render's CLI flag: each door names its own Resume
                message = f"stopped after {progress['frames_written']} frames (kept); it can be resumed"
            if requeue:  # never started because the host is shutting down: next start runs it
                self.store.update(job_id, status="queued", started=None)
            else:
                self._finish(job_id, status, message=message)
        elif kind == "job_error":
            message = progress["message"] or "the render failed"
            self._finish(job_id, "failed", error=message, message=message)

    def _finish(self, job_id: str, status: str, **fields) -> None:
        fields = {"status": status, "finished": time.time(), **fields}
        try:
            self.store.update(job_id, **fields)
        except StoreUnavailable as exc:  # kept until the database takes writes again (_flush_unrecorded)
            self._unrecorded.append((job_id, fields))
            self._store_problem(exc)

    def _store_problem(self, exc: Exception) -> None:
        """Say once per distinct problem why the database cannot be used (then it is retried)."""
        message = one_line(exc).removeprefix("error: ")
        if message != self.store_error:
            print(f"deforum-wan: job queue: {message}; retrying", file=sys.stderr, flush=True)
        self.store_error = message

    def _fail(self, job_id: str, message: str, **extra) -> None:
        """Mark failed and tell subscribers (failures the worker did not report itself)."""
        self._finish(job_id, "failed", error=message, message=message)
        self._publish(events.make("job_error", job=job_id, message=message, **extra))

    def _worker_died(self, job_id: str, died: WorkerDied) -> None:
        with self._state:
            closing = self._closing
        job = self.store.get(job_id)
        with self._state:
            forced = job_id in self._forced
        if forced:
            kept = f"; its frames are kept in {job['run_dir']}" if job["run_dir"] else ""
            self._finish(job_id, "interrupted" if job["run_dir"] else "cancelled",
                         message=f"stopped by force (the worker did not stop in time and was killed){kept}")
            self._publish(events.make("job_done", job=job_id, status=self.store.get(job_id)["status"]))
            return
        if closing:  # the worker was stopped by shutdown(): resumable, or simply still queued
            if job["run_dir"]:
                self._finish(job_id, "interrupted", message="stopped when the host shut down")
            else:
                self.store.update(job_id, status="queued", started=None)
            return
        message = str(died)
        if job["run_dir"]:
            message += f"; its frames are kept in {job['run_dir']}" + ("; it can be resumed" if job["timestring"]
                                                                          and job["settings_file"] else "")
        else:
            message += " before the render started" + (f": {died.last_line}" if died.last_line else "")
        self._fail(job_id, message, crashed=True)


def _stored(progress: dict) -> dict:
    """What a job's record keeps of an ``events.reduce`` state."""
    return {key: progress[key] for key in PROGRESS_KEYS}


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (OSError, ValueError):  # not inside, or a name no file can have
        return False
