"""The isolated render process: ``python -m deforum_wan.service.worker [--keep-warm]``.

Reads one JSON command per line on stdin::

    {"cmd": "render", "job": "<id>", "spec": {JobSpec.to_json()}, "outdir": "...",
     "models_dir": null, "backend": null}
    {"cmd": "interrupt", "job": "<id>"}   # job optional: the current one
    {"cmd": "quit"}                        # or stdin closed (the host went away)

``quit`` and a closed stdin stop the current job at its next step (its frames and
video are kept) and end the process; so does the host dying.

and writes one JSON event per line on stdout: ``ready``, ``job_started``, the
Renderer's events (each with ``job``), ``job_done`` (status done | interrupted |
cancelled, with result paths), ``job_error`` (one-line ``message``), ``bye``.
stdout carries nothing else: the process's own stdout (Python prints, libraries,
child processes) is pointed at stderr. Renders run one at a time on the main thread;
a reader thread takes interrupts while one runs. The host only ever sees a dead pipe
if the process itself dies (crash, OOM killer): every Python exception of a job ends
as ``job_error`` and the worker goes on serving.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import traceback
from typing import IO

from .. import events
from ..errors import BackendError, Interrupted, WanError, describe_error, find_out_of_memory, one_line

PROTOCOL = 1


class Worker:
    def __init__(self, events: IO[str], commands: IO[str], *, keep_warm: bool = False):
        self.events = events
        self.commands = commands
        self.keep_warm = keep_warm
        self.runner = None  # render.runner.LocalRunner: its pipelines stay warm between jobs
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.quitting = threading.Event()  # quit or EOF seen: jobs still queued here don't run
        self.lock = threading.Lock()  # guards current and early_stops
        self.write_lock = threading.Lock()
        self.current: str | None = None
        self.early_stops: set[str] = set()  # interrupts that arrived before their job started

    # --- events out ----------------------------------------------------------------
    def emit(self, event: str, **data) -> None:
        line = json.dumps(events.make(event, **data), ensure_ascii=False, default=str)
        self._write(line)

    def forward(self, job: str, event: dict) -> None:
        self._write(json.dumps({**event, "job": job}, ensure_ascii=False, default=str))

    def _write(self, line: str) -> None:
        with self.write_lock:
            try:
                self.events.write(line + "\n")
                self.events.flush()
            except (BrokenPipeError, ValueError, OSError):
                # The host is gone: stop the render at the next step, then exit.
                self._quit()

    # --- commands in (reader thread) -----------------------------------------------
    def read_commands(self) -> None:
        try:
            for raw in self.commands:
                if not raw.strip():
                    continue
                try:
                    cmd = json.loads(raw)
                    if not isinstance(cmd, dict) or not isinstance(cmd.get("cmd"), str):
                        raise ValueError("expected an object with a string 'cmd'")
                except ValueError as exc:
                    self.emit("protocol_error", message=f"bad command line: {one_line(str(exc))}")
                    continue
                if cmd["cmd"] == "interrupt":
                    self.interrupt(cmd.get("job"))
                elif cmd["cmd"] == "quit":
                    self._quit()
                    return
                elif cmd["cmd"] == "render":
                    self.queue.put(cmd)
                else:
                    self.emit("protocol_error", message=f"unknown cmd {cmd['cmd']!r}")
        except (OSError, ValueError):
            pass
        # stdin closed: the host went away; finish what was started and leave.
        self._quit()

    def _quit(self) -> None:
        self.quitting.set()
        self.interrupt(None)
        self.queue.put({"cmd": "quit"})

    def interrupt(self, job) -> None:
        with self.lock:
            if job is None or job == self.current:
                self.stop.set()
            else:
                self.early_stops.add(str(job))

    # --- jobs (main thread) --------------------------------------------------------
    def serve(self) -> None:
        self.emit("ready", pid=os.getpid(), keep_warm=self.keep_warm, protocol=PROTOCOL)
        while True:
            cmd = self.queue.get()
            if cmd.get("cmd") == "quit":
                break
            self.serve_job(cmd)
        self.drop_cache()
        self.emit("bye")

    def serve_job(self, cmd: dict) -> None:
        job = str(cmd.get("job") or "")
        with self.lock:
            self.current = job
            self.stop.clear()
            if job in self.early_stops or self.quitting.is_set():
                self.early_stops.discard(job)
                self.stop.set()
        self.emit("job_started", job=job)
        info: dict = {}

        def on_event(event: dict) -> None:
            kind = event.get("event")
            if kind == "started":
                info.update(run_dir=event.get("run_dir"), timestring=event.get("timestring"))
            elif kind in ("done", "interrupted"):
                info.update(video=event.get("video"), settings_file=event.get("settings"),
                            frames=event.get("frames"))
            self.forward(job, event)

        failed = False
        try:
            if self.stop.is_set():
                self.emit("job_done", job=job, status="cancelled", message="interrupted before it started")
                return
            # Two jobs in the same second get distinct runs: Renderer moves to a later
            # timestring while its run folder already holds one with this timestring.
            result = self._run(cmd, on_event)
            self.emit("job_done", job=job, status="done", run_dir=str(result.run_dir),
                      timestring=result.timestring, frames=result.frames,
                      video=str(result.video) if result.video else None,
                      settings_file=str(result.settings_file), warnings=result.warnings)
        except WanError as exc:
            if isinstance(exc, Interrupted) and info.get("run_dir"):
                self.emit("job_done", job=job, status="interrupted", message=one_line(str(exc)), **info)
            elif isinstance(exc, Interrupted):
                self.emit("job_done", job=job, status="cancelled", message=one_line(str(exc)))
            else:
                failed = find_out_of_memory(exc) is not None
                if isinstance(exc, BackendError) and exc.lead:  # the message leads; the log lists all
                    print(f"deforum-wan: job {job}: {exc}", file=sys.stderr, flush=True)
                self.emit("job_error", job=job, message=describe_error(exc), **info)
        except Exception as exc:  # a bug or a library failure: report it, keep serving
            failed = True
            traceback.print_exc(file=sys.stderr)
            self.emit("job_error", job=job, message=describe_error(exc), **info)
        finally:
            with self.lock:
                self.current = None
            # A failed pipeline may hold half-freed memory or hooks: never reuse it.
            if failed or not self.keep_warm:
                self.drop_cache()

    def _run(self, cmd: dict, on_event):
        """The job checked again by the same rules it passed when it was queued (its paths
        are absolute and confined by then), then rendered by the one runner."""
        from ..render.job import JobSpec, check_job
        from ..render.loop import check_outdir
        from ..render.runner import LocalRunner

        outdir = cmd.get("outdir")
        if not isinstance(outdir, str) or not outdir:
            raise WanError("render command needs 'outdir'")
        models_dir, backend = cmd.get("models_dir") or None, cmd.get("backend") or None
        checked = check_job(JobSpec.from_json(cmd.get("spec")), outdir, models_dir=models_dir, confine=False)
        check_outdir(outdir)
        where = (outdir, models_dir, backend)
        if self.runner is None or (self.runner.outdir, self.runner.models_dir, self.runner.backend) != where:
            self.drop_cache()
            self.runner = LocalRunner(outdir, models_dir=models_dir, backend=backend)
        return self.runner.run(checked, on_event, self.stop.is_set)

    def drop_cache(self) -> None:
        if self.runner is not None:
            self.runner.close()


def _claim_stdio() -> tuple[IO[str], IO[str]]:
    """Private copies of stdin/stdout for the protocol; fds 0/1 become /dev/null/stderr.

    Anything else writing to fd 1 (a print, a C library, a child process) lands on
    stderr, and no child process can read our commands.
    """
    events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    commands = os.fdopen(os.dup(0), "r", encoding="utf-8", errors="replace")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    return events, commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deforum_wan.service.worker",
                                     description="deforum-wan render worker (JSON lines on stdin/stdout)")
    parser.add_argument("--keep-warm", action="store_true",
                        help="keep the loaded pipeline between jobs (else all memory is freed after each)")
    args = parser.parse_args(argv)
    events, commands = _claim_stdio()
    worker = Worker(events, commands, keep_warm=args.keep_warm)
    # Ctrl-C in the host's terminal reaches this process too: stop the job like Interrupt.
    signal.signal(signal.SIGINT, lambda signum, frame: worker.interrupt(None))
    # SIGTERM (a service manager stopping everything): stop the job at its next step, its frames
    # and video kept and reported, then leave, as when the host closes the pipe.
    signal.signal(signal.SIGTERM, lambda signum, frame: worker._quit())
    threading.Thread(target=worker.read_commands, name="wan-worker-stdin", daemon=True).start()
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
