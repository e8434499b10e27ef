"""A source video (Deforum's Video Input): which of its frames are used, probed and decoded
through ffmpeg (config.ffmpeg) within bounds, so a huge, corrupt or empty file is one line before any
model loads.

Deforum's extraction (video_audio_utilities.vid2frames): source frame c is kept iff
c >= extract_from_frame, c <= extract_to_frame (or that is -1) and c % extract_nth_frame == 0
(the absolute index, not counted from extract_from_frame); output frame i shows the i-th kept
frame, and max_frames becomes the number kept.
"""
from __future__ import annotations

import logging
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SettingsError
from .ffmpeg import FfmpegMissing, ffmpeg_exe, has_imageio_ffmpeg

MAX_SIDE = 8192  # px, each side
MAX_PIXELS = 7680 * 4320  # 8K UHD
MAX_SECONDS = 3600.0
MAX_FRAMES = 100_000  # max_frames' own limit
PROBE_TIMEOUT_S = 60

_STREAM_RE = re.compile(r"Stream #\S+.*?: Video: (?P<rest>.*)")
_SIZE_RE = re.compile(r", (?P<w>\d+)x(?P<h>\d+)[\s,\[]")
_INVALID_SIZE_RE = re.compile(r"Picture size (?P<w>\d+)x(?P<h>\d+) is invalid")
_FPS_RE = re.compile(r", (?P<fps>[\d.]+)(?P<k>k?) (?:fps|tbr)")
_DURATION_RE = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d+):(?P<s>[\d.]+)")


class VideoRefused(SettingsError):
    """A source video that cannot be used (too large, unreadable, no frames)."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # counted, not estimated from the duration


@dataclass(frozen=True)
class Extraction:
    """Deforum's extract_* keys."""
    start: int = 0  # extract_from_frame
    stop: int = -1  # extract_to_frame, inclusive; -1: to the end
    nth: int = 1  # extract_nth_frame

    def kept(self, total: int) -> list[int]:
        """The source frames used, in order: output frame i shows ``kept(total)[i]``."""
        return [c for c in range(max(self.start, 0), total)
                if (self.stop == -1 or c <= self.stop) and c % self.nth == 0]


def extraction_of(raw: dict, label: str) -> Extraction:
    """The extract_* keys of a settings dict (Deforum's defaults 0, -1, 1), checked."""
    def number(key: str, default: int) -> int:
        value = raw.get(key, default)
        try:
            out = int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{key} must be a whole number, not {value!r}", label) from None
        if out != value and str(out) != str(value).strip():
            raise SettingsError(f"{key} must be a whole number, not {value!r}", label)
        return out

    start, stop, nth = number("extract_from_frame", 0), number("extract_to_frame", -1), number("extract_nth_frame", 1)
    if start < 0 or nth < 1 or stop < -1:
        raise SettingsError(f"extract_from_frame {start}, extract_to_frame {stop}, extract_nth_frame {nth}:"
                            " from >= 0, to >= 0 or -1 (the end), nth >= 1", label)
    if stop != -1 and stop <= start:  # Deforum's vid2frames refuses this too
        raise SettingsError(f"extract_to_frame {stop} must be above extract_from_frame {start} (or -1)", label)
    return Extraction(start, stop, nth)


def kept_frames(path: str | Path, extraction: Extraction, label: str) -> tuple[VideoInfo, list[int]]:
    """The video's probe and the frames it gives; VideoRefused when it gives none."""
    info = probe(path, label)
    kept = extraction.kept(info.frames)
    if not kept:
        raise VideoRefused(f"video_init_path {Path(path).name}: none of its {info.frames} frames is kept by"
                           f" extract_from_frame {extraction.start}, extract_to_frame {extraction.stop},"
                           f" extract_nth_frame {extraction.nth}", label)
    return info, kept


def probe(path: str | Path, label: str = "<settings>") -> VideoInfo:
    """Size, fps and frame count of a video, within the bounds above, or one VideoRefused line."""
    name = Path(path).name
    if not Path(path).is_file():
        raise VideoRefused(f"video {name}: no such file", label)
    # Without an output ffmpeg exits 1 after printing the stream header: expected.
    header = _ffmpeg(["-hide_banner", "-i", str(path)], label, name)
    size = _INVALID_SIZE_RE.search(header)
    stream = _STREAM_RE.search(header)
    if size is None and stream is not None:
        size = _SIZE_RE.search(stream.group("rest") + ",")
    if size is None:
        last = header.strip().splitlines()[-1:] or ["no output"]
        raise VideoRefused(f"video {name} has no readable video stream ({last[0][:160]})", label)
    width, height = int(size.group("w")), int(size.group("h"))
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise VideoRefused(f"video {name} is {width}x{height}; at most {MAX_SIDE} px a side and"
                           f" {MAX_PIXELS // 10**6} megapixels", label)
    duration = _DURATION_RE.search(header)
    if duration is not None:
        seconds = int(duration["h"]) * 3600 + int(duration["m"]) * 60 + float(duration["s"])
        if seconds > MAX_SECONDS:
            raise VideoRefused(f"video {name} lasts {seconds:.0f} s; at most {MAX_SECONDS:.0f} s", label)
    fps = _FPS_RE.search(stream.group("rest")) if stream is not None else None
    rate = float(fps["fps"]) * (1000 if fps["k"] else 1) if fps else 0.0
    frames = _count(path, label, name)
    if frames < 1:
        raise VideoRefused(f"video {name} has no frames", label)
    if frames > MAX_FRAMES:
        raise VideoRefused(f"video {name} has {frames} frames; at most {MAX_FRAMES}", label)
    return VideoInfo(width, height, rate, frames)


