"""``python -m deforum_wan batch SETTINGS...``: many renders, here or on a Ray cluster.

Every file is validated on the driver first (a bad one fails its own job only) and
gets its timestring there, so whichever machine renders it, and however often, the
job always lands in the same run folder. Without ``--ray`` the jobs run here one after
another through the same runner the Ray actors use (``render.runner.LocalRunner``).

With ``--ray``: one long-lived actor per GPU (or per ``--gpus-per-actor`` GPUs) keeps
its pipelines warm between jobs; jobs go to free actors from a queue of futures
(``ray.wait``). An actor that dies (killed, OOM-killed, node lost) is replaced and its
job goes to the next free actor as a *resume* of the same run folder, up to
``--retries`` times: finished windows are not rendered again. Actors write frames
straight into the output folder, so on a cluster of several machines the output
folder, the models dir and any init image or soundtrack must be on shared storage
mounted at the same path everywhere. Actors report step and window events through a
``ray.util.queue.Queue``; the driver shows one progress bar for all jobs.
"""
from __future__ import annotations

import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from .. import events
from ..config.settings import load_settings, read_settings_file
from ..errors import Interrupted, WanError, describe_error, first_line
from ..render.job import JobSpec, check_job
from ..render.manifest import Manifest
from ..render.names import make_timestring
from ..render.run_folder import RunFolder
from ..render.runner import LocalRunner

EventCallback = Callable[["Job", dict], None]
# Renderer events the actors forward to the driver (the rest stay on the worker).
FORWARDED = ("started", "loading", "loaded", "step", "window_done")
DRAIN_SECONDS = 30.0  # how long the driver waits for a finished job's last events
RAY_HINT = "pip install 'deforum-wan[ray]' (or pip install ray==2.60.0)"


@dataclass
class Job:
    index: int
    name: str  # the settings file as given, or the caller's name for a dict
    settings: dict | None  # validated, seed resolved: what every attempt renders
    timestring: str
    settings_base: str | None = None  # folder relative init_image/soundtrack paths start from
    window_steps: list[int] = field(default_factory=list)
    gpus: int = 1
    status: str = "queued"  # queued | running | done | failed | interrupted
    error: str = ""
    attempts: int = 0
    frames: int = 0
    max_frames: int = 0
    run_dir: str = ""
    video: str | None = None
    windows_by_attempt: dict[int, list[int]] = field(default_factory=dict)  # from window_done events

    def payload(self) -> dict:
        """What an actor needs (plain data: it crosses the object store)."""
        spec = JobSpec(self.settings or {}, self.name, timestring=self.timestring, settings_base=self.settings_base)
        return {"index": self.index, "spec": spec.to_json(), "attempt": self.attempts}

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "error": self.error, "attempts": self.attempts,
                "frames": self.frames, "max_frames": self.max_frames, "run_dir": self.run_dir,
                "timestring": self.timestring, "video": self.video,
                "windows_by_attempt": {k: list(v) for k, v in self.windows_by_attempt.items()}}


# --- jobs --------------------------------------------------------------------------------

def prepare_jobs(items: Iterable[tuple[str, str | os.PathLike | dict]], overrides: dict | None = None, *,
                 outdir: str | os.PathLike, now: float | None = None, skip_taken: bool = True,
                 models_dir: str | None = None) -> list[Job]:
    """Check each (name, file or dict) (``check_job``) and give it a timestring; invalid ones
    come back failed.

    Timestrings are consecutive seconds from ``now``, so jobs of one batch never share
    one; with ``skip_taken`` (the driver sees the output folder) a timestring whose run
    folder already holds that run is skipped.
    """
    jobs: list[Job] = []
    clock = int(now if now is not None else time.time())
    for index, (name, source) in enumerate(items):
        try:
            if isinstance(source, dict):
                name = str(name or f"<batch item {index + 1}>")
                spec = JobSpec({**source, **(overrides or {})}, name)
            else:
                name = str(name or source)
                spec = JobSpec({**read_settings_file(source), **(overrides or {})}, Path(source).name,
                               settings_base=str(Path(source).resolve().parent))
            # The batch's user names their own files: inputs are read where the files say.
            checked = check_job(spec, outdir, models_dir=models_dir, confine=False)
        except WanError as exc:
            jobs.append(Job(index, name, None, "", status="failed", error=str(exc)))
            continue
        s = checked.settings
        if checked.spec.resume:  # the file asks to continue a run: that run's timestring
            ts = checked.spec.resume
        else:
            ts = make_timestring(clock)
            while skip_taken and _run_exists(outdir, s, ts):
                clock += 1
                ts = make_timestring(clock)
            clock += 1
        jobs.append(Job(index, name, s.to_dict(), ts, settings_base=spec.settings_base,
                        window_steps=[w.steps for w in checked.plan.windows], gpus=s.gpus,
                        max_frames=checked.plan.max_frames))
    return jobs


