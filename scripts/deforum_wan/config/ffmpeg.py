"""Which ffmpeg binary reads and writes videos.

The render worker and the CLI have imageio-ffmpeg (the binary Deforum uses; it honours
IMAGEIO_FFMPEG_EXE). A WebUI's own Python, where the tab checks jobs and previews source
videos, usually has not: the host then names where the worker's binary is (``set_fallback``:
imageio-ffmpeg's binary inside the worker's private packages, found by path, so nothing of
that folder is imported into the WebUI), else ffmpeg on PATH is used.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..errors import WanError

_fallback: Callable[[], str | None] | None = None
_found: str | None = None  # the fallback's answer, once it gave one


class FfmpegMissing(WanError):
    """No ffmpeg binary here."""


def set_fallback(finder: Callable[[], str | None] | None) -> None:
    """Where ffmpeg is when imageio-ffmpeg is not importable: ``finder()`` gives a binary's path
    or None (asked again next time: the worker's packages may be installed meanwhile)."""
    global _fallback, _found
    _fallback, _found = finder, None


def has_imageio_ffmpeg() -> bool:
    import importlib.util

    return importlib.util.find_spec("imageio_ffmpeg") is not None


def ffmpeg_exe() -> str:
    """imageio-ffmpeg's binary, else IMAGEIO_FFMPEG_EXE, else the host's fallback, else ffmpeg
    on PATH; FfmpegMissing (one line) when there is none."""
    global _found
    if has_imageio_ffmpeg():
        import imageio_ffmpeg

        try:
            return imageio_ffmpeg.get_ffmpeg_exe()
        except RuntimeError:  # a build without its binary: look further
            pass
    if os.environ.get("IMAGEIO_FFMPEG_EXE"):
        return os.environ["IMAGEIO_FFMPEG_EXE"]
    if _found is None and _fallback is not None:
        _found = _fallback()
    exe = _found or shutil.which("ffmpeg")
    if exe is None:
        raise FfmpegMissing("no ffmpeg to read videos with: imageio-ffmpeg is not installed in this Python, the"
                            " Wan worker's packages have no ffmpeg, and none is on PATH (install the extension's"
                            " packages again, or set IMAGEIO_FFMPEG_EXE to an ffmpeg binary)")
    return exe


def binary_in(packages: str | os.PathLike) -> str | None:
    """imageio-ffmpeg's binary inside a folder of installed packages (``pip --target``), by
    path: ``<packages>/imageio_ffmpeg/binaries/ffmpeg-<platform>-v<version>[.exe]``."""
    folder = Path(packages) / "imageio_ffmpeg" / "binaries"
    found = sorted(p for p in (folder.glob("ffmpeg-*") if folder.is_dir() else [])
                   if p.is_file() and (sys.platform == "win32" or os.access(p, os.X_OK)))
    return str(found[-1]) if found else None


def binary_of_python(python: str) -> str | None:
    """The ffmpeg another Python's imageio-ffmpeg uses (the render worker's, when the UI runs
    on another interpreter), asked in a subprocess; None where it has none."""
    try:
        done = subprocess.run([python, "-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[-1] if done.returncode == 0 and lines and Path(lines[-1]).is_file() else None
