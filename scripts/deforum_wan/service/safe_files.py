"""Files the server hands out from the output folder (gradio's file route, the API's video and
preview) are never served as an active type: an SVG or HTML file placed there would otherwise
run as a page of this origin. The guard (guard.py) applies this to the responses it passes on."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

# Served as themselves; anything else from a file route becomes a download.
PASSIVE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "video/", "audio/",
                 "text/plain", "application/json", "application/octet-stream")
FILE_ROUTE = re.compile(r"(?:/gradio_api)?/file[=/](.*)")  # gradio 3-6: /file=PATH, /file/PATH


def serves_file(path: str, folders: Iterable[str | os.PathLike] | None) -> bool:
    """Whether a request for ``path`` is gradio's file route naming a file inside ``folders``
    (None: any file)."""
    found = FILE_ROUTE.fullmatch(path)
    if found is None:
        return False
    if folders is None:
        return True
    target = Path(found.group(1))  # ASGI paths arrive percent-decoded
    try:
        target = (target if target.is_absolute() else Path.cwd() / target).resolve()
    except (OSError, RuntimeError, ValueError):
        return True  # unreadable: treated as inside
    return any(target.is_relative_to(Path(folder).expanduser().resolve()) for folder in folders)


def passive(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers whose content type is passive: an active one (SVG, HTML, XML, scripts)
    is replaced by a download of bytes."""
    kind = next((v for k, v in headers if k.lower() == b"content-type"), b"").decode("latin-1")
    kind = kind.split(";")[0].strip().lower()
    if kind and any(kind == t or (t.endswith("/") and kind.startswith(t)) for t in PASSIVE_TYPES):
        return headers
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
    return kept + [(b"content-type", b"application/octet-stream"), (b"content-disposition", b"attachment")]