def _ffmpeg(args: list[str], label: str, name: str) -> str:
    """ffmpeg's log of ``ffmpeg args``."""
    try:
        cmd = [ffmpeg_exe(), *args]
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=PROBE_TIMEOUT_S).stderr.decode("utf-8", "replace")
    except FfmpegMissing as exc:
        raise VideoRefused(f"video {name}: {exc}", label) from None
    except subprocess.TimeoutExpired:
        raise VideoRefused(f"video {name}: ffmpeg took over {PROBE_TIMEOUT_S} s to read it", label) from None
    except OSError as exc:
        raise VideoRefused(f"video {name}: could not run ffmpeg ({exc.strerror or exc})", label) from None


def _count(path, label: str, name: str) -> int:
    """Frames counted by ffmpeg (packets of the first video stream, no decoding)."""
    cmd = ["-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-"]
    text = _ffmpeg(cmd, label, name)
    counts = re.findall(r"frame=\s*(\d+)", text)
    return int(counts[-1]) if counts else 0


class SourceReader:
    """Decodes a source video once, forward, for the windows of a render: each asks for its
    source frames (indices into the video, never below an earlier window's first one), each
    stretched to width x height as Deforum resizes its init frames, float32 (H, W, 3) in
    [0, 1]. Only frames a later window can still ask for are held."""

    def __init__(self, path: str | Path, width: int, height: int):
        self.path, self.width, self.height = Path(path), width, height
        self._frames = None  # a generator of raw frames, started on the first request
        self._held: dict[int, np.ndarray] = {}
        self.decoded = 0  # frames decoded so far (the next one's index)

    def frames(self, wanted: list[int]) -> list[np.ndarray]:
        """Frames ``wanted``, in that order; a frame the file does not give is an error naming it."""
        first = min(wanted)
        if first < self.decoded and first not in self._held:
            raise ValueError(f"source frame {first} asked for after frame {self.decoded - 1} was dropped")
        for index in [i for i in self._held if i < first]:
            del self._held[index]
        self._start()
        while self.decoded <= max(wanted):
            data = next(self._frames, None)
            if data is None:
                self.close()
                raise VideoRefused(f"video {self.path.name} ends before frame {self.decoded}", str(self.path))
            if self.decoded >= first:
                pixels = np.frombuffer(data, np.uint8).reshape(self.height, self.width, 3)
                self._held[self.decoded] = pixels.astype(np.float32) / 255.0
            self.decoded += 1
        return [self._held[i] for i in wanted]

    def _start(self) -> None:
        if self._frames is not None:
            return
        # passthrough: one output frame per decoded frame (no fps conversion), as frames were counted
        output = ["-vf", f"scale={self.width}:{self.height}:flags=bicubic", "-fps_mode", "passthrough"]
        if not has_imageio_ffmpeg():  # a WebUI's own Python: the binary, through a pipe
            self._frames = rawvideo_frames(self.path, self.width, self.height, output)
            return
        import imageio_ffmpeg

        self._frames = imageio_ffmpeg.read_frames(str(self.path), output_params=output)
        said = logging.getLogger("imageio_ffmpeg")  # "different from the source frame size": the scale asked for
        level = said.level
        said.setLevel(logging.ERROR)
        try:
            next(self._frames)  # the header
        finally:
            said.setLevel(level)

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames, self._held = None, {}


def rawvideo_frames(path: str | Path, width: int, height: int, output: list[str]):
    """RGB24 frames of ``width`` x ``height`` as bytes, from ffmpeg's output to a pipe, with the
    command imageio-ffmpeg's read_frames runs (its input and output options, ``output`` last)."""
    size = width * height * 3
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-pix_fmt", "rgb24", "-vcodec", "rawvideo",
           "-f", "image2pipe", *output, "-"]
    process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        while True:
            data = process.stdout.read(size)
            if len(data) < size:  # the end (a cut last frame is no frame)
                return
            yield data
    finally:  # closed early too: ffmpeg is stopped, not left writing to a pipe nobody reads
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def source_frame_of(kept: list[int], output_time: float) -> int:
    """The source frame shown at output time ``output_time`` (fractional output frames):
    the nearest kept frame, held at either end."""
    i = min(max(int(math.floor(output_time + 0.5)), 0), len(kept) - 1)
    return kept[i]


def to_gray(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) frames as their grey (Rec. 601 luma, as OpenCV's RGB2GRAY) in all three
    channels: VACE's colourise control, the preprocessing of its "gray" task."""
    luma = np.asarray(frames, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat(luma[..., None], 3, axis=-1)