def _run_exists(outdir, settings, ts: str) -> bool:
    try:
        return RunFolder.of(outdir, settings, ts).started()
    except WanError:
        return False  # the render reports it


def run_attempt(payload: dict, runner: LocalRunner, *, on_event: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
    """One attempt at a job (a ``Job.payload()``) through the runner; never raises for a
    render's own failure.

    A retry (attempt > 0) resumes the run folder an earlier attempt started; if that
    attempt had not written its manifest yet, it starts fresh in the same folder.
    """
    spec = JobSpec.from_json(payload["spec"])
    result = {"status": "failed", "error": "", "frames": 0, "run_dir": "", "video": None,
              "timestring": spec.timestring}
    folder = None
    try:
        settings = load_settings(spec.settings, name=spec.name, models_dir=runner.models_dir)
        folder = RunFolder.of(runner.outdir, settings, spec.timestring)
        result["run_dir"] = str(folder.dir)
        if settings.resume_timestring:
            spec = replace(spec, resume=spec.timestring, timestring=None)
        elif payload["attempt"] > 0 and folder.manifest_file.is_file():
            manifest = Manifest.load(folder.manifest_file)
            if manifest.status == "done":  # the lost attempt had finished; only its reply was lost
                video = folder.video_file
                return {**result, "status": "done", "frames": manifest.frames_written,
                        "video": str(video) if video.is_file() else None}
            spec = replace(spec, resume=spec.timestring, timestring=None)
        r = runner.run(check_job(spec, runner.outdir, models_dir=runner.models_dir, confine=False), on_event,
                       should_stop)
        return {**result, "status": "done", "frames": r.frames, "run_dir": str(r.run_dir),
                "video": str(r.video) if r.video else None}
    except Interrupted as exc:
        return {**result, "status": "interrupted", "error": str(exc),
                "frames": folder.frames_written() if folder else 0}
    except WanError as exc:
        return {**result, "error": str(exc)}
    except Exception as exc:  # a bug or a CUDA error: one line here, the traceback in the worker log
        return {**result, "error": describe_error(exc)}


# --- progress ----------------------------------------------------------------------------

class Tracker:
    """Each job's attempts and outcome from its render events. The events of a job's
    current attempt go on to ``on_event(job, event)`` (the caller's hook) and, with the
    job's outcome and notes, to ``view.event(name, event)`` (the command line's bar)."""

    def __init__(self, jobs: list[Job], on_event: EventCallback | None = None, view=None):
        self.jobs = {job.index: job for job in jobs}
        self.on_event = on_event
        self.view = view
        self.progress: dict[int, dict] = {}  # job index -> events.reduce of its current attempt
        self.received: Counter = Counter()  # (job index, attempt) -> events received
        for job in jobs:
            if job.settings is not None:
                self._show(job, events.make("planned", window_steps=list(job.window_steps)))

    def event(self, index: int, event: dict) -> None:
        job = self.jobs[index]
        kind, attempt = event.get("event"), event.get("attempt", job.attempts - 1)  # 0-based
        self.received[index, attempt] += 1
        if kind == "window_done":
            job.windows_by_attempt.setdefault(attempt, []).append(int(event["window"]))
        if self.on_event is not None:
            self.on_event(job, event)
        if attempt != job.attempts - 1:
            return  # a lost attempt's late events
        state = self.progress[index] = events.reduce(self.progress.get(index), event)
        job.run_dir = state["run_dir"] or job.run_dir
        if kind == "started" and attempt > 0:
            event = {**event, "warnings": []}  # shown at the first attempt
        self._show(job, event)

    def finish(self, job: Job, result: dict) -> None:
        job.status, job.error = result["status"], result.get("error", "")
        job.frames, job.video = result.get("frames", 0), result.get("video")
        job.run_dir = result.get("run_dir") or job.run_dir
        self._show(job, events.make("job_done", job=job.name, status=job.status))

    def note(self, text: str) -> None:
        if self.view is not None:
            self.view.event("", events.make("note", message=text))

    def _show(self, job: Job, event: dict) -> None:
        if self.view is not None:
            self.view.event(job.name, event)


# --- running -----------------------------------------------------------------------------

def run_local(jobs: list[Job], progress: Tracker, *, outdir: str, models_dir: str | None = None,
              backend: str | None = None, should_stop: Callable[[], bool] = lambda: False) -> None:
    """One job after another in this process, pipelines kept warm between jobs."""
    runner = LocalRunner(outdir, models_dir=models_dir, backend=backend)
    try:
        for job in jobs:
            if job.status != "queued":
                continue
            if should_stop():
                break
            payload = job.payload()
            job.status, job.attempts = "running", 1
            result = run_attempt(payload, runner, should_stop=should_stop,
                             on_event=lambda e, i=job.index: progress.event(i, {**e, "attempt": 0}))
            progress.finish(job, result)
        for job in jobs:
            if job.status == "queued" and should_stop():
                job.error = "not started (stopped)"
    finally:
        runner.close()


def import_ray():
    try:
        import ray
    except ImportError:
        raise WanError(f"--ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


class RenderActor:
    """Lives on one GPU (or CPU share) for the whole batch; its pipelines stay loaded."""

    def __init__(self, outdir: str, models_dir: str | None, backend: str | None, events, cpu_threads: int = 0):
        self.runner = LocalRunner(outdir, models_dir=models_dir, backend=backend)
        self.events = events
        self.stopping = False
        if cpu_threads:  # a CPU actor keeps to its share of the machine
            import torch

            torch.set_num_threads(cpu_threads)

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self.stopping = True  # polled at every denoising step of the running job

    def render(self, job: dict) -> dict:
        """The job's result, with how many events it forwarded (``"events"``): the driver
        waits for that many of this attempt before it records the result."""
        pid = os.getpid()
        sent = 0

        def on_event(event: dict) -> None:
            nonlocal sent
            if event["event"] in FORWARDED:
                self.events.put({"job": job["index"], "attempt": job["attempt"], "pid": pid, **event})
                sent += 1

        result = run_attempt(job, self.runner, on_event=on_event, should_stop=lambda: self.stopping)
        return {**result, "events": sent}


def _connect(ray, address: str | None, init_kwargs: dict | None) -> bool:
    """Join ``address`` or start a local cluster; False when the caller's session is used."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # Only settings and small results cross the object store; Ray's floor is 75 MB.
        ray.init(**{"include_dashboard": False, "log_to_driver": False,
                    "object_store_memory": 100 * 2**20, **(init_kwargs or {})})
    return True


def _actor_shape(cluster_gpus: int, jobs: list[Job], progress: Tracker, gpus_per_actor: int,
                 actors: int | None) -> tuple[int, int]:
    """(GPUs per actor, actors); a job that needs more GPUs than an actor has fails here."""
    if not cluster_gpus:  # CPU-only cluster (tests, trying it out): one CPU per actor
        progress.note("note: the Ray cluster has no GPUs; rendering on CPU actors")
        return 0, actors or 1
    for job in jobs:
        if job.status == "queued" and job.gpus > gpus_per_actor:
            progress.finish(job, {"status": "failed", "error": f"wan_gpus={job.gpus} needs "
                                  f"--gpus-per-actor {job.gpus} (actors have {gpus_per_actor})"})
    return gpus_per_actor, actors or max(1, cluster_gpus // gpus_per_actor)


def run_ray(jobs: list[Job], progress: Tracker, *, outdir: str, models_dir: str | None = None,
            backend: str | None = None, address: str | None = None, gpus_per_actor: int = 1,
            actors: int | None = None, retries: int = 2, init_kwargs: dict | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run the queued jobs on Ray actors. Connects to ``address`` (a running cluster), or
    starts a local one; a Ray session the caller already started is used as it is."""
    ray = import_ray()
    from ray.util.queue import Queue

    started_here = _connect(ray, address, init_kwargs)
    retryable = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                 ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
    try:
        num_gpus, count = _actor_shape(int(ray.cluster_resources().get("GPU", 0)), jobs, progress,
                                       gpus_per_actor, actors)
        queued = [job for job in jobs if job.status == "queued"]
        if not queued:
            return
        count = min(count, len(queued))
        events = Queue()
        # @ray.remote(num_gpus=...) written as options: the GPU count is known only now.
        # max_concurrency=2: stop() must get through while render() runs.
        actor_cls = ray.remote(RenderActor).options(num_gpus=num_gpus, num_cpus=1, max_concurrency=2)

        def new_actor():
            return actor_cls.remote(outdir, models_dir, backend, events, 0 if num_gpus else 1)

        idle = deque(new_actor() for _ in range(count))
        pending = deque(queued)
        inflight: dict = {}  # ObjectRef -> (actor, job)
        stopping = False
        while pending or inflight:
            if should_stop() and not stopping:
                stopping = True
                for actor, _ in inflight.values():
                    actor.stop.remote()
            while pending and idle and not stopping:
                actor, job = idle.popleft(), pending.popleft()
                job.status = "running"
                payload = job.payload()  # attempt: 0-based index of this try
                job.attempts += 1
                inflight[actor.render.remote(payload)] = (actor, job)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.2) if inflight else ([], [])
            _drain(events, progress)
            for ref in ready:
                actor, job = inflight.pop(ref)
                try:
                    result = ray.get(ref)
                except retryable as exc:
                    ray.kill(actor)  # make sure a merely unreachable actor stops writing too
                    reason = first_line(exc)[:300]
                    if job.attempts <= retries and not stopping:
                        progress.note(f"{job.name}: worker lost ({reason}); resuming on another actor"
                                       f" (retry {job.attempts} of {retries})")
                        job.status = "queued"
                        pending.appendleft(job)
                        idle.append(new_actor())  # takes the freed GPU
                    else:
                        progress.finish(job, {"status": "failed", "run_dir": job.run_dir,
                                              "error": f"worker lost {job.attempts} times: {reason}"})
                    continue
                except ray.exceptions.RayError as exc:
                    result = {"status": "failed", "error": first_line(exc)[:300]}
                _drain(events, progress, job, result.get("events", 0))  # all its events before its result
                progress.finish(job, result)
                idle.append(actor)
        if stopping:
            for job in pending:
                job.error = "not started (stopped)"
        _drain(events, progress)
    finally:
        if started_here:
            ray.shutdown()


def _drain(events, progress: Tracker, job: Job | None = None, expected: int = 0,
           timeout: float = DRAIN_SECONDS) -> None:
    """Hand the queued events to ``progress``. With ``job``: first every one of the
    ``expected`` events its current attempt sent (the queue may still be taking the last
    ones), or what came within ``timeout`` seconds, said in a note."""
    deadline = time.monotonic() + timeout
    while True:
        batch = events.get_nowait_batch(events.qsize()) if events.qsize() else []
        for event in batch:
            progress.event(event["job"], event)
        if batch:
            continue
        missing = expected - progress.received[job.index, job.attempts - 1] if job is not None else 0
        if missing <= 0:
            return
        if time.monotonic() > deadline:
            progress.note(f"{job.name}: {missing} of its {expected} progress events did not arrive")
            return
        time.sleep(0.02)


def run_batch(items: Iterable[tuple[str, str | os.PathLike | dict]], *, outdir: str | os.PathLike,
              overrides: dict | None = None, models_dir: str | None = None, backend: str | None = None,
              use_ray: bool = False, address: str | None = None, gpus_per_actor: int = 1,
              actors: int | None = None, retries: int = 2, init_kwargs: dict | None = None,
              view=None, on_event: EventCallback | None = None,
              should_stop: Callable[[], bool] = lambda: False, now: float | None = None) -> list[Job]:
    """Validate, then render every item; returns the jobs with their outcome (never raises
    for one job's failure). ``on_event(job, event)`` sees every forwarded render event;
    ``view.event(name, event)`` (a progress bar) also sees each job's plan and outcome."""
    if use_ray:
        import_ray()  # fail before anything else when Ray is missing
    if gpus_per_actor < 1 or (actors is not None and actors < 1) or retries < 0:
        raise WanError("--gpus-per-actor and --actors must be at least 1, --retries at least 0")
    remote = bool(use_ray and address)
    # Workers on other machines see the same absolute paths (shared storage), not our cwd.
    outdir = str(Path(outdir).expanduser().resolve())
    models_dir = str(Path(models_dir).expanduser().resolve()) if models_dir else None
    if not remote:
        from ..render.loop import check_outdir

        check_outdir(outdir)
    jobs = prepare_jobs(items, overrides, outdir=outdir, now=now, skip_taken=not remote, models_dir=models_dir)
    tracker = Tracker(jobs, on_event=on_event, view=view)
    if any(job.status == "queued" for job in jobs):
        if use_ray:
            run_ray(jobs, tracker, outdir=outdir, models_dir=models_dir, backend=backend, address=address,
                    gpus_per_actor=gpus_per_actor, actors=actors, retries=retries,
                    init_kwargs=init_kwargs, should_stop=should_stop)
        else:
            run_local(jobs, tracker, outdir=outdir, models_dir=models_dir, backend=backend,
                      should_stop=should_stop)
    return jobs


def submit_to_ray(address: str | None, settings: Iterable[tuple[str, dict]], *, outdir: str | os.PathLike,
                  models_dir: str | None = None, on_event: EventCallback | None = None,
                  should_stop: Callable[[], bool] = lambda: False, **options) -> list[dict]:
    """The job API's hook: render ``[(name, settings dict), ...]`` on a Ray cluster (``address``
    None: a local one) and return one plain dict per item (``Job.to_dict``). Blocks; call it
    from a thread. ``on_event(job, event)`` carries progress; ``should_stop`` is polled."""
    jobs = run_batch(list(settings), outdir=outdir, models_dir=models_dir, use_ray=True, address=address,
                     on_event=on_event, should_stop=should_stop, **options)
    return [job.to_dict() for job in jobs]
