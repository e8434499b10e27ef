"""How closely a video follows Deforum's camera: the motion OpenCV finds between consecutive
output frames against the camera's own step there, per window.

For each pair (k, k+1) a grid of points of frame k+1 is carried back through the camera's
step to frame k (``config.camera.source_points``: Deforum's 2D matrix, or 3D with flat
depth); the motion estimated from the pixels (tracked corners, a RANSAC similarity) should
carry them forward onto the grid again. The error is the mean distance in pixels, and the
difference of the two rotations in degrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config.camera import Camera, source_points

GRID = 16  # points per side of the compared grid
MIN_TRACKED = 12  # fewer tracked corners than this: no estimate for the pair


@dataclass
class Adherence:
    pairs: int = 0  # frame pairs measured
    skipped: int = 0  # pairs too flat to track
    px: float = float("nan")  # mean point error, pixels
    deg: float = float("nan")  # mean rotation error, degrees
    windows: list[dict] = field(default_factory=list)  # {"window", "pairs", "px", "deg"}
    against: str = "Deforum's path"  # the motion the frames are measured against

    def to_dict(self) -> dict:
        def num(x):
            return None if math.isnan(x) else round(x, 3)

        return {"pairs": self.pairs, "skipped": self.skipped, "px": num(self.px), "deg": num(self.deg),
                "windows": [{**w, "px": num(w["px"]), "deg": num(w["deg"])} for w in self.windows]}

    def describe(self) -> str:
        if not self.pairs:
            return f"camera adherence: no frame pair could be tracked ({self.skipped} too flat)"
        return (f"camera adherence: {self.px:.2f} px, {self.deg:.2f} deg mean error over {self.pairs} frame pairs"
                f" (OpenCV's motion against {self.against}{f'; {self.skipped} too flat' if self.skipped else ''})")


def estimate(a: np.ndarray, b: np.ndarray):
    """The similarity (2x3) carrying frame ``a``'s content to frame ``b``, or None."""
    import cv2

    ga, gb = (cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in (a, b))
    corners = cv2.goodFeaturesToTrack(ga, maxCorners=500, qualityLevel=0.01, minDistance=3)
    if corners is None or len(corners) < MIN_TRACKED:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(ga, gb, corners, None, winSize=(21, 21), maxLevel=3)
    ok = status.ravel() == 1
    if ok.sum() < MIN_TRACKED:
        return None
    matrix, _ = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC,
                                            ransacReprojThreshold=1.0)
    return matrix


def _angle(matrix: np.ndarray) -> float:
    return math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))


def pair_error(camera: Camera, a: np.ndarray, b: np.ndarray, t: float, motion=None) -> tuple[float, float] | None:
    """(pixels, degrees) between the motion from frame ``a`` (output time ``t``) to ``b`` (t + 1)
    and the camera's step (then a hybrid video's, ``motion``: a VideoMotion); None when the
    frames are too flat to track."""
    import cv2

    found = estimate(a, b)
    if found is None:
        return None
    h, w = a.shape[:2]
    ys, xs = np.meshgrid((np.arange(GRID) + 0.5) / GRID * h, (np.arange(GRID) + 0.5) / GRID * w, indexing="ij")
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    # Deforum moves by the camera, then by the video: undo the video's step first
    before = motion.source_points(grid, int(round(t)) + 1) if motion is not None else grid
    src = source_points(camera, before, t, t + 1)
    keep = np.isfinite(src).all(axis=1) & (src[:, 0] >= 0) & (src[:, 0] < w) & (src[:, 1] >= 0) & (src[:, 1] < h)
    if keep.sum() < 3:
        return None
    src, grid = src[keep], grid[keep]
    carried = src @ found[:, :2].T + found[:, 2]
    planned, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), grid.astype(np.float32), method=cv2.LMEDS)
    turn = abs((_angle(found) - _angle(planned) + 180) % 360 - 180) if planned is not None else 0.0
    return float(np.linalg.norm(carried - grid, axis=1).mean()), float(turn)


def measure(camera: Camera, frames, spans: list[tuple[int, int, int]], motion=None) -> Adherence:
    """``frames``: output frames by index (a list, or a function of the index); ``spans``:
    (window, first frame, end) of each window. ``camera`` at the frames' size; ``motion``: a
    hybrid video's (VideoMotion at the frames' size), the frames' motion being both."""
    get = frames.__getitem__ if not callable(frames) else frames
    out = Adherence(against="the source video's motion after Deforum's camera" if motion is not None
                    else "Deforum's path")
    px_all, deg_all = [], []
    for window, start, end in spans:
        px, deg = [], []
        previous = get(start) if end - start > 1 else None
        for k in range(start, end - 1):
            current = get(k + 1)
            err = pair_error(camera, previous, current, float(k), motion)
            previous = current
            if err is None:
                out.skipped += 1
                continue
            px.append(err[0])
            deg.append(err[1])
        out.windows.append({"window": window, "pairs": len(px), "px": _mean(px), "deg": _mean(deg)})
        px_all += px
        deg_all += deg
    out.pairs, out.px, out.deg = len(px_all), _mean(px_all), _mean(deg_all)
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
