"""``render SETTINGS...``: one after another, each into its own folder, under one progress bar."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config.keys import PRESETS
from ..config.settings import read_settings_file
from ..errors import Interrupted, SettingsError, WanError, printable
from .args import add_backend_arg, add_output_args, add_settings_args, overrides
from .progress import ProgressBar
from .sigint import stop_on_sigint


def add_render_command(sub) -> None:
    p = sub.add_parser("render", help="render settings files to Deforum-named frames and an mp4")
    add_settings_args(p, many=True)
    add_backend_arg(p)
    add_output_args(p)
    p.add_argument("--resume", metavar="TIMESTRING",
                   help="continue an interrupted render with this timestring")
    p.add_argument("--events", action="store_true",
                   help="print JSON-line events on stdout for other programs")
    p.add_argument("--preset", choices=PRESETS,
                   help="speed/memory preset (wan_preset): quality (default), balanced, fast, low-vram")
    p.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from ..render.loop import check_outdir  # numpy and the writer: not for `plan`
    from ..render.runner import LocalRunner

    if args.resume and len(args.settings) > 1:
        raise WanError("--resume takes one settings file")
    # Validate every file, its plan and the outdir before any model loads or file is written.
    loaded, failed = _load_all(args)
    if loaded:  # nothing to render: no output folder either
        check_outdir(args.outdir)
    many = len(args.settings) > 1
    bar = ProgressBar(f"{len(args.settings)} files" if many else f"{len(loaded[0][1].plan.windows)} windows",
                      many=many)
    for path, checked in loaded:
        bar.event(str(path), {"event": "planned", "window_steps": [w.steps for w in checked.plan.windows]})
    for path, exc in failed:  # named before the first render starts
        _report_failure(bar, args, path, exc)
    failures = len(failed)
    # Each file loads its own models and frees them at its end, as separate commands would.
    runner = LocalRunner(args.outdir, models_dir=args.models_dir, backend=args.backend, keep_warm=False)
    try:
        with stop_on_sigint("stopping at the next step") as should_stop:
            for path, checked in loaded:
                failures += not _render_one(args, bar, runner, path, checked, should_stop, many)
    finally:
        bar.close()
    return 2 if failures else 0


def _load_all(args) -> tuple[list, list]:
    """(path, CheckedJob) of each good file and (path, error) of each bad one; with several
    files a bad one fails alone, a single bad file is the command's error. The user names
    their own files: inputs are read where the file says, relative to its folder."""
    from ..render.job import JobSpec, check_job

    loaded, failed = [], []
    for path in args.settings:
        try:
            spec = JobSpec({**read_settings_file(path), **overrides(args)}, Path(path).name,
                           resume=args.resume, settings_base=str(Path(path).resolve().parent))
            loaded.append((path, check_job(spec, args.outdir, models_dir=args.models_dir, confine=False)))
        except WanError as exc:
            if len(args.settings) == 1:
                raise
            failed.append((path, exc))
    return loaded, failed


def _render_one(args, bar: ProgressBar, runner, path: str, checked, should_stop, many: bool) -> bool:
    """Render one file; False when it failed (with several files the others go on)."""
    def on_event(event: dict, key: str = str(path)) -> None:
        bar.event(key, event)
        if args.events:
            _print_json(event)
    try:
        result = runner.run(checked, on_event, should_stop)
    except Interrupted:
        raise
    except WanError as exc:
        if not many:
            raise
        _report_failure(bar, args, path, exc)
        return False
    bar.write(f"{path}: {result.frames} frames in {result.run_dir}"
              + (f", video {result.video.name}" if result.video else ""))
    return True


def _report_failure(bar: ProgressBar, args, path: str, exc: WanError) -> None:
    bar.event(str(path), {"event": "job_done", "status": "failed"})
    named = isinstance(exc, SettingsError) and exc.source == Path(path).name  # the message names it already
    bar.write(f"error: {path}: {exc.detail if named else exc}")
    if args.events:
        _print_json({"event": "error", "settings": str(path), "message": str(exc)})


def _print_json(event: dict) -> None:
    # printable: a file name Linux could not decode holds lone surrogates, which stdout refuses.
    print(printable(json.dumps(event, ensure_ascii=False)), flush=True)
