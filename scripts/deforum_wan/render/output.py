"""What a render leaves on disk, named the way Deforum names it.

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
import queue
import re
import shlex
import subprocess
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..config.files import read_limited, regular_file
from ..config.settings import MAX_FILE_BYTES
from ..errors import WanError

TIMESTRING_FORMAT = "%Y%m%d%H%M%S"
DEFAULT_CRF = 17  # Deforum's deforum_ffmpeg_crf default
DEFAULT_PRESET = "slow"  # Deforum's deforum_ffmpeg_preset default
PNG_COMPRESSION = 1  # cv2 level 1: fastest; level 3 is 1.5x slower for <1% smaller files


# ---------------------------------------------------------------- names and folders

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

def _temp_beside(path: Path, suffix: str = ".tmp") -> Path:
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
    tmp = _temp_beside(path)
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


# ---------------------------------------------------------------- frames

def encode_png(frame: np.ndarray, level: int = PNG_COMPRESSION) -> bytes:
    """RGB uint8 (H,W,3) -> PNG bytes. cv2 measured ~1.6x faster than Pillow at equal
    level; Pillow is the fallback when the render extra (opencv) is absent."""
    try:
        import cv2  # render extra; imported here so path helpers stay cheap
    except ImportError:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, "PNG", compress_level=level)
        return buf.getvalue()
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {frame.shape} frame as PNG")
    return data.tobytes()


def frame_problem(path: Path, size: tuple[int, int]) -> str | None:
    """Why a frame file is not a whole PNG of ``size`` (W, H), or None when it is."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # the header alone says nothing of a truncated or garbled body
            if img.size != tuple(size):
                return f"{img.size[0]}x{img.size[1]}, not {size[0]}x{size[1]}"
    except FileNotFoundError:
        return "missing"
    except Exception as e:  # whatever a garbled file makes Pillow raise (OSError, SyntaxError, bombs...)
        return f"unreadable ({e})"
    return None


def first_bad_frame(run_dir: str | os.PathLike, ts: str, n_frames: int, size: tuple[int, int]
                    ) -> tuple[int, str] | None:
    """The first of frames 0..n_frames-1 that is missing, broken or of another size, and why.
    Decoded on a few threads (Pillow's decoders release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        problems = pool.map(lambda i: frame_problem(frame_path(run_dir, ts, i), size), range(n_frames))
        return next(((i, p) for i, p in enumerate(problems) if p is not None), None)


_STOP = object()


class FrameWriter:
    """Writes ``{ts}_{i:09}.png`` frames on a background thread.

    ``put`` copies the frame and blocks while ``max_queued`` frames wait, so memory
    stays flat (at most max_queued + 1 frames held) however fast frames arrive. A write
    error stops the writer; the next ``put``/``after``/``close`` raises it in the
    caller's thread (OSErrors as a one-line WanError). ``sync=True`` writes inline.

    Each file is fsynced but its folder is not: save the manifest (same folder,
    fsynced) through ``after()``, so the frames a manifest counts are on disk.
    """

    def __init__(self, run_dir: str | os.PathLike, timestring: str, *, max_queued: int = 8,
                 sync: bool = False, compress_level: int = PNG_COMPRESSION, fsync: bool = True):
        if max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        self.run_dir = Path(run_dir)
        self.timestring = timestring
        self.max_queued = max_queued
        self.sync = sync
        self.compress_level = compress_level
        self.fsync = fsync
        self.written = 0  # frames on disk (read it in an after() callback or after close)
        self.high_water = 0  # most frames ever waiting in the queue
        self._error: BaseException | None = None  # sticky: every later call raises it
        self._closed = False
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = None
        if not sync:
            self._thread = threading.Thread(target=self._run, name="deforum-wan-frames", daemon=True)
            self._thread.start()

    def put(self, index: int, frame: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("FrameWriter is closed")
        self._raise_error()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"frame index must be an int >= 0, got {index!r}")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (H,W,3) RGB, got {frame.dtype} {frame.shape}")
        # Copy: the caller may reuse its buffer, and a view would pin a whole window.
        frame = np.array(frame, copy=True, order="C")
        if self.sync:
            self._call(self._write, int(index), frame)
            return
        self._queue.put((int(index), frame))  # blocks while full
        self.high_water = max(self.high_water, self._queue.qsize())

    def after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every frame put so far is on disk: on the writer thread, so
        the caller goes on (the next window generates while this one's frames and
        checkpoint are written); inline in sync mode. Its errors surface like write errors,
        and a write error stays the answer after close too."""
        self._raise_error()
        if self._closed:
            raise RuntimeError("FrameWriter is closed")
        if self.sync:
            self._call(fn)
            return
        self._queue.put((None, fn))

    def close(self) -> None:
        """Write what is queued, stop the thread, raise any write error."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                self._queue.put(_STOP)
                self._thread.join()
        self._raise_error()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:  # don't hide the error that is already unwinding
                raise

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after an error, drain so put() never deadlocks
                    index, payload = item
                    if index is None:
                        payload()
                    else:
                        self._write(index, payload)
            except BaseException as e:
                self._error = e
            finally:
                self._queue.task_done()

    def _write(self, index: int, frame: np.ndarray) -> None:
        data = encode_png(frame, self.compress_level)
        atomic_write_bytes(frame_path(self.run_dir, self.timestring, index), data,
                           fsync=self.fsync, fsync_dir=False)
        self.written += 1

    def _call(self, fn, *args) -> None:
        """Sync mode: run inline, keeping the error sticky as the thread does."""
        try:
            fn(*args)
        except BaseException as e:
            self._error = e
            self._raise_error()

    def _raise_error(self) -> None:
        e = self._error
        if e is None:
            return
        if isinstance(e, OSError):
            raise WanError(f"could not write to {self.run_dir}: {e.strerror or e} "
                           f"({self.written} frames written are kept)") from e
        raise e


# ---------------------------------------------------------------- manifest

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
            data = json.loads(read_limited(path, MAX_FILE_BYTES, f"manifest {path}").decode("utf-8"))
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
        self.save()

# ---------------------------------------------------------------- video

class VideoError(WanError):
    """ffmpeg failed. ``command`` redoes the step by hand; ``stderr`` is ffmpeg's log."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = ""):
        super().__init__(message)
        self.command = command
        self.stderr = stderr


