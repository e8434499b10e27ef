"""What a render leaves on disk, named the way Deforum names it, and how each file is written.

``<outdir>/<batch_name>/`` holds ``{ts}_settings.txt``, frames ``{ts}_{i:09}.png``,
``{ts}.mp4``, ``{ts}.srt`` and our ``{ts}_manifest.json`` (resume bookkeeping), so
Deforum's own tools (resume, stitching, interpolation, upscaling) work on it.
Every file appears whole or not at all: temp file in the same folder + ``os.replace``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import WanError

TIMESTRING_FORMAT = "%Y%m%d%H%M%S"


def make_timestring(now: float | None = None) -> str:
    """Deforum's run id: local time as ``YYYYmmddHHMMSS``."""
    return time.strftime(TIMESTRING_FORMAT, time.localtime(now))


def run_dir(outdir: str | os.PathLike, batch_name: str) -> Path:
    """Create ``<outdir>/<batch_name>/`` and prove it writable.

    Called before any model loads, so a bad output folder fails in seconds.
    settings.py already sanitized ``batch_name``; this re-checks because a path that
    escapes ``outdir`` would let a settings file write anywhere.
    """
    name = str(batch_name)
    parts = re.split(r"[\\/]", name)
    if "\0" in name or ".." in parts or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name):
        raise WanError(f"batch_name {name!r} must be a plain folder name inside the output folder")
    base = Path(outdir).expanduser()
    folder = base / name
    try:
        base.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WanError(f"cannot create output folder {folder}: {e.strerror or e}") from e
    real_base, real = base.resolve(), folder.resolve()
    if real != real_base and real_base not in real.parents:  # e.g. a symlink pointing away
        raise WanError(f"output folder {folder} resolves to {real}, outside {real_base}")
    check_writable(real)
    return real


def check_writable(folder: str | os.PathLike) -> None:
    """Create and remove a probe file: permission bits lie (root, ACLs, read-only mounts)."""
    probe = Path(folder) / f".deforum-wan-probe-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise WanError(f"output folder {folder} is not writable: {e.strerror or e}") from e


def frame_name(ts: str, i: int) -> str:
    return f"{ts}_{i:09}.png"


def frame_path(run_dir: str | os.PathLike, ts: str, i: int) -> Path:
    return Path(run_dir) / frame_name(ts, i)


def frame_pattern(run_dir: str | os.PathLike, ts: str) -> Path:
    """The ffmpeg image2 pattern matching ``frame_path`` (a ``%`` in the folder is
    doubled: image2 would read it as a format code; Deforum doesn't escape it)."""
    return Path(str(run_dir).replace("%", "%%")) / f"{ts}_%09d.png"


def settings_path(run_dir: str | os.PathLike, ts: str) -> Path:
    return Path(run_dir) / f"{ts}_settings.txt"


def video_path(run_dir: str | os.PathLike, ts: str) -> Path:
    return Path(run_dir) / f"{ts}.mp4"


def manifest_path(run_dir: str | os.PathLike, ts: str) -> Path:
    return Path(run_dir) / f"{ts}_manifest.json"


def srt_path(run_dir: str | os.PathLike, ts: str) -> Path:
    return Path(run_dir) / f"{ts}.srt"


# ---------------------------------------------------------------- atomic writes

def temp_beside(path: Path, suffix: str = ".tmp") -> Path:
    # Hidden and unique: never matches {ts}_%09d.png, two writers never collide.
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def _fsync_dir(folder: Path) -> None:
    # Makes the renames themselves durable; not possible (nor needed) on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True,
                       fsync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    path = Path(path)
    tmp = temp_beside(path)
    # os.open with 0o666 honours the umask (mkstemp would leave files 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync and fsync_dir:
        _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_settings(path: str | os.PathLike, settings: dict) -> None:
    """Byte-for-byte Deforum's ``save_settings_from_animation_run`` format:
    ``json.dump(s, f, ensure_ascii=False, indent=4)``, UTF-8, no trailing newline,
    keys in the dict's order (Deforum's loader reads it back with ``json.loads``)."""
    atomic_write_text(path, json.dumps(settings, ensure_ascii=False, indent=4))


def settings_hash(settings: dict) -> str:
    """Stable digest of a settings dict (key order ignored), to tell a resume it
    continues the same render."""
    blob = json.dumps(settings, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
