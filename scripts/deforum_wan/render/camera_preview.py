"""What Deforum's camera will do, before any GPU time: the path applied to an image (or a grid),
written as numbered PNGs and an mp4, on the CPU in seconds."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..config.settings import RenderSettings
from ..errors import WanError
from ..pixels import to_uint8
from .hybrid_motion import video_motion
from .names import check_writable
from .video import pattern_command, run_ffmpeg
from .warp import CameraPath

GRID_STEP = 32  # px between the lines of the test pattern
PREVIEW_FILE = re.compile(r"(\d{9}\.png|camera\.mp4)")  # what write_preview writes


def test_pattern(width: int, height: int) -> np.ndarray:
    """A grid with a coloured centre cross and corner marks: motion reads at a glance."""
    img = np.full((height, width, 3), 40, np.uint8)
    img[::GRID_STEP, :] = img[:, ::GRID_STEP] = 200
    cy, cx = height // 2, width // 2
    img[max(cy - 2, 0):cy + 2, :] = (220, 60, 60)
    img[:, max(cx - 2, 0):cx + 2] = (60, 120, 220)
    mark = max(4, min(width, height) // 12)
    img[:mark, :mark] = (240, 200, 40)
    img[-mark:, -mark:] = (60, 200, 90)
    return img


def load_anchor(path: str | None, width: int, height: int, base: Path | None = None) -> np.ndarray:
    if not path:
        return test_pattern(width, height)
    from .images import load_image

    return to_uint8(load_image(path, width, height, base, fit="stretch", label="--image"))


def check_preview(settings: RenderSettings, frames: tuple[int, int] | None) -> tuple[int, int]:
    """The frames a preview covers; one line when there is no camera or the range is outside."""
    camera = settings.camera
    if camera is None or camera.mode == "None":
        raise WanError(f"{settings.source}: animation_mode {settings.raw.get('animation_mode', 'None')!r} has no"
                       " camera to preview (2D or 3D)")
    first, last = frames or (0, settings.max_frames - 1)
    if not 0 <= first <= last < settings.max_frames:
        raise WanError(f"--frames {first}:{last} is outside 0:{settings.max_frames - 1}")
    return first, last


def write_preview(settings: RenderSettings, outdir: str | os.PathLike, image: str | None = None,
                  frames: tuple[int, int] | None = None, on_frame=None,
                  models_dir: str | None = None, max_side: int | None = None) -> tuple[Path, list[str]]:
    """``outdir/{i:09}.png`` for every output frame in ``frames`` (default: all), frame i being
    the anchor (the image at W x H, frame 0) moved by Deforum's camera (and a hybrid video's
    motion and composite, once its video was read) from frame 0 to i, and
    ``outdir/camera.mp4``. ``max_side`` shrinks the frames (the camera scaled with them) for a
    quick look. Returns the video and notes (depth, quirks)."""
    camera = settings.camera
    first, last = check_preview(settings, frames)
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WanError(f"cannot create {out}: {exc.strerror or exc}") from None
    check_writable(out)
    notes = list(camera.quirks)
    depth = None
    if camera.depth_warping:  # Deforum's depth, predicted on every frame it moves; never a silent flat scene
        from .depth import DepthEstimator

        depth = DepthEstimator(camera.depth_algorithm, models_dir, settings.depth_model)
        notes.append(f"depth: {depth.name} on every frame (use_depth_warping)")
    W, H = settings.W, settings.H
    if max_side and max(W, H) > max_side:
        scale = max_side / max(W, H)
        W, H = max(16, round(W * scale / 2) * 2), max(16, round(H * scale / 2) * 2)
        camera = camera.scaled(W, H)
        notes.append(f"shown at {W}x{H} (scaled from W/H {settings.W}x{settings.H})")
    motion = video_motion(settings, W, H)
    if motion is not None:
        notes.append(f"hybrid video {Path(settings.hybrid.path).name}: {settings.hybrid.describe() or 'composite'}"
                     " after each camera step")
    from PIL import Image

    # one chained pass per stretch (each frame is Deforum's frame i, warp only): from the image,
    # then from each guided image at its frame (the render writes it there exactly)
    for start, anchor, end in _stretches(settings, load_anchor(image, W, H), W, H, first, last, notes):
        path = CameraPath(camera, anchor, anchor_time=float(start), depth=depth, motion=motion)
        frames = range(max(first, start), end + 1)
        for i, (frame, _) in zip(frames, path.iter_at([float(i) for i in frames])):
            Image.fromarray(frame).save(out / f"{i:09}.png")
            if on_frame is not None:
                on_frame(i)
    video = out / "camera.mp4"
    cmd = pattern_command(Path(str(out).replace("%", "%%")) / "%09d.png", out / f"{first:09}.png",
                          first, settings.fps, last - first + 1, video)
    run_ffmpeg(cmd, video.name)
    return video, notes


def _stretches(settings: RenderSettings, anchor: np.ndarray, width: int, height: int, first: int, last: int,
               notes: list[str]) -> list[tuple[int, np.ndarray, int]]:
    """(anchor frame, anchor image, last frame) of each stretch the preview warps: from frame 0,
    then from each guided image that can be read here (one that cannot is noted and passed over)."""
    stretches = [(0, anchor)]
    for k in settings.keyframes:
        try:
            image = load_anchor(k.image, width, height)
        except WanError as exc:
            notes.append(f"guided image at frame {k.frame} not shown ({exc})")
            continue
        if k.frame == 0:
            stretches[0] = (0, image)
        else:
            stretches.append((k.frame, image))
    out = []
    for n, (start, image) in enumerate(stretches):
        end = stretches[n + 1][0] - 1 if n + 1 < len(stretches) else last
        if end >= first and start <= last:
            out.append((start, image, min(end, last)))
    return out


def prune_previews(parent: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` preview folders under ``parent`` (named by timestring,
    holding only what ``write_preview`` writes): a tab's previews do not fill the disk. A link,
    or a folder holding anything else, is left alone."""
    root = Path(parent)
    try:
        folders = sorted((e for e in os.scandir(root) if e.name.isdigit() and e.is_dir(follow_symlinks=False)),
                         key=lambda e: e.name)
    except OSError:
        return
    for entry in folders[:max(len(folders) - keep, 0)]:
        try:
            files = list(os.scandir(entry.path))
            if any(not PREVIEW_FILE.fullmatch(f.name) or not f.is_file(follow_symlinks=False) for f in files):
                continue
            for f in files:
                os.unlink(f.path)
            os.rmdir(entry.path)
        except OSError:  # another preview writing there, or a permission: the next one tries again
            continue
