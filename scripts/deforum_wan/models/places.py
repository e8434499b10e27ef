"""Where single weight files are found: the models folder and the extra folders a user already
has (a ComfyUI or Forge Neo ``models`` folder), each flat or in ComfyUI's layout.

A file is used only where it lies inside one of these folders: a name that climbs out of them,
or a link that points out of them, is refused in one line. Paths only; no torch.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import WanError
from .weights import resolve_models_dir

EXTRA_DIRS_ENV = "DEFORUM_WAN_EXTRA_MODEL_DIRS"
# ComfyUI's folder per kind of file (its folder_paths.py; ``unet`` and ``clip`` are its old names).
KIND_FOLDERS = {
    "transformer": ("diffusion_models", "unet"),
    "text_encoder": ("text_encoders", "clip"),
    "vae": ("vae",),
    "clip_vision": ("clip_vision",),
    "lora": ("loras",),
}
# One reader per format (backends/single_file.py).
WEIGHT_SUFFIXES = (".safetensors", ".gguf")


def extra_dirs(extra=None) -> list[Path]:
    """Extra model folders: ``extra`` (a list, or one os.pathsep-separated string) and then
    those of $DEFORUM_WAN_EXTRA_MODEL_DIRS."""
    items = []
    for value in ([extra] if isinstance(extra, (str, os.PathLike)) else list(extra or ())) + \
            [os.environ.get(EXTRA_DIRS_ENV, "")]:
        items += [p for p in str(value).split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for item in items:
        path = Path(item.strip()).expanduser()
        if path not in out:
            out.append(path)
    return out


def model_roots(models_dir=None, extra=None) -> list[Path]:
    """The models folder, then the extra folders, each once (existing or not)."""
    roots = [resolve_models_dir(models_dir)]
    roots += [p for p in extra_dirs(extra) if p not in roots]
    return roots


def _search_folders(roots: list[Path]) -> list[tuple[Path, str | None]]:
    """(folder, the kind its name says or None) for each root and its ComfyUI subfolders."""
    out = []
    for root in roots:
        out.append((root, None))
        for kind, names in KIND_FOLDERS.items():
            out += [(root / name, kind) for name in names]
    return out


def _inside(path: Path, roots: list[Path]) -> bool:
    real = Path(os.path.realpath(path))
    for root in roots:
        top = Path(os.path.realpath(root))
        if real == top or top in real.parents:
            return True
    return False


def weight_files(roots: list[Path]) -> list[tuple[Path, str | None]]:
    """Every weight file directly in a root or in its ComfyUI subfolders: (path, folder kind).
    Links are listed too; ``confine`` says whether they may be used."""
    seen, out = set(), []
    for folder, kind in _search_folders(roots):
        try:
            entries = sorted(folder.iterdir())
        except OSError:  # absent or unreadable: nothing there
            continue
        for path in entries:
            if path.suffix.lower() in WEIGHT_SUFFIXES and path not in seen:
                seen.add(path)
                out.append((path, kind))
    return out


def confine(path: Path, roots: list[Path]) -> Path:
    """``path`` when it is a regular file inside ``roots`` (links followed, staying inside)."""
    if not _inside(path, roots):
        where = "links out of" if _inside(path.parent, roots) else "is outside"
        raise WanError(f"weight file {path} {where} the model folders ({', '.join(map(str, roots))})")
    if not path.is_file():
        raise WanError(f"weight file {path} is not a regular file")
    return path


def find_weight_file(name: str, roots: list[Path]) -> Path:
    """The file ``name`` names: a path (absolute, or relative to a root) inside the model
    folders, or a bare file name looked up in every root and its ComfyUI subfolders."""
    given = Path(str(name)).expanduser()
    if given.is_absolute():
        return confine(given, roots)
    if len(given.parts) > 1:
        for root in roots:
            if (root / given).exists() or (root / given).is_symlink():
                return confine(root / given, roots)
    else:
        for path, _kind in weight_files(roots):
            if path.name == given.name:
                return confine(path, roots)
    raise WanError(f"weight file {name!r} is not in the model folders ({', '.join(map(str, roots))});"
                   f" put it there (or in a ComfyUI folder given with --extra-models-dir / ${EXTRA_DIRS_ENV})")


def looks_like_file(value: str) -> bool:
    """A ``wan_model`` value that names a weight file rather than a registry id."""
    return str(value).strip().lower().endswith(WEIGHT_SUFFIXES)
