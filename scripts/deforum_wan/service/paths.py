"""Files the tab receives: an upload is copied into the output folder, where the one input
rule (``render.inputs``) lets jobs read it, under a name the server hands out."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from ..config.files import read_limited
from ..errors import WanError

UPLOADS = "wan-uploads"  # the tab copies uploaded files here (inside the output folder)
MAX_UPLOAD_BYTES = {"image": 64 << 20, "audio": 256 << 20, "video": 512 << 20}
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v", ".gif")
KEEP_UPLOADS = 200  # the newest kept; older ones are removed as new ones arrive


def keep_upload(path: str | os.PathLike, outdir: str | os.PathLike, kind: str) -> str:
    """A file the browser uploaded copied into ``outdir/wan-uploads`` as ``<id><suffix>``; returns
    ``wan-uploads/<id><suffix>``, the name a job's settings give it (looked up in the output
    folder, never a path the client chose). ``image``: a raster image by content (its suffix
    from the content, so it is never served as SVG or HTML); at most MAX_UPLOAD_BYTES[kind]."""
    limit = MAX_UPLOAD_BYTES[kind]
    data = read_limited(path, limit, f"the uploaded {kind}")
    suffix = "".join(c for c in Path(path).suffix.lower()[:8] if c.isalnum() or c == ".")
    if kind == "image":
        from ..render.images import RASTER_FORMATS, open_raster

        with open_raster(data, "the uploaded image") as img:
            suffix = RASTER_FORMATS[img.format]
    elif kind == "audio" and suffix not in (".wav", ".mp3", ".ogg", ".flac", ".m4a", ".aac", ".opus"):
        raise WanError(f"the uploaded soundtrack {Path(path).name} is not an audio file (wav, mp3, ogg, flac,"
                       " m4a, aac, opus)")
    elif kind == "video" and suffix not in VIDEO_SUFFIXES:  # its content is probed when a job names it
        raise WanError(f"the uploaded video {Path(path).name} is not a video file ({', '.join(VIDEO_SUFFIXES)})")
    folder = Path(outdir).expanduser().resolve() / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(8) + suffix
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    prune_uploads(folder)
    return f"{UPLOADS}/{name}"


def prune_uploads(folder: Path, keep: int = KEEP_UPLOADS) -> None:
    """Only the newest ``keep`` uploads stay (a job's own copy is the path it was checked with)."""
    with contextlib.suppress(OSError):
        entries = sorted((e for e in os.scandir(folder) if e.is_file(follow_symlinks=False)),
                         key=lambda e: e.stat(follow_symlinks=False).st_mtime, reverse=True)
        for entry in entries[keep:]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
