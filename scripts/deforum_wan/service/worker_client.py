"""The host's side of the worker pipe: start ``python -m deforum_wan.service.worker``,
send commands, read events. Its stderr (tracebacks, loading bars) is passed on
to the host's stderr and the last lines are kept for crash messages.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading

from ..errors import WanError


class WorkerExited(WanError):
    """The worker process ended before saying ``ready``."""


def exit_description(code: int | None) -> str:
    """``exit code -9: killed (SIGKILL), often by the out-of-memory killer``."""
    if code is None:
        return "still running"
    text = f"exit code {code}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        text += f": killed by {name}"
        if name == "SIGKILL":
            text += ", often the system's out-of-memory killer"
    return text


class WorkerProcess:
    def __init__(self, python: str = sys.executable, env: dict | None = None, keep_warm: bool = False,
                 echo_stderr: bool = True):
        cmd = [python, "-m", "deforum_wan.service.worker"] + (["--keep-warm"] if keep_warm else [])
        env = dict(os.environ if env is None else env)
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                         errors="replace", bufsize=1)
        except OSError as exc:
            raise WanError(f"cannot start the render worker ({python}): {exc.strerror or exc}") from None
        self.echo_stderr = echo_stderr
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._send_lock = threading.Lock()
        self._pump = threading.Thread(target=self._pump_stderr, name=f"wan-worker-{self.pid}-stderr",
                                      daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))
            if self.echo_stderr:
                try:
                    sys.stderr.write(line)
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass

    def last_error_line(self) -> str:
        """The last meaningful stderr line (a traceback's final line)."""
        for line in reversed(self.stderr_tail):
            text = line.split("\r")[-1].strip()
            if text:
                return text
        return ""

    def wait_ready(self) -> dict:
        """Read up to the ``ready`` event; a worker that cannot start raises WorkerExited."""
        while True:
            event = self.read_event()
            if event is None:
                code = self.proc.wait()
                self._pump.join(timeout=5)
                detail = self.last_error_line()
                raise WorkerExited(f"the render worker failed to start ({exit_description(code)})"
                                   + (f": {detail}" if detail else ""))
            if event.get("event") == "ready":
                return event

    def send(self, cmd: dict) -> bool:
        line = json.dumps(cmd, ensure_ascii=False) + "\n"
        with self._send_lock:
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
                return True
            except (OSError, ValueError):  # the worker is gone; the reader sees it
                return False

    def read_event(self) -> dict | None:
        """The next event, or None when the worker's stdout closed (it exited)."""
        while True:
            try:
                line = self.proc.stdout.readline()
            except (OSError, ValueError):
                return None
            if not line:
                return None
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if isinstance(event, dict) and "event" in event:
                return event
            sys.stderr.write(f"deforum-wan: ignoring a non-event line from the worker: {line[:200]}")

    def close(self, timeout: float = 30.0) -> int | None:
        """Ask the worker to quit (it stops its job at the next step), kill it after ``timeout``."""
        with self._send_lock:
            try:
                self.proc.stdin.close()  # EOF = quit
            except (OSError, ValueError):
                pass
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._pump.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()


class WorkerDied(WanError):
    """The worker process ended while it held a job (crash, OOM killer, a kill)."""

    def __init__(self, code: int | None, last_line: str):
        super().__init__(f"worker crashed ({exit_description(code)})")
        self.code, self.last_line = code, last_line


class RunnerClosed(WanError):
    """The runner was closed (the host is shutting down): the job was not sent."""


class WorkerRunner:
    """Runs jobs in a worker process as ``render.runner.LocalRunner`` runs them here:
    ``run(spec, job_id, on_event, should_stop)``. A job crosses the process boundary as its
    JobSpec and the worker checks it again with the same ``check_job``. The process is
    started for the first job and kept for the next (its pipelines warm with ``keep_warm``);
    a crash costs only the job it held, the next job starts a new one."""

    STOP_POLL = 0.05  # seconds between two looks at should_stop while a job runs

    def __init__(self, outdir: str | os.PathLike, *, models_dir: str | None = None, python: str = sys.executable,
                 env: dict | None = None, keep_warm: bool = False):
        self.outdir, self.models_dir = str(outdir), models_dir
        self.python, self.env, self.keep_warm = python, env, keep_warm
        self._lock = threading.Lock()  # guards worker and closed
        self.worker: WorkerProcess | None = None
        self.closed = False

    @property
    def pid(self) -> int | None:
        worker = self.worker
        return worker.pid if worker is not None and worker.alive() else None

    def run(self, spec, job_id: str, on_event, should_stop) -> dict:
        """Pass the job's events to ``on_event`` until its ``job_done``/``job_error``, which is
        returned. Raises WorkerExited (no worker could start), WorkerDied, RunnerClosed."""
        worker = self._start()
        ended = threading.Event()

        def watch() -> None:  # a stop asked while the job runs reaches the worker's next step
            while not ended.wait(self.STOP_POLL):
                if should_stop():
                    worker.send({"cmd": "interrupt", "job": job_id})
                    return

        if should_stop():  # asked before it was sent: the worker cancels it on arrival
            worker.send({"cmd": "interrupt", "job": job_id})
        else:
            threading.Thread(target=watch, name=f"wan-stop-{job_id}", daemon=True).start()
        worker.send({"cmd": "render", "job": job_id, "spec": spec.to_json(), "outdir": self.outdir,
                     "models_dir": self.models_dir, "backend": None})
        try:
            while True:
                event = worker.read_event()
                if event is None:
                    code = worker.proc.wait()
                    with self._lock:
                        if self.worker is worker:
                            self.worker = None
                    raise WorkerDied(code, worker.last_error_line())
                if event.get("job") != job_id:
                    continue  # protocol notes or a late event of an earlier job
                on_event(event)
                if event.get("event") in ("job_done", "job_error"):
                    return event
        finally:
            ended.set()

    def _start(self) -> WorkerProcess:
        with self._lock:
            if self.closed:
                raise RunnerClosed("the render worker is shutting down")
            if self.worker is not None and self.worker.alive():
                return self.worker
            # Started under the lock so that close() always sees (and stops) it.
            worker = self.worker = WorkerProcess(self.python, self.env, self.keep_warm)
        try:
            worker.wait_ready()
        except WorkerExited:
            with self._lock:
                if self.worker is worker:
                    self.worker = None
            raise
        return worker

    def kill(self) -> None:
        """End the worker now (a job that does not stop in time); its job raises WorkerDied."""
        worker = self.worker
        if worker is not None:
            worker.kill()

    def close(self, timeout: float = 30.0) -> None:
        """No more jobs; the running one stops at its next step (frames and video kept)."""
        with self._lock:
            self.closed = True
            worker = self.worker
        if worker is not None:
            worker.close(timeout)  # EOF on its stdin: stop the job, run nothing more, exit
