"""The video of a run: ffmpeg stitching frames (Deforum's command), the soundtrack mux,
a probe of the result, and the prompt subtitles beside it."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterable

from ..config.ffmpeg import ffmpeg_exe
from ..config.files import regular_file
from ..errors import WanError
from .names import atomic_write_text, frame_name, frame_path, frame_pattern, temp_beside, video_path

DEFAULT_CRF = 17  # Deforum's deforum_ffmpeg_crf default
DEFAULT_PRESET = "slow"  # Deforum's deforum_ffmpeg_preset default
PROBE_SECONDS = 60  # a soundtrack probe decodes a tenth of a second; this is only a backstop


class VideoError(WanError):
    """ffmpeg failed. ``command`` redoes the step by hand; ``stderr`` is ffmpeg's log."""

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = ""):
        super().__init__(message)
        self.command = command
        self.stderr = stderr


def _shell_join(cmd: list[str]) -> str:
    return subprocess.list2cmdline(cmd) if os.name == "nt" else shlex.join(cmd)


def _stderr_tail(stderr: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:]) or "no output"


def _run_ffmpeg(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          encoding="utf-8", errors="replace")


def check_soundtrack(soundtrack: str | os.PathLike) -> Path:
    """A soundtrack must be a local file holding audio ffmpeg decodes. Call it before a render
    to fail early, not after every frame is rendered."""
    s = str(soundtrack).strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':  # Deforum strips the quotes Windows' "copy as path" adds
        s = s[1:-1]
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s):
        raise WanError(f"soundtrack {s} is a URL: deforum-wan never downloads during a render "
                       "(it must work offline); download it and give its local path")
    path = Path(s).expanduser()
    regular_file(path, f"soundtrack file {path}")  # ffmpeg would wait forever on a FIFO
    _probe_audio(path)
    return path


def _probe_audio(path: Path) -> None:
    """ffmpeg decodes the first tenth of a second of its audio, or one WanError line."""
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-t", "0.1", "-f", "null", "-"]
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        raise WanError(f"soundtrack file {path}: ffmpeg did not read its audio within {PROBE_SECONDS} s") from None
    except OSError as e:
        raise WanError(f"could not run ffmpeg to check soundtrack file {path}: {e.strerror or e}") from None
    if done.returncode != 0:
        raise WanError(f"soundtrack file {path} is not audio ffmpeg can read ({_stderr_tail(done.stderr, 1)})")


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
    tmp = temp_beside(out, ".mp4")  # ffmpeg picks the container from the extension
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
    tmp = temp_beside(video, ".mp4")
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
