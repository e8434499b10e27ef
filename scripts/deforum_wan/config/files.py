"""Files a user names (settings files, init images, run manifests, the job database):
regular files only, and never more bytes read than a limit, whatever the file says.

A FIFO would block forever and ``/dev/zero`` never ends, so both are refused by ``stat``
before anything is read; the file is opened with ``O_NONBLOCK`` (opening a FIFO would
itself block) and checked again on the open descriptor (the name may have been swapped
in between); and at most ``limit + 1`` bytes are read, so ``st_size`` is never trusted.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import WanError

MB = 2**20


class FileRefused(WanError):
    """A user-named file that is missing, unreadable, not a regular file or too large."""


def regular_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` when it names a regular file (for files another program opens: ffmpeg's
    soundtrack, SQLite's database, a LoRA); else ``FileRefused`` naming ``what``."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:
        raise FileRefused(f"cannot read {what}: {_reason(exc)}") from None
    _check_regular(info, what)
    return Path(path)


def read_limited(path: str | os.PathLike, limit: int, what: str, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path``; ``FileRefused`` when it has more than ``limit``.
    ``follow=False``: a symbolic link is refused too (a file the program wrote itself)."""
    with open_regular(path, what, follow=follow) as f:
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise FileRefused(f"cannot read {what}: {_reason(exc)}") from None
    if len(data) > limit:
        raise FileRefused(f"{what} is larger than {_size(limit)}")
    return data


def open_regular(path: str | os.PathLike, what: str, *, follow: bool = True):
    """``path`` opened for reading (binary) when it is a regular file (see ``regular_fd``)."""
    return os.fdopen(regular_fd(path, what, follow=follow), "rb")


def regular_fd(path: str | os.PathLike, what: str, *, create: bool = False, follow: bool = True) -> int:
    """A descriptor of ``path`` when it is a regular file: never blocks on a FIFO (opened
    non-blocking, checked on the descriptor, then made blocking), and with ``follow=False``
    a link is refused (O_NOFOLLOW), so a link planted in a folder this program writes cannot
    make it read or truncate the file it points to. ``create``: read-write, made if missing."""
    if not follow and os.path.islink(path):
        raise FileRefused(f"{what} is a symbolic link")
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_BINARY", 0) | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags, 0o666)
    except (OSError, ValueError) as exc:
        raise FileRefused(f"cannot {'write' if create else 'read'} {what}: {_reason(exc)}") from None
    try:
        _check_regular(os.fstat(fd), what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(info: os.stat_result, what: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise FileRefused(f"{what} is not a regular file ({_kind(info.st_mode)})")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "the name holds a NUL or an undecodable character"  # os functions raise ValueError for these


def _size(limit: int) -> str:
    return f"{limit // MB} MB" if limit >= MB else f"{limit} bytes"
