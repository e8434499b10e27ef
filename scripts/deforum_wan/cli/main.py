"""Command line: ``python -m deforum_wan plan|render|camera|models|download|official|tiny-models|bench|batch|ui``.

User errors (``WanError``) print one ``error: ...`` line and exit 2; Ctrl-C exits 130.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import __version__
from ..errors import Interrupted, WanError
from .args import add_settings_args, apply_extra_dirs, overrides


def cmd_plan(args) -> int:
    from ..config.frames import format_frames, frame_values
    from ..config.memory_plan import format_memory, memory_json, memory_parts
    from ..config.planner import format_plan, make_plan
    from ..config.settings import load_settings, read_settings_file
    from ..render.inputs import inline_manifest

    data = {**read_settings_file(args.settings), **overrides(args)}
    inline_manifest(data, None, args.settings)
    # A Video Input's source video is read (its kept frames are the plan's frames): the
    # command line's user names their own files.
    settings = load_settings(data, name=Path(args.settings).name, read_video=True,
                             base=Path(args.settings).parent)
    plan = make_plan(settings)
    memory = memory_parts(settings, plan=plan)  # headers of the weights on disk only
    frames = frame_values(settings, plan.source_frames, plan.control or _gray(plan)) if args.frames else None
    if args.json:
        out = {**plan.to_json(), "memory": memory_json(memory)}
        if frames is not None:
            out["frames"] = frames
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print("\n".join([format_plan(plan), *format_memory(memory)]))
        if frames is not None:
            print("\n" + format_frames(settings, frames))
    return 0


def _gray(plan) -> str:
    """A Video Input on a VACE model: every frame conditioned on its source frame's grey."""
    return "gray" if plan.windows and plan.windows[0].control == "gray" else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deforum_wan",
        description="Render long Wan 2.1/2.2 videos from Deforum settings files.")
    parser.add_argument("--version", action="version", version=f"deforum-wan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="show the clip plan of a settings file (no model needed)")
    add_settings_args(p, many=False)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--frames", action="store_true", help="also each output frame's prompt, seed, CFG, strength and"
                   " camera step as Deforum (or a Parseq manifest) gives them, and a source video's frame"
                   " (with a hybrid composite, its alpha)")
    p.set_defaults(func=cmd_plan)

    from .batch import add_batch_command
    from .bench import add_bench_command
    from .camera import add_camera_command
    from .models import add_model_commands
    from .official import add_official_command
    from .render import add_render_command
    from .ui import add_ui_command

    add_render_command(sub)
    add_camera_command(sub)
    add_model_commands(sub)
    add_official_command(sub)
    add_bench_command(sub)
    add_batch_command(sub)
    add_ui_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        apply_extra_dirs(args)
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
