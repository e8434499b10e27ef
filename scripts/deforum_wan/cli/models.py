"""CLI commands about models: ``models``, ``download ID``, ``tiny-models DIR``.

cli.py registers them with ``add_model_commands(subparsers)``; each parser sets
``func`` to its ``cmd_*`` function, which returns an exit code and raises WanError
for anything the user can fix.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import WanError
from ..models.detect import OtherModelFile, detect
from ..models.file_models import components_to_fetch, resolve_model
from ..models.headers import read_header
from ..models.places import confine, looks_like_file, model_roots, weight_files
from ..models.random_full import RECIPES
from ..models.registry import DEPTH_MODELS, get_model
from ..models.weights import LAYOUTS, download, download_depth, registry_rows
from .args import add_extra_dirs_arg

MODELS_DIR_HELP = "(default: $DEFORUM_WAN_MODELS_DIR or ~/.cache/deforum-wan/models)"


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def cmd_models(args) -> int:
    registry = {**registry_rows(getattr(args, "models_dir", None)), **file_rows(getattr(args, "models_dir", None))}
    if getattr(args, "json", False):
        print(json.dumps(registry, indent=1))
        return 0
    print(f"models dir: {registry['models_dir']}")
    header = ("id", "kind", "fps", "window", "size", "local", "repo")
    table = [header] + [
        (r["id"], r["kind"], str(r["fps"]), str(r["window"]), f"{r['width']}x{r['height']}",
         "random weights (benchmarks)" if r["random"] else
         f"yes {_size(r['bytes'])} ({'+'.join(r['layouts'])})" if r["present"] else "no",
         r["diffusers_repo"] or ("built locally" if r["tiny"] else ""))
        for r in registry["models"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    files = [f for f in registry["files"] if not f.get("other")]
    others = [Path(f["path"]).name for f in registry["files"] if f.get("other")]
    if files or others:
        print(f"\nweight files ({', '.join(registry['folders'])}):")
    for f in files:
        what = f"{f['summary']}, {f['quant']}" if f["kind"] else f"unusable: {f['reason']}"
        print(f"  {f['path']}  {_size(f['bytes'])}  {what}")
    if others:  # a host's checkpoint folder holds SD/SDXL/Flux files beside Wan's: one line
        print(f"  other models' files, not Wan ({len(others)}): {', '.join(others)}")
    return 0


def file_rows(models_dir=None) -> dict:
    """Every weight file in the model folders with what it holds, told by its header."""
    roots = model_roots(models_dir)
    rows = []
    for path, _folder_kind in weight_files(roots):
        row = {"path": str(path), "bytes": path.stat().st_size if path.exists() else 0, "kind": None,
               "summary": None, "quant": None, "reason": None, "other": False}
        try:
            confine(path, roots)
            found = detect(read_header(path))
            row.update(kind=found.kind, summary=found.summary, quant=found.quant, variant=found.variant,
                       size=found.size, layout=found.layout)
        except WanError as e:
            row.update(reason=str(e).splitlines()[0], other=isinstance(e, OtherModelFile))
        rows.append(row)
    return {"folders": [str(r) for r in roots], "files": rows}


def cmd_download(args) -> int:
    if args.id.strip().lower() in DEPTH_MODELS:  # a depth model for 3D depth warping
        spec = DEPTH_MODELS[args.id.strip().lower()]
        print(f"{spec.id}: {download_depth(spec, models_dir=args.models_dir, token=args.token)}")
        return 0
    spec = get_model(args.id) if not looks_like_file(args.id) else \
        resolve_model(args.id, models_dir=args.models_dir, extra=getattr(args, "extra_models_dir", None))
    if spec.weights:  # a transformer file: only the parts it lacks, when no folder of them is on disk
        base = components_to_fetch(spec, args.models_dir)
        if base is None:
            print(f"{spec.id}: its components are on disk (or built, or given by wan_components); nothing to fetch")
            return 0
        print(f"{spec.id}: fetching the components alone (text encoder, tokenizer, VAE, CLIP) of {base.id}")
        spec, args.layout = base, "components"
    if spec.tiny:
        path = download(spec, models_dir=args.models_dir, layout=args.layout, token=args.token)
    else:
        path = _download_with_bar(spec, args)
    print(f"{spec.id}: {path}")
    return 0


def _download_with_bar(spec, args):
    """The size first (download's first progress call, before any byte), then a byte bar."""
    from tqdm import tqdm

    bars = []

    def progress(done: int, total: int) -> None:
        if not bars:
            print(f"downloading {spec.id}: {_size(total)} ({_size(total - done)} to fetch)", flush=True)
            bars.append(tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=spec.id, file=sys.stderr, dynamic_ncols=True))
        bars[0].update(done - bars[0].n)

    try:
        return download(spec, models_dir=args.models_dir, layout=args.layout, token=args.token,
                        progress=progress)
    finally:
        for bar in bars:
            bar.close()


def cmd_tiny_models(args) -> int:
    if args.full_size:
        from ..models.random_full import parameter_count, write_random_model
        from .bench.random_weights import count

        size = "scaled" if args.scaled else "full"
        for model_id in args.full_size:
            spec = get_model(model_id)
            path = write_random_model(spec.id, Path(args.dir) / spec.id, size)
            counts = ", ".join(f"{part} {count(n)}" for part, n in parameter_count(spec.id, size).items())
            print(f"{spec.id} ({size} architecture, random weights made where it loads: {counts}): {path}")
        return 0
    from ..models.tiny import build_tiny_models

    try:
        built = build_tiny_models(args.dir, force=args.force)
    except OSError as exc:  # a folder that cannot be made or written: one line, not a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        raise WanError(f"cannot build the tiny models in {args.dir}: {exc.strerror or exc}{where}") from None
    for model_id, path in built.items():
        print(f"{model_id}: {path}")
    return 0


def add_model_commands(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the Wan models and whether their weights are on disk, and every"
                              " single weight file in the model folders with what it holds")
    p.add_argument("--models-dir", default=None, help=f"where weights live {MODELS_DIR_HELP}")
    add_extra_dirs_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = subparsers.add_parser("download", help="download a model's weights from the Hugging Face hub")
    p.add_argument("id", help="model id (see: models), or a transformer file in the model folders: the parts it"
                   " lacks (text encoder, tokenizer, VAE, CLIP) from its model's repo, without the transformer")
    p.add_argument("--layout", choices=LAYOUTS, default="diffusers",
                   help="diffusers for the diffusers backend, official for the official wan code"
                        " (default: diffusers)")
    p.add_argument("--models-dir", default=None, help=f"download into this folder {MODELS_DIR_HELP}")
    p.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or the saved login)")
    add_extra_dirs_arg(p)
    p.set_defaults(func=cmd_download)

    p = subparsers.add_parser("tiny-models", help="build the tiny random-weight Wan models (tests, demo), or"
                              " full-size ones (GPU benchmarks)")
    p.add_argument("dir", help="folder to build them in (give it as --models-dir to render or bench)")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    p.add_argument("--full-size", action="append", metavar="MODEL_ID", choices=sorted(RECIPES),
                   help="instead: the published architecture of this registry model with random weights"
                        f" ({', '.join(sorted(RECIPES))}); repeatable. Only configs are written: the weights are"
                        " made on the device, in its dtype, when the model loads")
    p.add_argument("--scaled", action="store_true",
                   help="with --full-size: the same architecture at small widths and depths (CPU tests)")
    p.set_defaults(func=cmd_tiny_models)
