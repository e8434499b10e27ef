"""``batch SETTINGS...``: many renders here or on Ray (``service.batch``), one progress bar,
a summary table at the end."""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..errors import WanError, resume_command
from ..service.batch import Job, import_ray, run_batch
from .args import add_backend_arg, add_extra_dirs_arg, add_override_args, overrides
from .progress import ProgressBar
from .sigint import stop_on_sigint


def format_summary(jobs: list[Job]) -> str:
    rows = [("file", "status", "frames", "run dir", "error")]
    for job in jobs:
        frames = f"{job.frames}/{job.max_frames}" if job.settings is not None else "-"
        status = job.status + (f" ({job.attempts} tries)" if job.attempts > 1 else "")
        rows.append((job.name, status, frames, job.run_dir or "-", job.error))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4]
                     for r in rows).rstrip()


class _SettingsRequired(argparse.HelpFormatter):
    """Shows SETTINGS as required, which it is: parsed as "*" (see below), checked in cmd_batch."""

    def _format_args(self, action, default_metavar):
        if action.dest == "settings":
            return "{0} [{0} ...]".format(action.metavar)
        return super()._format_args(action, default_metavar)


def add_batch_command(sub) -> None:
    p = sub.add_parser("batch", help="render many settings files, here or on a Ray cluster",
                       formatter_class=_SettingsRequired,
                       description="Render settings files one after another here, or on Ray actors "
                                   "(one per GPU, pipelines kept warm, lost workers resumed).")
    # "*", checked in cmd_batch: with "+", `batch --ray one.txt` would fail in argparse after
    # --ray took the file as its address.
    p.add_argument("settings", nargs="*", metavar="SETTINGS", help="Deforum settings files (.txt or .json)")
    add_override_args(p)
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="render on Ray: a running cluster's address (e.g. auto, ray://head:10001)"
                        " or, without one, a local cluster")
    add_backend_arg(p)
    p.add_argument("--outdir", default="outputs", help="output folder, shared storage on a cluster"
                   " (default: outputs)")
    p.add_argument("--models-dir", help="folder with model weights (on every node)")
    add_extra_dirs_arg(p)
    p.add_argument("--gpus-per-actor", type=int, default=1, metavar="N",
                   help="GPUs each Ray actor holds; clips with wan_gpus up to N use them all (default 1)")
    p.add_argument("--actors", type=int, metavar="N",
                   help="Ray actors (default: the cluster's GPUs / --gpus-per-actor; 1 without GPUs)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="times a job whose worker died is resumed on another actor (default 2)")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    if args.ray and (args.ray.endswith((".txt", ".json")) or Path(args.ray).is_file()):
        # `batch --ray a.txt b.txt`: argparse took the first file for the optional address.
        args.settings.insert(0, args.ray)
        args.ray = ""
    if not args.settings:
        raise WanError("batch needs at least one settings file")
    if args.ray is not None:
        import_ray()
    view = ProgressBar(f"{len(args.settings)} jobs", many=True)
    with stop_on_sigint("stopping every job at its next step") as should_stop, contextlib.closing(view):
        jobs = run_batch([(path, path) for path in args.settings], outdir=args.outdir,
                         overrides=overrides(args), view=view, models_dir=args.models_dir, backend=args.backend,
                         use_ray=args.ray is not None, address=args.ray or None,
                         gpus_per_actor=args.gpus_per_actor, actors=args.actors, retries=args.retries,
                         should_stop=should_stop)
    print(format_summary(jobs))
    for job in jobs:
        if job.status == "interrupted":
            print(f"resume {job.name}: {resume_command(job.name, job.timestring, args.outdir)}",
                  file=sys.stderr)
    if should_stop():
        return 130
    return 0 if all(job.status == "done" for job in jobs) else 2
