"""One render's folder and timestring, and every file of it: the render, a batch's retry,
the job queue and bench all ask this object instead of working the names out again."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..config.settings import TIMESTRING_RE, RenderSettings, resolve_batch_name
from ..errors import WanError
from . import names
from .manifest import Manifest


def check_timestring(value: str, label: str = "timestring") -> str:
    """A timestring becomes part of file names: anything but 14 digits could leave the folder."""
    if not TIMESTRING_RE.match(str(value)):
        raise WanError(f"{label} must be 14 digits (YYYYmmddHHMMSS), got {value!r}")
    return str(value)


class RunBusy(WanError):
    """Another process holds the run's lock (it is rendering)."""


@dataclass(frozen=True)
class RunFolder:
    dir: Path
    timestring: str

    @classmethod
    def of(cls, outdir: str | os.PathLike, settings: RenderSettings, timestring: str, *,
           create: bool = False) -> RunFolder:
        """``<outdir>/<batch_name resolved>/``; ``create`` makes it and proves it stays inside
        ``outdir`` and is writable (before any model loads)."""
        ts = check_timestring(timestring)
        name = resolve_batch_name(settings.batch_name, ts, settings)
        folder = names.run_dir(outdir, name) if create else Path(outdir) / name
        return cls(folder, ts)

    @classmethod
    def at(cls, run_dir: str | os.PathLike, timestring: str) -> RunFolder:
        return cls(Path(run_dir), check_timestring(timestring))

    @property
    def settings_file(self) -> Path:
        return names.settings_path(self.dir, self.timestring)

    @property
    def manifest_file(self) -> Path:
        return names.manifest_path(self.dir, self.timestring)

    @property
    def video_file(self) -> Path:
        return names.video_path(self.dir, self.timestring)

    @property
    def srt_file(self) -> Path:
        return names.srt_path(self.dir, self.timestring)

    @property
    def carry_file(self) -> Path:
        """The native frames the next window needs, saved after each window (for a resume)."""
        return self.dir / f"{self.timestring}_carry.npz"

    @property
    def drift_chart_file(self) -> Path:
        """render.drift's chart of the finished run, per window: in a subfolder, so that the run
        folder's ``*.png`` stay its frames (as Deforum's tools and users glob them)."""
        return self.dir / "charts" / f"{self.timestring}_drift.png"

    @property
    def lock_file(self) -> Path:
        """Held while a render writes here (see ``lock``); removed when it ends."""
        return self.dir / f"{self.timestring}_render.lock"

    def lock(self) -> RunLock:
        """Lock the run for this render: a second render or resume of it fails at once."""
        return RunLock.acquire(self.lock_file, self.timestring)

    def claim(self) -> RunLock | None:
        """This timestring for a new run: its lock, when no other render holds it and none has
        started here; else None (the caller tries the next timestring)."""
        if self.started():
            return None
        try:
            lock = self.lock()
        except RunBusy:
            return None
        if self.started():  # another render took it and finished between the check and the lock
            lock.release()
            return None
        return lock

    def frame(self, i: int) -> Path:
        return names.frame_path(self.dir, self.timestring, i)

    def started(self) -> bool:
        """A render wrote here already (its settings file comes first, then the manifest)."""
        return self.settings_file.exists() or self.manifest_file.exists()

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.load(self.manifest_file) if self.manifest_file.is_file() else None
        except WanError:
            return None

    def frames_written(self) -> int:
        """Frames finished on disk by the manifest's count (0 without one)."""
        manifest = self.manifest()
        return manifest.frames_written if manifest else 0


class RunLock:
    """An exclusive OS lock on a run's lock file (flock; msvcrt on Windows). The OS drops it
    when the holder dies, so a killed render never leaves a stale lock; the file holds the
    holder's pid for the message."""

    _WIN_BYTE = 1 << 20  # Windows locks a byte range; one past the pid keeps the pid readable

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, path: Path, timestring: str) -> RunLock:
        while True:
            fd = _open_lock_file(path, timestring)
            if not _lock(fd):
                pid = _read_pid(fd)
                os.close(fd)
                raise RunBusy(f"run {timestring} is already rendering (pid {pid or 'unknown'})")
            # The holder may have removed the file between our open and our lock: hold the one on disk.
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.stat(path)):
                    break
            _unlock(fd)
            os.close(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if os.name == "posix":  # removed while still held: a waiting acquirer sees it is gone
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        _unlock(fd)
        os.close(fd)
        if os.name != "posix":  # Windows removes no open file
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _open_lock_file(path: Path, timestring: str) -> int:
    """The lock file opened for writing: a link planted there is refused, never followed (its
    target would be truncated), and a FIFO neither hangs the open nor is written."""
    from ..config.files import FileRefused, regular_fd

    try:
        return regular_fd(path, f"lock file {path.name}", create=True, follow=False)
    except FileRefused as e:
        raise WanError(f"cannot lock run {timestring} in {path.parent}: {e}") from None


def _lock(fd: int) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, RunLock._WIN_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if os.name == "nt":
            import msvcrt

            os.lseek(fd, RunLock._WIN_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return int(os.read(fd, 32).split()[0])
    except (OSError, ValueError, IndexError):
        return None
