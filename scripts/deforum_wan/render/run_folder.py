"""One render's folder and timestring, and every file of it: the render, a batch's retry,
the job queue and bench all ask this object instead of working the names out again."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config.settings import TIMESTRING_RE, RenderSettings, resolve_batch_name
from ..errors import WanError
from . import output


def check_timestring(value: str, label: str = "timestring") -> str:
    """A timestring becomes part of file names: anything but 14 digits could leave the folder."""
    if not TIMESTRING_RE.match(str(value)):
        raise WanError(f"{label} must be 14 digits (YYYYmmddHHMMSS), got {value!r}")
    return str(value)


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
        folder = output.run_dir(outdir, name) if create else Path(outdir) / name
        return cls(folder, ts)

    @classmethod
    def at(cls, run_dir: str | os.PathLike, timestring: str) -> RunFolder:
        return cls(Path(run_dir), check_timestring(timestring))

    @property
    def settings_file(self) -> Path:
        return output.settings_path(self.dir, self.timestring)

    @property
    def manifest_file(self) -> Path:
        return output.manifest_path(self.dir, self.timestring)

    @property
    def video_file(self) -> Path:
        return output.video_path(self.dir, self.timestring)

    @property
    def srt_file(self) -> Path:
        return output.srt_path(self.dir, self.timestring)

    @property
    def carry_file(self) -> Path:
        """The native frames the next window needs, saved after each window (for a resume)."""
        return self.dir / f"{self.timestring}_carry.npz"

    def frame(self, i: int) -> Path:
        return output.frame_path(self.dir, self.timestring, i)

    def started(self) -> bool:
        """A render wrote here already (its settings file comes first, then the manifest)."""
        return self.settings_file.exists() or self.manifest_file.exists()

    def manifest(self) -> output.Manifest | None:
        try:
            return output.Manifest.load(self.manifest_file) if self.manifest_file.is_file() else None
        except WanError:
            return None

    def frames_written(self) -> int:
        """Frames finished on disk by the manifest's count (0 without one)."""
        manifest = self.manifest()
        return manifest.frames_written if manifest else 0
