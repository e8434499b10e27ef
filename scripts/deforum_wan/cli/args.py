"""Arguments several commands share, and the settings overrides they add up to."""
from __future__ import annotations

import argparse
import os

from ..config.keys import BACKENDS
from ..config.settings import parse_override


def add_settings_args(p: argparse.ArgumentParser, many: bool) -> None:
    p.add_argument("settings", nargs="+" if many else None, metavar="SETTINGS",
                   help="Deforum settings file (.txt or .json)")
    add_override_args(p)


def add_override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model id (see `models`) overriding wan_model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one settings key (VALUE is JSON or text); repeatable")


def add_backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS,
                   help="which backend loads Wan (default: wan_backend, else auto)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """--outdir and --models-dir, shared by `render` and `ui`."""
    p.add_argument("--outdir", default="outputs",
                   help="output folder; each render goes to OUTDIR/<batch_name>/ (default: outputs)")
    p.add_argument("--models-dir", help="folder with model weights (default: DEFORUM_WAN_MODELS_DIR"
                   " or ~/.cache/deforum-wan/models)")
    add_extra_dirs_arg(p)


EXTRA_HELP = ("another folder of single weight files, flat or in ComfyUI's layout (diffusion_models, text_encoders,"
              " vae, clip_vision, loras); repeatable; added to $DEFORUM_WAN_EXTRA_MODEL_DIRS")


def add_extra_dirs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--extra-models-dir", action="append", default=[], metavar="DIR", help=EXTRA_HELP)


def apply_extra_dirs(args) -> None:
    """--extra-models-dir into the environment: the settings reader, the worker processes and the
    loaders all find files through it."""
    from ..models.places import EXTRA_DIRS_ENV

    dirs = [str(d) for d in getattr(args, "extra_models_dir", None) or ()]
    if dirs:
        os.environ[EXTRA_DIRS_ENV] = os.pathsep.join(dirs + [p for p in [os.environ.get(EXTRA_DIRS_ENV, "")] if p])


def overrides(args) -> dict:
    """``--set KEY=VALUE``, ``--model`` and ``--preset`` as settings keys."""
    out = dict(parse_override(item) for item in args.overrides)
    if args.model:
        out["wan_model"] = args.model
    if getattr(args, "preset", None):
        out["wan_preset"] = args.preset
    return out
