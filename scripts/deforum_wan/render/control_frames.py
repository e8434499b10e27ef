"""A control video's frames as VACE is shown them: the kind's map of each decoded frame, made
with OpenCV's own calls (canny, gray, flow) or the depth models of the 3D camera (depth.py).
Frames are float32 (H, W, 3) in [0, 1], as the source reader gives them."""
from __future__ import annotations

import numpy as np

from ..config.source_video import to_gray

# sd-webui-controlnet's canny preprocessor's default thresholds
CANNY_LOW, CANNY_HIGH = 100, 200


def _uint8(frame: np.ndarray) -> np.ndarray:
    return np.clip(np.round(frame * 255), 0, 255).astype(np.uint8)


def canny(frame: np.ndarray) -> np.ndarray:
    import cv2

    edges = cv2.Canny(cv2.cvtColor(_uint8(frame), cv2.COLOR_RGB2GRAY), CANNY_LOW, CANNY_HIGH)
    return np.repeat(edges[..., None], 3, axis=-1).astype(np.float32) / 255.0


def flow(previous: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The motion from ``previous`` to ``frame`` (Farneback) as OpenCV's tutorial draws it:
    hue the direction, value the speed (scaled to the frame's fastest), full saturation."""
    import cv2

    a = cv2.cvtColor(_uint8(previous), cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(_uint8(frame), cv2.COLOR_RGB2GRAY)
    motion = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    magnitude, angle = cv2.cartToPolar(motion[..., 0], motion[..., 1])
    hsv = np.zeros((*a.shape, 3), np.uint8)
    hsv[..., 0] = angle * 180 / np.pi / 2
    hsv[..., 1] = 255
    hsv[..., 2] = cv2.normalize(magnitude, None, 0, 255, cv2.NORM_MINMAX)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32) / 255.0


def depth_map(depth: np.ndarray) -> np.ndarray:
    """A depth model's output scaled to [0, 1] per frame, grey (near bright for disparity models)."""
    lo, hi = float(depth.min()), float(depth.max())
    scaled = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return np.repeat(scaled[..., None], 3, axis=-1).astype(np.float32)


class ControlFrames:
    """``frames(indices)``: the control maps of a control video's frames ``indices`` (each
    decoded by ``reader``); flow needs each frame's predecessor among the ``kept`` frames."""

    def __init__(self, kind: str, reader, kept: list[int], depth=None):
        self.kind, self.reader, self.kept, self.depth = kind, reader, list(kept), depth

    def frames(self, indices: list[int]) -> np.ndarray:
        if self.kind == "flow":
            before = [self._previous(c) for c in indices]
            decoded = self.reader.frames(sorted(set(before) | set(indices)))
            by_index = dict(zip(sorted(set(before) | set(indices)), decoded))
            return np.stack([flow(by_index[p], by_index[c]) for p, c in zip(before, indices)])
        decoded = np.stack(self.reader.frames(indices))
        if self.kind == "gray":
            return to_gray(decoded)
        if self.kind == "canny":
            return np.stack([canny(f) for f in decoded])
        if self.kind == "depth":
            return np.stack([depth_map(self.depth(_uint8(f))) for f in decoded])
        raise ValueError(f"no control frames of kind {self.kind!r}")

    def _previous(self, c: int) -> int:
        """The kept frame before ``c`` (``c`` itself for the first: no motion)."""
        i = self.kept.index(c)
        return self.kept[i - 1] if i > 0 else c


def control_frames_for(settings, plan, models_dir) -> ControlFrames | None:
    """The control video's frames of ``plan``'s windows (None without one); a depth control's
    model is loaded now, before any window, so a missing one fails in one line."""
    control = settings.control
    if control is None:
        return None
    from ..config.source_video import SourceReader

    depth = None
    if control.kind == "depth":
        from .depth import DepthEstimator

        depth = DepthEstimator(control.depth_algorithm, models_dir, settings.depth_model)
    return ControlFrames(control.kind, SourceReader(control.path, plan.width, plan.height), list(control.kept), depth)
