"""``render SETTINGS...``: one after another, each into its own folder, under one progress bar."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config.keys import PRESETS
from ..config.planner import make_plan
from ..config.settings import load_settings
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

    if args.resume and len(args.settings) > 1:
        raise WanError("--resume takes one settings file")
    # Validate every file, its plan and the outdir before any model loads or file is written.
    loaded, failed = _load_all(args)
    if loaded:  # nothing to render: no output folder either
        check_outdir(args.outdir)
    many = len(args.settings) > 1
    bar = ProgressBar(f"{len(args.settings)} files" if many else f"{len(loaded[0][2].windows)} windows", many=many)
    for path, _, plan in loaded:
        bar.event(str(path), {"event": "planned", "window_steps": [w.steps for w in plan.windows]})
    for path, exc in failed:  # named before the first render starts
        _report_failure(bar, args, path, exc)
    failures = len(failed)
    try:
        with stop_on_sigint("stopping at the next step") as should_stop:
            for path, settings, _ in loaded:
                failures += not _render_one(args, bar, path, settings, should_stop, many)
    finally:
        bar.close()
    return 2 if failures else 0


def _load_all(args) -> tuple[list, list]:
    """(path, settings, plan) of each good file and (path, error) of each bad one; with
    several files a bad one fails alone, a single bad file is the command's error."""
    loaded, failed = [], []
    for path in args.settings:
        try:
            settings = load_settings(path, overrides(args))
            loaded.append((path, settings, make_plan(settings)))
        except WanError as exc:
            if len(args.settings) == 1:
                raise
            failed.append((path, exc))
    return loaded, failed


def _render_one(args, bar: ProgressBar, path: str, settings, should_stop, many: bool) -> bool:
    """Render one file; False when it failed (with several files the others go on)."""
    from ..render.loop import Renderer

    def on_event(event: dict, key: str = str(path)) -> None:
        bar.event(key, event)
        if args.events:
            _print_json(event)
    try:
        result = Renderer(settings, args.outdir, backend=args.backend, models_dir=args.models_dir,
                          resume=args.resume, on_event=on_event, should_stop=should_stop,
                          settings_base=Path(path).parent).run()
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
