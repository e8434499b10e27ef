"""``{ts}_manifest.json``: the windows a run has finished, for resume."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Iterable

from ..config.files import read_limited
from ..config.settings import MAX_FILE_BYTES
from ..errors import WanError
from .names import atomic_write_json

MANIFEST_STATUSES = ("running", "done", "interrupted", "failed")


class Manifest:
    """``{ts}_manifest.json``: which windows are finished, for resume.

    Windows are plain dicts with an int ``index`` (render.py decides the other keys:
    start_frame, end_frame, seed, conditioning_frame, ...). Saved atomically on every
    change; unknown top-level keys of a loaded file are kept.
    """

    def __init__(self, path: str | os.PathLike, timestring: str, settings_hash: str = "", *,
                 windows: Iterable[dict] = (), frames_written: int = 0, status: str = "running",
                 extra: dict | None = None):
        if status not in MANIFEST_STATUSES:
            raise ValueError(f"status must be one of {MANIFEST_STATUSES}, got {status!r}")
        self.path = Path(path)
        self.timestring = timestring
        self.settings_hash = settings_hash
        self.windows = sorted((dict(w) for w in windows), key=lambda w: w["index"])
        self.frames_written = int(frames_written)
        self.status = status
        self.extra = dict(extra or {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path)
        try:
            data = json.loads(read_limited(path, MAX_FILE_BYTES, f"manifest {path}", follow=False).decode("utf-8"))
        except ValueError as e:
            raise WanError(f"manifest {path} is not valid JSON: {e}") from e
        try:
            known = ("timestring", "settings_hash", "windows", "frames_written", "status")
            windows = data["windows"]
            if not isinstance(data["timestring"], str) or not isinstance(windows, list) or not all(
                    isinstance(w, dict) and type(w.get("index")) is int for w in windows):
                raise TypeError
            return cls(path, data["timestring"], str(data.get("settings_hash", "")), windows=windows,
                       frames_written=int(data.get("frames_written", 0)),
                       status=data.get("status", "running"),
                       extra={k: v for k, v in data.items() if k not in known})
        except (KeyError, TypeError, ValueError, AttributeError):
            raise WanError(f"manifest {path} is not a deforum-wan manifest") from None

    def to_dict(self) -> dict:
        return {"timestring": self.timestring, "settings_hash": self.settings_hash,
                "windows": self.windows, "frames_written": self.frames_written,
                "status": self.status, **self.extra}

    def save(self) -> None:
        try:
            atomic_write_json(self.path, self.to_dict())
        except OSError as e:  # the folder, not the hidden temp file the error names
            raise WanError(f"cannot save {self.path.name} in {self.path.parent}: {e.strerror or e}") from None

    def record_window(self, window: dict, frames_written: int | None = None) -> None:
        """Mark a window finished (replacing one with the same index) and save."""
        if type(window.get("index")) is not int:
            raise ValueError("a window needs an int 'index'")
        self.windows = [w for w in self.windows if w["index"] != window["index"]] + [dict(window)]
        self.windows.sort(key=lambda w: w["index"])
        if frames_written is not None:
            self.frames_written = int(frames_written)
        self.save()

    def set_status(self, status: str) -> None:
        if status not in MANIFEST_STATUSES:
            raise ValueError(f"status must be one of {MANIFEST_STATUSES}, got {status!r}")
        self.status = status
        try:
            self.save()
        except WanError:
            # A full disk (the mp4 step ran out of space) has no room for the atomic save's new
            # file: the run must still not read as running.
            if not self._rewrite_in_place():
                raise

    def _rewrite_in_place(self) -> bool:
        """The manifest written over its own bytes (compact JSON, no larger than what is there,
        so no new space is needed); False when that cannot be done."""
        data = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except OSError:
            return False
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < len(data):
                return False
            os.write(fd, data + b" " * (info.st_size - len(data)))  # the same size: no block freed or taken
            os.fsync(fd)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
