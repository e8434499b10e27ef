"""A hybrid video's motion, computed with OpenCV as Deforum's hybrid_video.py computes it, and
applied to a frame after the camera's step (``render.warp.CameraPath``'s ``motion``).

Output frame f's step moves the frame by the video's motion from input frame f-1 to f: dense
flow (DIS Medium/Fine seeded with the previous pair's flow, Farneback "normal"), scaled by
``hybrid_flow_factor_schedule`` and applied by Deforum's remap (a reflected border a quarter
of the frame wide); or a SIFT + RANSAC fit (``findHomography`` for Perspective,
``estimateAffinePartial2D`` for Affine) applied by ``warpPerspective``/``warpAffine`` with a
reflected border. ``hybrid_composite`` then blends input frame f in at its alpha (Before
Motion: before the video's motion). A step's fraction (a time between output frames) scales
the flow, the matrix's departure from the identity and the alpha.
"""
from __future__ import annotations

import numpy as np

from ..config.hybrid import Hybrid
from ..config.settings import RenderSettings

MIN_MATCHES = 8  # Deforum keeps the identity with this many good SIFT matches or fewer
RATIO = 0.75  # Lowe's ratio test, Deforum's "confidence"
BATCH = 16  # input frames decoded at a time
HELD = 160  # output frames held behind the newest asked for (a window's reach back, with room)


def gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 -> luma (Deforum reads BGR and converts with BGR2GRAY: the same weights)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def flow_between(a: np.ndarray, b: np.ndarray, method: str, previous: np.ndarray | None = None) -> np.ndarray:
    """Deforum's get_flow_from_images: (H, W, 2) float32 flow from ``a`` to ``b`` (RGB uint8)."""
    import cv2

    ga, gb = gray(a), gray(b)
    if method == "Farneback":  # Deforum's call hands its previous flow to the preset argument: "normal"
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 5, 21, 5, 7, 1.2, 0)
    if method == "DIS Fine":
        dis = cv2.DISOpticalFlow_create()
        dis.setGradientDescentIterations(192)
        dis.setFinestScale(0)
        dis.setPatchSize(8)
        dis.setPatchStride(4)
    else:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(ga, gb, None if previous is None else previous.copy())


def matrix_between(a: np.ndarray, b: np.ndarray, motion: str) -> np.ndarray:
    """Deforum's get_transformation_matrix_from_images: 3x3 (Perspective) or 2x3 (Affine)."""
    import cv2

    identity = np.eye(3) if motion == "Perspective" else np.eye(2, 3)
    sift = cv2.SIFT_create()
    kp1, des1 = sift.detectAndCompute(gray(a), None)
    kp2, des2 = sift.detectAndCompute(gray(b), None)
    if des1 is None or des2 is None or len(kp1) < 2 or len(kp2) < 2:
        return identity
    good = [m for m, n in cv2.BFMatcher().knnMatch(des1, des2, k=2) if m.distance < RATIO * n.distance]
    if len(good) <= MIN_MATCHES:
        return identity
    src = np.float32([kp1[m.queryIdx].pt for m in good]).reshape(-1, 1, 2)
    dst = np.float32([kp2[m.trainIdx].pt for m in good]).reshape(-1, 1, 2)
    if motion == "Perspective":
        found, _ = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    else:
        found, _ = cv2.estimateAffinePartial2D(src, dst)
    return identity if found is None else found


def flow_map(flow: np.ndarray, factor: float) -> np.ndarray:
    """Where each output pixel is read from: p - factor * flow(p) (Deforum reverses the flow)."""
    h, w = flow.shape[:2]
    out = -flow * factor
    out[..., 0] += np.arange(w)
    out[..., 1] += np.arange(h)[:, None]
    return out.astype(np.float32)


