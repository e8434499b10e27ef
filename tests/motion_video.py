"""Synthetic source videos with a known motion for the hybrid tests: a smooth random texture
seen through a window that pans by (dx, dy) pixels or zooms by a factor per frame, so the
motion between any two frames is known exactly (up to the encode)."""
from __future__ import annotations

import numpy as np


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Blobs of colour at several scales: corners and gradients for SIFT and flow to lock on."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.zeros((height, width, 3), np.float32)
    for cell in (4, 9, 23):
        small = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        out += cv2.resize(small, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)[
            cell:cell + height, cell:cell + width]
    out -= out.min()
    return (out / out.max() * 255).astype(np.uint8)


def moving_frames(frames: int, width: int, height: int, pan=(0.0, 0.0), zoom: float = 1.0,
                  seed: int = 0) -> list[np.ndarray]:
    """Frame k shows the texture moved by k pans (content moves right/down for positive
    ``pan``) and scaled by zoom**k about the centre: frame k+1 = M frame k, M the step."""
    import cv2

    margin = int(abs(pan[0]) * frames + abs(pan[1]) * frames) + max(width, height)
    big = texture(width + 2 * margin, height + 2 * margin, seed)
    out = []
    for k in range(frames):
        M = step_matrix(width, height, pan, zoom, k)
        M[:, 2] += M[:, :2] @ np.array([-margin, -margin], np.float64)
        out.append(cv2.warpAffine(big, M[:2], (width, height), flags=cv2.INTER_LINEAR))
    return out


def step_matrix(width: int, height: int, pan=(0.0, 0.0), zoom: float = 1.0, k: int = 1) -> np.ndarray:
    """The 3x3 map of pixel positions from frame 0 to frame k (k steps of the motion)."""
    cx, cy = width / 2, height / 2
    s = zoom ** k
    return np.array([[s, 0, cx - s * cx + pan[0] * k], [0, s, cy - s * cy + pan[1] * k], [0, 0, 1]], np.float64)


def write_video(path, frames: list[np.ndarray], fps: float = 16) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv444p",
                                         macro_block_size=16, quality=10)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
