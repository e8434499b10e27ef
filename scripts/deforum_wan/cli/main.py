"""Command line: ``python -m deforum_wan plan|render|models|download|tiny-models|bench|batch|ui``.

User errors (``WanError``) print one ``error: ...`` line and exit 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import json
import sys

from .. import __version__
from ..errors import Interrupted, WanError
from ..config.presets import PRESETS  # pure, no torch


def _add_settings_args(p: argparse.ArgumentParser, many: bool) -> None:
    p.add_argument("settings", nargs="+" if many else None, metavar="SETTINGS",
                   help="Deforum settings file (.txt or .json)")
    p.add_argument("--model", help="model id (see `models`) overriding wan_model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one settings key (VALUE is JSON or text); repeatable")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """--outdir and --models-dir, shared by `render` and `ui`."""
    p.add_argument("--outdir", default="outputs",
                   help="output folder; each render goes to OUTDIR/<batch_name>/ (default: outputs)")
    p.add_argument("--models-dir", help="folder with model weights (default: DEFORUM_WAN_MODELS_DIR"
                   " or ~/.cache/deforum-wan/models)")


def _overrides(args) -> dict:
    from ..config.settings import parse_override

    out = dict(parse_override(item) for item in args.overrides)
    if args.model:
        out["wan_model"] = args.model
    if getattr(args, "preset", None):
        out["wan_preset"] = args.preset
    return out


def cmd_plan(args) -> int:
    from ..config.planner import format_plan, make_plan
    from ..config.settings import load_settings

    plan = make_plan(load_settings(args.settings, _overrides(args)))
    if args.json:
        print(json.dumps(plan.to_json(), indent=2, ensure_ascii=False))
    else:
        print(format_plan(plan))
    return 0


def cmd_render(args) -> int:
    from ..render.loop import render_cli

    return render_cli(args, _overrides(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deforum_wan",
        description="Render long Wan 2.1/2.2 videos from Deforum settings files.")
    parser.add_argument("--version", action="version", version=f"deforum-wan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="show the clip plan of a settings file (no model needed)")
    _add_settings_args(p, many=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("render", help="render settings files to Deforum-named frames and an mp4")
    _add_settings_args(p, many=True)
    p.add_argument("--backend", choices=["auto", "official", "diffusers"],
                   help="which backend loads Wan (default: wan_backend, else auto)")
    add_output_args(p)
    p.add_argument("--resume", metavar="TIMESTRING",
                   help="continue an interrupted render with this timestring")
    p.add_argument("--events", action="store_true",
                   help="print JSON-line events on stdout for other programs")
    p.add_argument("--preset", choices=PRESETS,
                   help="speed/memory preset (wan_preset): quality (default), balanced, fast, low-vram")
    p.set_defaults(func=cmd_render)

    from ..service.batch import add_batch_command
    from .bench import add_bench_command
    from .ui import add_ui_command
    from .models import add_model_commands

    add_model_commands(sub)
    add_bench_command(sub)
    add_batch_command(sub)
    add_ui_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except WanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `plan ... | head` closed the pipe; not an error
        sys.stderr.close()
        return 0