def remap_reflect(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Deforum's remap: the frame padded by a reflected quarter on each side, sampled, cropped."""
    import cv2

    h, w = image.shape[:2]
    dy, dx = int(h * 0.25), int(w * 0.25)
    larger = cv2.copyMakeBorder(image, dy, dy, dx, dx, cv2.BORDER_REFLECT_101)
    lh, lw = larger.shape[:2]
    xs, ys = np.meshgrid(np.arange(lw), np.arange(lh))
    big = np.dstack((xs, ys)).astype(np.float32)
    big[dy:dy + h, dx:dx + w] = where + np.float32([dx, dy])
    out = cv2.remap(larger, big, None, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)
    return out[dy:dy + h, dx:dx + w]


def _warp_cover_map(cover: np.ndarray, where: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.remap(cover, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def partial(matrix: np.ndarray, fraction: float) -> np.ndarray:
    """The share ``fraction`` of a matrix's step (3x3), by its departure from the identity."""
    full = np.eye(3)
    full[: matrix.shape[0]] = matrix
    if matrix.shape[0] == 3 and full[2, 2] != 0:
        full = full / full[2, 2]
    return np.eye(3) + fraction * (full - np.eye(3))


class VideoMotion:
    """One hybrid video at the render size: its frames by output frame, the motion of each
    output frame's step (cached, flows chained as Deforum chains them), and that step applied.
    ``frames``: a function of a list of source frame indices giving RGB frames in [0, 1]
    (``config.source_video.SourceReader.frames``)."""

    def __init__(self, hybrid: Hybrid, frames):
        self.hybrid = hybrid
        self._read = frames
        self._frames: dict[int, np.ndarray] = {}
        self._motion: dict[int, np.ndarray] = {}
        self._flow_at, self._flow = 0, None  # the last chained flow and its output frame

    @property
    def last(self) -> int:
        return len(self.hybrid.kept) - 1

    def frame(self, f: int) -> np.ndarray:
        """Output frame f's input frame, uint8 RGB (held at the video's last frame)."""
        f = min(max(f, 0), self.last)
        if f not in self._frames:
            # from f-1: a step's motion needs both its frames, and the reader only goes forward
            wanted = [g for g in range(max(f - 1, 0), min(f + BATCH, self.last + 1)) if g not in self._frames]
            for g, frame in zip(wanted, self._read([self.hybrid.kept[g] for g in wanted])):
                self._frames[g] = np.clip(np.asarray(frame) * 255 + 0.5, 0, 255).astype(np.uint8)
            self._forget(f - HELD)
        return self._frames[f]

    def _forget(self, before: int) -> None:
        """Frames and motions a forward walk no longer reaches (a window reaches back its overlap)."""
        for held in (self._frames, self._motion):
            for g in [g for g in held if g < before]:
                del held[g]

    def motion(self, f: int) -> np.ndarray | None:
        """The video's motion into output frame f: a flow, a matrix, or None (no step there)."""
        if not self.hybrid.moves or f < 1 or f > self.last:
            return None
        if f in self._motion:
            return self._motion[f]
        if self.hybrid.motion != "Optical Flow":
            self._motion[f] = matrix_between(self.frame(f - 1), self.frame(f), self.hybrid.motion)
        elif f <= self._flow_at:  # behind the chain (forgotten): unseeded
            self._motion[f] = flow_between(self.frame(f - 1), self.frame(f), self.hybrid.flow_method)
        else:  # Deforum seeds each pair's DIS flow with the previous pair's, from frame 1 on
            for g in range(self._flow_at + 1, f + 1):
                self._flow = flow_between(self.frame(g - 1), self.frame(g), self.hybrid.flow_method,
                                          self._flow if g > 1 else None)
                self._flow_at, self._motion[g] = g, self._flow
        return self._motion[f]

    def _moved(self, image: np.ndarray, f: int, fraction: float) -> tuple[np.ndarray, np.ndarray | None]:
        """The image moved by step f's share ``fraction``, and where each pixel was read from."""
        import cv2

        if self.hybrid.use_prev_img and self.hybrid.moves and 1 <= f <= self.last:
            found = flow_between(image, self.frame(f), self.hybrid.flow_method) \
                if self.hybrid.motion == "Optical Flow" else matrix_between(image, self.frame(f), self.hybrid.motion)
        else:
            found = self.motion(f)
        if found is None or fraction <= 0:
            return image, None
        h, w = image.shape[:2]
        if self.hybrid.motion == "Optical Flow":
            factor = self.hybrid.flow_factor[min(f, len(self.hybrid.flow_factor) - 1)] * fraction
            where = flow_map(found, factor)
            return remap_reflect(image, where), where
        M = partial(found, fraction)
        if self.hybrid.motion == "Affine":
            moved = cv2.warpAffine(image, M[:2], (w, h), borderMode=cv2.BORDER_REFLECT_101)
        else:
            moved = cv2.warpPerspective(image, M, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
        back = np.stack([xs, ys, np.ones_like(xs)], -1) @ np.linalg.inv(M).T
        return moved, (back[..., :2] / back[..., 2:3]).astype(np.float32)

    def _blend(self, image: np.ndarray, f: int, fraction: float) -> np.ndarray:
        alpha = self.hybrid.alpha[min(f, len(self.hybrid.alpha) - 1)] * fraction
        if alpha <= 0:
            return image
        mixed = image.astype(np.float32) * (1 - alpha) + self.frame(f).astype(np.float32) * alpha
        return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)  # PIL's Image.blend rounds

    def step(self, image: np.ndarray, cover: np.ndarray, f: int, fraction: float = 1.0):
        """Output frame f's hybrid step on a camera-moved uint8 frame and its cover."""
        composite = self.hybrid.composite
        if composite == "Before Motion":
            image = self._blend(image, f, fraction)
        image, where = self._moved(image, f, fraction)
        if where is not None:
            cover = _warp_cover_map(cover.astype(np.float32), where)
        if composite in ("Normal", "After Generation"):  # the latter as the former: config.hybrid says so
            image = self._blend(image, f, fraction)
        return image, cover

    def source_points(self, pts: np.ndarray, f: int) -> np.ndarray:
        """Where the content at ``pts`` (pixels after step f) was before the video's motion."""
        found = self.motion(f)
        if found is None:
            return pts
        if self.hybrid.motion == "Optical Flow":
            h, w = found.shape[:2]
            xi = np.clip(np.rint(pts[:, 0]).astype(int), 0, w - 1)
            yi = np.clip(np.rint(pts[:, 1]).astype(int), 0, h - 1)
            factor = self.hybrid.flow_factor[min(f, len(self.hybrid.flow_factor) - 1)]
            return pts - factor * found[yi, xi]
        homog = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(partial(found, 1.0)).T
        return homog[:, :2] / homog[:, 2:3]


def video_motion(settings: RenderSettings, width: int, height: int):
    """A hybrid video's motion at the render size, decoded as it is asked for; None without one."""
    hybrid = settings.hybrid
    if hybrid is None or not hybrid.kept:
        return None
    from ..config.source_video import SourceReader

    return VideoMotion(hybrid, SourceReader(hybrid.path, width, height).frames)
