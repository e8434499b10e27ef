"""``python -m deforum_wan batch SETTINGS...``: many renders, here or on a Ray cluster.

Every file is validated on the driver first (a bad one fails its own job only) and
gets its timestring there, so whichever machine renders it, and however often, the
job always lands in the same run folder. Without ``--ray`` the jobs run here one after
another through the same ``run_job`` the Ray actors use.

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
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..render import output
from ..errors import Interrupted, WanError
from ..config.settings import load_settings, resolve_batch_name

EventCallback = Callable[["Job", dict], None]
# Renderer events the actors forward to the driver (the rest stay on the worker).
FORWARDED = ("started", "loading", "loaded", "step", "window_done")
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
    # progress of the current attempt
    steps_done: int = 0
    step_in_window: int = 0

    def payload(self) -> dict:
        """What an actor needs (plain data: it crosses the object store)."""
        return {"index": self.index, "name": self.name, "settings": self.settings,
                "timestring": self.timestring, "settings_base": self.settings_base,
                "attempt": self.attempts}

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "error": self.error, "attempts": self.attempts,
                "frames": self.frames, "max_frames": self.max_frames, "run_dir": self.run_dir,
                "timestring": self.timestring, "video": self.video,
                "windows_by_attempt": {k: list(v) for k, v in self.windows_by_attempt.items()}}


# --- jobs --------------------------------------------------------------------------------

def prepare_jobs(items: Iterable[tuple[str, str | os.PathLike | dict]], overrides: dict | None = None, *,
                 outdir: str | os.PathLike | None = None, now: float | None = None) -> list[Job]:
    """Validate each (name, file or dict) and give it a timestring; invalid ones come back failed.

    Timestrings are consecutive seconds from ``now``, so jobs of one batch never share
    one; when ``outdir`` is given (the driver sees the output folder) a timestring whose
    run folder already holds that run is skipped.
    """
    from ..config.planner import make_plan

    jobs: list[Job] = []
    clock = int(now if now is not None else time.time())
    for index, (name, source) in enumerate(items):
        if isinstance(source, dict):
            name = str(name or f"<batch item {index + 1}>")
            label = name
        else:
            name, label = str(name or source), Path(source).name
        try:
            s = load_settings(source, overrides, name=label)
            plan = make_plan(s)
        except WanError as exc:
            jobs.append(Job(index, name, None, "", status="failed", error=str(exc)))
            continue
        if s.resume_timestring:  # the file asks to continue a run: that run's timestring
            ts = s.resume_timestring
        else:
            ts = output.make_timestring(clock)
            while outdir is not None and _run_exists(outdir, s, ts):
                clock += 1
                ts = output.make_timestring(clock)
            clock += 1
        base = str(Path(source).resolve().parent) if not isinstance(source, dict) else None
        jobs.append(Job(index, name, s.to_dict(), ts, settings_base=base,
                        window_steps=[w.steps for w in plan.windows], gpus=s.gpus,
                        max_frames=plan.max_frames))
    return jobs


def _run_exists(outdir, settings, ts: str) -> bool:
    try:
        folder = Path(outdir) / resolve_batch_name(settings.batch_name, ts, settings)
    except WanError:
        return False  # the render reports it
    return output.settings_path(folder, ts).exists() or output.manifest_path(folder, ts).exists()


def run_job(job: dict, *, outdir: str, models_dir: str | None = None, backend: str | None = None,
            cache: dict | None = None, on_event: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
    """Render one job (a ``Job.payload()``); never raises for a render's own failure.

    A retry (attempt > 0) resumes the run folder an earlier attempt started; if that
    attempt had not written its manifest yet, it starts fresh in the same folder.
    """
    from ..render.loop import Renderer

    result = {"status": "failed", "error": "", "frames": 0, "run_dir": "", "video": None,
              "timestring": job["timestring"]}
    manifest_file = None
    try:
        settings = load_settings(job["settings"], name=job["name"])
        ts = job["timestring"]
        run_dir = Path(outdir) / resolve_batch_name(settings.batch_name, ts, settings)
        result["run_dir"] = str(run_dir)
        manifest_file = output.manifest_path(run_dir, ts)
        resume = settings.resume_timestring
        if job["attempt"] > 0 and manifest_file.is_file():
            manifest = output.Manifest.load(manifest_file)
            if manifest.status == "done":  # the lost attempt had finished; only its reply was lost
                video = output.video_path(run_dir, ts)
                return {**result, "status": "done", "frames": manifest.frames_written,
                        "video": str(video) if video.is_file() else None}
            resume = ts
        renderer = Renderer(settings, outdir, backend=backend, models_dir=models_dir, resume=resume,
                            timestring=None if resume else ts, on_event=on_event, should_stop=should_stop,
                            progress=False,
                            settings_base=Path(job["settings_base"]) if job["settings_base"] else None,
                            backend_cache=cache)
        r = renderer.run()
        return {**result, "status": "done", "frames": r.frames, "run_dir": str(r.run_dir),
                "video": str(r.video) if r.video else None}
    except Interrupted as exc:
        try:
            frames = output.Manifest.load(manifest_file).frames_written if manifest_file else 0
        except WanError:
            frames = 0
        return {**result, "status": "interrupted", "error": str(exc), "frames": frames}
    except WanError as exc:
        return {**result, "error": str(exc)}
    except Exception as exc:  # a bug or a CUDA error: one line here, the traceback in the worker log
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {**result, "error": f"{type(exc).__name__}: {text}"}


def close_cache(cache: dict) -> None:
    for backend in list(cache.values()):
        try:
            backend.close()
        except Exception:
            pass
    cache.clear()


# --- progress ----------------------------------------------------------------------------

class Progress:
    """One tqdm bar over every job's denoising steps; retries never count a window twice."""

    def __init__(self, jobs: list[Job], enabled: bool = True, on_event: EventCallback | None = None):
        self.jobs = {job.index: job for job in jobs}
        self.on_event = on_event
        self.bar = None
        if enabled:
            from tqdm import tqdm

            total = sum(sum(job.window_steps) for job in jobs if job.settings is not None)
            self.bar = tqdm(total=total, unit="step", desc=f"{len(jobs)} jobs", file=sys.stderr,
                            dynamic_ncols=True)

    def event(self, index: int, event: dict) -> None:
        job = self.jobs[index]
        kind, attempt = event.get("event"), event.get("attempt", job.attempts - 1)  # 0-based
        if kind == "window_done":
            job.windows_by_attempt.setdefault(attempt, []).append(int(event["window"]))
        if self.on_event is not None:
            self.on_event(job, event)
        if attempt != job.attempts - 1:
            return  # a lost attempt's late events
        if kind == "started":
            if attempt == 0:
                for warning in event.get("warnings") or []:
                    self.write(f"{job.name}: warning: {warning}")
            start = int(event.get("resume_from_window", 0))
            job.steps_done, job.step_in_window = sum(job.window_steps[:start]), 0
            job.run_dir = event.get("run_dir", job.run_dir)
        elif kind == "step":
            window = int(event["window"])
            job.step_in_window = min(int(event["step"]), job.window_steps[window])
        elif kind == "window_done":
            job.steps_done += job.window_steps[int(event["window"])]
            job.step_in_window = 0
        self._refresh()

    def finish(self, job: Job, result: dict) -> None:
        job.status, job.error = result["status"], result.get("error", "")
        job.frames, job.video = result.get("frames", 0), result.get("video")
        job.run_dir = result.get("run_dir") or job.run_dir
        if job.status == "done":
            job.steps_done, job.step_in_window = sum(job.window_steps), 0
        self._refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        self.bar.n = sum(j.steps_done + j.step_in_window for j in self.jobs.values())
        counts = {s: sum(j.status == s for j in self.jobs.values()) for s in ("running", "done", "failed")}
        self.bar.set_postfix_str(", ".join(f"{v} {k}" for k, v in counts.items() if v), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- running -----------------------------------------------------------------------------

def run_local(jobs: list[Job], progress: Progress, *, outdir: str, models_dir: str | None = None,
              backend: str | None = None, should_stop: Callable[[], bool] = lambda: False) -> None:
    """One job after another in this process, pipelines kept warm between jobs."""
    cache: dict = {}
    try:
        for job in jobs:
            if job.status != "queued":
                continue
            if should_stop():
                break
            payload = job.payload()
            job.status, job.attempts = "running", 1
            result = run_job(payload, outdir=outdir, models_dir=models_dir, backend=backend, cache=cache,
                             should_stop=should_stop,
                             on_event=lambda e, i=job.index: progress.event(i, {**e, "attempt": 0}))
            progress.finish(job, result)
        for job in jobs:
            if job.status == "queued" and should_stop():
                job.error = "not started (stopped)"
    finally:
        close_cache(cache)


def import_ray():
    try:
        import ray
    except ImportError:
        raise WanError(f"--ray needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


class RenderActor:
    """Lives on one GPU (or CPU share) for the whole batch; its pipelines stay loaded."""

    def __init__(self, outdir: str, models_dir: str | None, backend: str | None, events, cpu_threads: int = 0):
        self.outdir, self.models_dir, self.backend = outdir, models_dir, backend
        self.events = events
        self.cache: dict = {}
        self.stopping = False
        if cpu_threads:  # a CPU actor keeps to its share of the machine
            import torch

            torch.set_num_threads(cpu_threads)

    def pid(self) -> int:
        return os.getpid()

    def stop(self) -> None:
        self.stopping = True  # polled at every denoising step of the running job

    def render(self, job: dict) -> dict:
        pid = os.getpid()

        def on_event(event: dict) -> None:
            if event["event"] in FORWARDED:
                self.events.put({"job": job["index"], "attempt": job["attempt"], "pid": pid, **event})

        return run_job(job, outdir=self.outdir, models_dir=self.models_dir, backend=self.backend,
                       cache=self.cache, on_event=on_event, should_stop=lambda: self.stopping)


def run_ray(jobs: list[Job], progress: Progress, *, outdir: str, models_dir: str | None = None,
            backend: str | None = None, address: str | None = None, gpus_per_actor: int = 1,
            actors: int | None = None, retries: int = 2, init_kwargs: dict | None = None,
            should_stop: Callable[[], bool] = lambda: False) -> None:
    """Run the queued jobs on Ray actors. Connects to ``address`` (a running cluster), or
    starts a local one; a Ray session the caller already started is used as it is."""
    ray = import_ray()
    from ray.util.queue import Queue

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # Only settings and small results cross the object store; Ray's floor is 75 MB.
            ray.init(**{"include_dashboard": False, "log_to_driver": False,
                        "object_store_memory": 100 * 2**20, **(init_kwargs or {})})
    retryable = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                 ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
    try:
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        if cluster_gpus:
            num_gpus = gpus_per_actor
            count = actors or max(1, cluster_gpus // gpus_per_actor)
            for job in jobs:
                if job.status == "queued" and job.gpus > gpus_per_actor:
                    progress.finish(job, {"status": "failed", "error": f"wan_gpus={job.gpus} needs "
                                          f"--gpus-per-actor {job.gpus} (actors have {gpus_per_actor})"})
        else:  # CPU-only cluster (tests, trying it out): one CPU per actor
            num_gpus, count = 0, actors or 1
            progress.write("note: the Ray cluster has no GPUs; rendering on CPU actors")
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
                    reason = _first_line(exc)
                    if job.attempts <= retries and not stopping:
                        progress.write(f"{job.name}: worker lost ({reason}); resuming on another actor"
                                       f" (retry {job.attempts} of {retries})")
                        job.status = "queued"
                        pending.appendleft(job)
                        idle.append(new_actor())  # takes the freed GPU
                    else:
                        progress.finish(job, {"status": "failed", "run_dir": job.run_dir,
                                              "error": f"worker lost {job.attempts} times: {reason}"})
                    continue
                except ray.exceptions.RayError as exc:
                    result = {"status": "failed", "error": _first_line(exc)}
                _drain(events, progress)  # the job's last window events before its result
                progress.finish(job, result)
                idle.append(actor)
        if stopping:
            for job in pending:
                job.error = "not started (stopped)"
        _drain(events, progress)
    finally:
        if started_here:
            ray.shutdown()


def _drain(events, progress: Progress) -> None:
    while True:
        batch = events.get_nowait_batch(events.qsize()) if events.qsize() else []
        if not batch:
            return
        for event in batch:
            progress.event(event["job"], event)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def run_batch(items: Iterable[tuple[str, str | os.PathLike | dict]], *, outdir: str | os.PathLike,
              overrides: dict | None = None, models_dir: str | None = None, backend: str | None = None,
              use_ray: bool = False, address: str | None = None, gpus_per_actor: int = 1,
              actors: int | None = None, retries: int = 2, init_kwargs: dict | None = None,
              progress: bool = True, on_event: EventCallback | None = None,
              should_stop: Callable[[], bool] = lambda: False, now: float | None = None) -> list[Job]:
    """Validate, then render every item; returns the jobs with their outcome (never raises
    for one job's failure). ``on_event(job, event)`` sees every forwarded render event."""
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
    jobs = prepare_jobs(items, overrides, outdir=None if remote else outdir, now=now)
    bar = Progress(jobs, enabled=progress, on_event=on_event)
    try:
        if any(job.status == "queued" for job in jobs):
            if use_ray:
                run_ray(jobs, bar, outdir=outdir, models_dir=models_dir, backend=backend, address=address,
                        gpus_per_actor=gpus_per_actor, actors=actors, retries=retries,
                        init_kwargs=init_kwargs, should_stop=should_stop)
            else:
                run_local(jobs, bar, outdir=outdir, models_dir=models_dir, backend=backend,
                          should_stop=should_stop)
    finally:
        bar.close()
    return jobs


def submit_to_ray(address: str | None, settings: Iterable[tuple[str, dict]], *, outdir: str | os.PathLike,
                  models_dir: str | None = None, on_event: EventCallback | None = None,
                  should_stop: Callable[[], bool] = lambda: False, **options) -> list[dict]:
    """The job API's hook: render ``[(name, settings dict), ...]`` on a Ray cluster (``address``
    None: a local one) and return one plain dict per item (``Job.to_dict``). Blocks; call it
    from a thread. ``on_event(job, event)`` carries progress; ``should_stop`` is polled."""
    jobs = run_batch(list(settings), outdir=outdir, models_dir=models_dir, use_ray=True, address=address,
                     progress=False, on_event=on_event, should_stop=should_stop, **options)
    return [job.to_dict() for job in jobs]


# --- command line ------------------------------------------------------------------------

def format_summary(jobs: list[Job]) -> str:
    rows = [("file", "status", "frames", "run dir", "error")]
    for job in jobs:
        frames = f"{job.frames}/{job.max_frames}" if job.settings is not None else "-"
        status = job.status + (f" ({job.attempts} tries)" if job.attempts > 1 else "")
        rows.append((job.name, status, frames, job.run_dir or "-", job.error))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4]
                     for r in rows).rstrip()


def add_batch_command(sub) -> None:
    p = sub.add_parser("batch", help="render many settings files, here or on a Ray cluster",
                       description="Render settings files one after another here, or on Ray actors "
                                   "(one per GPU, pipelines kept warm, lost workers resumed).")
    # "*", checked in cmd_batch: with "+", `batch --ray one.txt` would fail in argparse after
    # --ray took the file as its address.
    p.add_argument("settings", nargs="*", metavar="SETTINGS", help="Deforum settings files (.txt or .json)")
    p.add_argument("--model", help="model id (see `models`) overriding wan_model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one settings key (VALUE is JSON or text); repeatable")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="render on Ray: a running cluster's address (e.g. auto, ray://head:10001)"
                        " or, without one, a local cluster")
    p.add_argument("--backend", choices=["auto", "official", "diffusers"],
                   help="which backend loads Wan (default: wan_backend, else auto)")
    p.add_argument("--outdir", default="outputs", help="output folder, shared storage on a cluster"
                   " (default: outputs)")
    p.add_argument("--models-dir", help="folder with model weights (on every node)")
    p.add_argument("--gpus-per-actor", type=int, default=1, metavar="N",
                   help="GPUs each Ray actor holds; clips with wan_gpus up to N use them all (default 1)")
    p.add_argument("--actors", type=int, metavar="N",
                   help="Ray actors (default: the cluster's GPUs / --gpus-per-actor; 1 without GPUs)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a job whose worker died is resumed on another actor (default 2)")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from ..cli.main import _overrides

    if args.ray and (args.ray.endswith((".txt", ".json")) or Path(args.ray).is_file()):
        # `batch --ray a.txt b.txt`: argparse took the first file for the optional address.
        args.settings.insert(0, args.ray)
        args.ray = ""
    if not args.settings:
        raise WanError("batch needs at least one settings file")
    if args.ray is not None:
        import_ray()
    from ..cli.sigint import stop_on_sigint

    with stop_on_sigint("stopping every job at its next step") as should_stop:
        jobs = run_batch([(path, path) for path in args.settings], outdir=args.outdir,
                         overrides=_overrides(args), models_dir=args.models_dir, backend=args.backend,
                         use_ray=args.ray is not None, address=args.ray or None,
                         gpus_per_actor=args.gpus_per_actor, actors=args.actors, retries=args.retries,
                         should_stop=should_stop)
    print(format_summary(jobs))
    for job in jobs:
        if job.status == "interrupted":
            print(f"resume {job.name}: python -m deforum_wan render {job.name} --outdir {args.outdir}"
                  f" --resume {job.timestring}", file=sys.stderr)
    if should_stop():
        return 130
    return 0 if all(job.status == "done" for job in jobs) else 2