def ffmpeg_exe() -> str:
    """The imageio-ffmpeg binary (the one Deforum uses), or IMAGEIO_FFMPEG_EXE."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise WanError(f"ffmpeg not found ({e}); install imageio-ffmpeg") from e


def _shell_join(cmd: list[str]) -> str:
    return subprocess.list2cmdline(cmd) if os.name == "nt" else shlex.join(cmd)


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def _run_ffmpeg(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", errors="replace")


def check_soundtrack(soundtrack: str | os.PathLike) -> Path:
    """A soundtrack must be a local file. Call it before a render to fail early."""
    s = str(soundtrack).strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':  # Deforum strips the quotes Windows' "copy as path" adds
        s = s[1:-1]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s):
        raise WanError(f"soundtrack {s} is a URL: deforum-wan never downloads during a render "
                       "(it must work offline); download it and give its local path")
    path = Path(s).expanduser()
    return regular_file(path, f"soundtrack file {path}")  # ffmpeg would wait forever on a FIFO


def _even_size_filter(first_frame: Path) -> str:
    """yuv420p needs even W/H (Deforum's encode fails on odd sizes): pad the odd edge by
    one pixel, repeating the edge pixels, so nothing is scaled, cropped or blackened."""
    try:
        from PIL import Image
        with Image.open(first_frame) as im:
            w, h = im.size
    except (OSError, ValueError):
        return ""  # a missing/broken frame is reported by the frame check or ffmpeg
    if w % 2 == 0 and h % 2 == 0:
        return ""
    # Planar RGB throughout: fillborders has no packed-RGB support, and if ffmpeg picks
    # yuv420p for it the black pad bleeds into the last real column's subsampled chroma.
    return (f",format=gbrp,pad={w + w % 2}:{h + h % 2}:0:0"
            f",fillborders=right={w % 2}:bottom={h % 2}:mode=smear")


def stitch_command(run_dir: str | os.PathLike, ts: str, fps: float, n_frames: int, out: str | os.PathLike,
                   *, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET) -> list[str]:
    """Deforum's ``ffmpeg_stitch_video`` command. Its trailing ``-pattern_type sequence
    -vcodec libx264`` are dropped: an input option after the input, and a repeat of -c:v."""
    return pattern_command(frame_pattern(run_dir, ts), frame_path(run_dir, ts, 0), 0, fps, n_frames, out,
                           crf=crf, preset=preset)


def pattern_command(pattern: str | os.PathLike, first: Path, start: int, fps: float, n_frames: int,
                    out: str | os.PathLike, *, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET) -> list[str]:
    """H.264 from numbered PNGs (an ffmpeg image2 ``pattern``; ``first`` is frame ``start``)."""
    vf = f"fps={float(fps)}" + _even_size_filter(first)
    return [ffmpeg_exe(), "-y", "-r", str(float(fps)), "-start_number", str(int(start)),
            "-i", str(pattern), "-frames:v", str(int(n_frames)),
            "-c:v", "libx264", "-vf", vf, "-pix_fmt", "yuv420p", "-crf", str(crf),
            "-preset", preset, str(out)]


def run_ffmpeg(cmd: list[str], what: str) -> None:
    """Run an ffmpeg command; a failure is one VideoError line with ffmpeg's last words."""
    try:
        done = _run_ffmpeg(cmd)
    except OSError as e:
        raise VideoError(f"could not run ffmpeg for {what}: {e.strerror or e}", cmd) from e
    if done.returncode != 0:
        raise VideoError(f"ffmpeg failed to make {what} ({_stderr_tail(done.stderr)})", cmd, done.stderr)


def mux_command(video: str | os.PathLike, soundtrack: str | os.PathLike, out: str | os.PathLike) -> list[str]:
    """Deforum's soundtrack pass: copy the video, audio to AAC, stop at the shorter one."""
    return [ffmpeg_exe(), "-y", "-i", str(video), "-i", str(soundtrack), "-map", "0:v", "-map", "1:a",
            "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)]


def make_video(run_dir: str | os.PathLike, ts: str, fps: float, n_frames: int,
               soundtrack: str | os.PathLike | None = None, crf: int = DEFAULT_CRF,
               preset: str = DEFAULT_PRESET) -> Path:
    """Stitch frames 0..n_frames-1 into ``{ts}.mp4`` (then mux the soundtrack).

    Raises VideoError (a WanError) naming the command to redo it by hand; frames are
    never deleted. A soundtrack failure leaves the silent video in place.
    """
    run_dir = Path(run_dir)
    out = video_path(run_dir, ts)
    if n_frames < 1:
        raise VideoError(f"no frames to stitch into {out.name}")
    hand = stitch_command(run_dir, ts, fps, n_frames, out, crf=crf, preset=preset)
    kept = f"the frames are kept in {run_dir}; to stitch them by hand run: {_shell_join(hand)}"
    # image2 stops silently at the first gap, so a missing frame would make a short video.
    missing = next((i for i in range(n_frames) if not frame_path(run_dir, ts, i).is_file()), None)
    if missing is not None:
        raise VideoError(f"frame {frame_name(ts, missing)} is missing, cannot make {out.name}; {kept}", hand)
    tmp = _temp_beside(out, ".mp4")  # ffmpeg picks the container from the extension
    cmd = hand[:-1] + [str(tmp)]
    try:
        done = _run_ffmpeg(cmd)
        if done.returncode != 0 or not tmp.is_file():
            raise VideoError(f"ffmpeg failed to make {out.name} ({_stderr_tail(done.stderr)}); {kept}",
                             hand, done.stderr)
        os.replace(tmp, out)
    except OSError as e:
        raise VideoError(f"could not run ffmpeg for {out.name}: {e.strerror or e}; {kept}", hand) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    if soundtrack:
        _add_soundtrack(out, soundtrack)
    return out


def _add_soundtrack(video: Path, soundtrack: str | os.PathLike) -> None:
    hand_out = video.with_name(f"{video.stem}_with_audio.mp4")
    try:
        audio = check_soundtrack(soundtrack)
    except WanError as e:
        raise VideoError(f"{e}; the video without sound is {video}") from None
    hand = mux_command(video, audio, hand_out)
    tmp = _temp_beside(video, ".mp4")
    try:
        done = _run_ffmpeg(hand[:-1] + [str(tmp)])
        if done.returncode != 0 or not tmp.is_file():
            raise VideoError(f"ffmpeg could not add soundtrack {audio} ({_stderr_tail(done.stderr)}); "
                             f"the video without sound is {video}; to add it by hand run: {_shell_join(hand)}",
                             hand, done.stderr)
        os.replace(tmp, video)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


_VIDEO_RE = re.compile(r"Stream #\S+.*?: Video: (?P<codec>\w+)(?P<rest>.*)")
_SIZE_RE = re.compile(r", (?P<w>\d+)x(?P<h>\d+)[\s,\[]")
_FPS_RE = re.compile(r", (?P<fps>[\d.]+)(?P<k>k?) fps")
_AUDIO_RE = re.compile(r"Stream #\S+.*?: Audio: (?P<codec>\w+)")


def probe_video(path: str | os.PathLike) -> dict:
    """``{frames, fps, width, height, codec, audio}`` of a video via the imageio-ffmpeg
    binary (``audio`` is the first audio codec or None). Frames are counted, not
    estimated from the duration."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise WanError(f"video not found: {path}")
    # Without an output ffmpeg exits 1 after printing the stream header; that's expected.
    header = _run_ffmpeg([ffmpeg_exe(), "-hide_banner", "-i", str(path)]).stderr
    video = _VIDEO_RE.search(header)
    size = _SIZE_RE.search(video.group("rest") + ",") if video else None
    if not video or not size:
        raise WanError(f"{path} has no readable video stream ({_stderr_tail(header, 1)})")
    fps = _FPS_RE.search(video.group("rest"))
    audio = _AUDIO_RE.search(header)
    frames, _secs = imageio_ffmpeg.count_frames_and_secs(str(path))
    return {
        "frames": int(frames),
        "fps": float(fps.group("fps")) * (1000 if fps.group("k") else 1) if fps else None,
        "width": int(size.group("w")),
        "height": int(size.group("h")),
        "codec": video.group("codec"),
        "audio": audio.group("codec") if audio else None,
    }


# ---------------------------------------------------------------- subtitles

def srt_time(frame: int, fps: float) -> str:
    """Time of ``frame`` at ``fps`` as SRT ``HH:MM:SS,mmm``, exact and floored to the
    millisecond (Deforum truncates too; floor never shows a cue before its frame)."""
    rate = Fraction(str(fps))
    ms = int(frame) * 1000 * rate.denominator // rate.numerator
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02}:{minutes:02}:{seconds:02},{ms:03}"


def write_srt(path: str | os.PathLike, fps: float, segments: Iterable[tuple[int, int, str]]) -> None:
    """One cue per prompt segment ``(start_frame, end_frame_exclusive, text)``.

    Deforum writes one cue per frame with its parameters; a Wan window has no per-frame
    parameters, so we write the prompt each segment shows. Newlines in the text are
    folded to spaces: a blank line would end the cue.
    """
    if not float(fps) > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    cues = []
    for n, (start, end, text) in enumerate(segments, start=1):
        if not 0 <= start < end:
            raise ValueError(f"bad subtitle segment {start}..{end}")
        line = " ".join(str(text).split())
        cues.append(f"{n}\n{srt_time(start, fps)} --> {srt_time(end, fps)}\n{line}\n")
    atomic_write_text(path, "\n".join(cues))


__all__ = [
    "DEFAULT_CRF", "DEFAULT_PRESET", "FrameWriter", "MANIFEST_STATUSES", "Manifest", "VideoError",
    "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_soundtrack",
    "check_writable", "encode_png", "ffmpeg_exe", "first_bad_frame", "frame_name", "frame_path",
    "frame_pattern", "frame_problem", "make_timestring", "make_video", "manifest_path", "mux_command",
    "probe_video", "run_dir", "settings_hash", "settings_path", "srt_path", "srt_time", "stitch_command",
    "video_path", "write_settings", "write_srt",
]
