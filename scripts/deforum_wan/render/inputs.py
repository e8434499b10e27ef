"""The one rule for the files a job may read: its init image, videos and soundtrack from the output
folder (or an input folder the host allows), its LoRAs from the models or output folder.
``check_job`` applies it to every job a server takes (the tab, /wan_api/, batches, run-now),
so a request can never make the server read, render or return a file of its choosing.

Relative names are looked up in those folders; what is found is written back into the
settings as an absolute path, so the worker reads exactly the file that was checked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from ..config.control import control_paths, with_path
from ..config.files import FileRefused, read_limited
from ..config.keyframes import guided_images_of, with_images
from ..config.keys import BY_NAME
from ..config.parseq import MAX_MANIFEST_CHARS, names_file
from ..config.schedule import ExprError
from ..config.settings import init_image_of, soundtrack_of, source_video_of, video_mask_of
from ..errors import SettingsError

# Extra folders a host lets jobs read inputs from (os.pathsep-separated), e.g. a shared
# footage folder; the output folder is always one.
INPUT_DIRS_ENV = "DEFORUM_WAN_INPUT_DIRS"
MAX_PATH_CHARS = 4096


class PathRefused(SettingsError):
    """A job names a file outside the folders it may read."""


def input_roots(outdir: str | os.PathLike, extra: Iterable[str | os.PathLike] = ()) -> list[Path]:
    roots = [Path(outdir).expanduser().resolve()]
    for item in [*extra, *os.environ.get(INPUT_DIRS_ENV, "").split(os.pathsep)]:
        if str(item).strip():
            roots.append(Path(item).expanduser().resolve())
    return roots


def find_inside(value: str, roots: Sequence[Path]) -> Path | None:
    """The existing regular file ``value`` names inside one of ``roots`` (resolved, links
    followed), or None."""
    text = str(value)
    if not text or "\x00" in text or len(text) > MAX_PATH_CHARS:
        return None
    path = Path(text).expanduser()
    for root in roots:
        try:
            candidate = (path if path.is_absolute() else root / path).resolve()
            candidate.relative_to(root)
            if candidate.is_file():
                return candidate
        except (ValueError, OSError, RuntimeError):  # outside, unreadable, or a link loop
            continue
    return None


def confine_job_paths(settings: dict, outdir: str | os.PathLike, models_dir: str | os.PathLike,
                      where: str = "the job", extra_inputs: Iterable[str | os.PathLike] = ()) -> dict:
    """``settings`` with its input files checked and made absolute; PathRefused otherwise."""
    roots = input_roots(outdir, extra_inputs)
    for key, value in (("init_image", init_image_of(settings)), ("video_init_path", source_video_of(settings)),
                       ("video_mask_path", video_mask_of(settings)), ("soundtrack_path", soundtrack_of(settings))):
        if not value:  # an empty video_init_path is refused by the settings, naming the key
            continue
        if "://" in value and key == "soundtrack_path":
            continue  # the render warns and makes a silent video
        settings[key] = _found(key, value, roots, where, _without(settings, key))
    _confine_controls(settings, roots, where)
    settings = confine_keyframes(settings, roots, where)
    inline_manifest(settings, roots, where)
    lora_roots = [Path(models_dir).expanduser().resolve(), *roots]

    def place(value, key: str) -> str:
        found = find_inside(str(value), lora_roots)
        if found is None or found.suffix != ".safetensors":
            raise PathRefused(f"{key} {_shown(value)} must name a .safetensors file in the models folder"
                              f" {lora_roots[0]} or the output folder", where)
        return str(found)

    loras = settings.get("wan_loras")
    if isinstance(loras, list):
        settings["wan_loras"] = [
            place(item, "wan_loras") if isinstance(item, str)
            else {**item, "path": place(item["path"], "wan_loras")}
            if isinstance(item, dict) and isinstance(item.get("path"), str) else item
            for item in loras]
    distill = settings.get("wan_distill_lora")
    if isinstance(distill, str) and distill.strip().lower() not in ("", "auto", "off"):
        settings["wan_distill_lora"] = place(distill, "wan_distill_lora")
    return settings


def _without(settings: dict, key: str) -> str:
    """How to render without a hybrid video: Deforum files often keep its placeholder path."""
    if key != "video_init_path" or str(settings.get("animation_mode")) == "Video Input":
        return ""
    return "; or set hybrid_motion and hybrid_composite to None to render without the hybrid video"


def _confine_controls(settings: dict, roots: Sequence[Path], where: str) -> None:
    """The control videos (ControlNet units' and wan_control's), by the same rule."""
    try:
        wan_control = BY_NAME["wan_control"].read(settings.get("wan_control"))
    except ExprError as exc:
        raise SettingsError(str(exc), where) from None
    for key, value in control_paths(settings, wan_control):
        with_path(settings, key, _found(key, value, roots, where))


def _found(key: str, value: str, roots: Sequence[Path], where: str, hint: str = "") -> str:
    """The absolute path of input file ``value`` inside ``roots``, or one PathRefused line (a
    URL, or no such file there; ``hint``: what else the user may do)."""
    if "://" in value:
        raise PathRefused(f"{key} {_shown(value)} is a URL (the render reads local files only); download"
                          " it into the output folder", where)
    found = find_inside(value, roots)
    if found is None:
        raise PathRefused(f"{key} {_shown(value)} must name an existing file inside the output folder"
                          f" {roots[0]} (upload it, or copy it there){hint}", where)
    return str(found)


def confine_keyframes(settings: dict, roots: Sequence[Path], where: str = "the job") -> dict:
    """Each guided image (``init_images``) found inside ``roots`` and named by its absolute path."""
    try:
        given = guided_images_of(settings) or {}
    except ExprError as exc:  # the settings reader says it in full, with the job's name
        raise SettingsError(str(exc), where) from None
    found_all = {}
    for key, value in given.items():
        if not isinstance(value, str) or "://" in value:
            continue  # refused by the settings reader, one line naming the key
        found = find_inside(value, roots)
        if found is None:
            raise PathRefused(f"init_images key {str(key)!r}: {_shown(value)} must name an existing file inside"
                              f" the output folder {roots[0]} (upload it, or copy it there)", where)
        found_all[str(key)] = str(found)
    return with_images(settings, found_all) if found_all else settings


def inline_manifest(settings: dict, roots: Sequence[Path] | None, where: str = "the job") -> dict:
    """A ``parseq_manifest`` that names a file replaced by the file's text: a file inside
    ``roots``, or (None: the command line, whose user names their own files) any file."""
    value = settings.get("parseq_manifest")
    if not names_file(value):
        return settings
    found = find_inside(value.strip(), roots) if roots is not None else Path(value.strip()).expanduser()
    if found is None:
        raise PathRefused(f"parseq_manifest {_shown(value)} must name an existing file inside the output folder"
                          f" {roots[0]} or the allowed input folders, or hold the manifest itself", where)
    try:
        settings["parseq_manifest"] = read_limited(found, MAX_MANIFEST_CHARS, "parseq manifest").decode("utf-8-sig")
    except FileRefused as exc:
        raise PathRefused(str(exc), where) from None
    except UnicodeDecodeError as exc:
        raise PathRefused(f"parseq_manifest file is not UTF-8 text (byte {exc.start})", where) from None
    return settings


def _shown(value) -> str:
    text = str(value)
    return repr(text if len(text) <= 120 else text[:117] + "...")
