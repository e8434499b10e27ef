"""Deforum's camera applied to images: one 2D or 3D step on a frame, and the path of an anchor
image to any output time (``CameraPath``), with the mask of pixels that still come from it.
The steps' numbers (matrices, offsets, depth -> z) are ``config.camera``'s.

2D warps forward with ``cv2.warpPerspective`` (border ``replicate``/``wrap``). 3D samples the
offset field like ``torch.nn.functional.grid_sample`` (align_corners False) and truncates to
uint8, as Deforum does. Numpy, with OpenCV imported by the functions that need it (2D warps).
"""
from __future__ import annotations

import math

import numpy as np

from ..config.camera import Camera, depth_to_z, flip_matrix, linspace, matrix_2d, offsets_3d


def warp_2d(image: np.ndarray, M: np.ndarray, border: str = "replicate") -> np.ndarray:
    import cv2

    mode = cv2.BORDER_WRAP if border == "wrap" else cv2.BORDER_REPLICATE
    return cv2.warpPerspective(image, M, (image.shape[1], image.shape[0]), borderMode=mode)


def sample(image: np.ndarray, grid: np.ndarray, mode: str = "bicubic", padding: str = "border") -> np.ndarray:
    """``torch.nn.functional.grid_sample(align_corners=False)`` in numpy, for an (h, w, c) float
    image and an (h, w, 2) grid in [-1, 1] (x, y)."""
    h, w = image.shape[:2]
    gx = ((grid[..., 0] + 1) * w - 1) / 2  # align_corners False: -1 and 1 are the outer pixel edges
    gy = ((grid[..., 1] + 1) * h - 1) / 2
    if mode == "nearest":
        return _taps(image, np.rint(gx).astype(np.int64), np.rint(gy).astype(np.int64), padding)
    if mode == "bilinear":
        if padding != "zeros":
            gx, gy = _pad_coords(gx, w, padding).astype(np.float32), _pad_coords(gy, h, padding).astype(np.float32)
        fx0, fy0 = np.floor(gx), np.floor(gy)
        x0, y0 = fx0.astype(np.int64), fy0.astype(np.int64)
        fx, fy = (gx - fx0)[..., None], (gy - fy0)[..., None]
        out = 0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                out = out + _taps(image, x0 + dx, y0 + dy, "zeros" if padding == "zeros" else "border") * wx * wy
        return out
    # bicubic: torch takes the 4x4 taps around the unclipped point, each tap padded on its own
    fx0, fy0 = np.floor(gx), np.floor(gy)
    x0, y0 = fx0.astype(np.int64), fy0.astype(np.int64)
    wx, wy = _cubic_weights(gx - fx0), _cubic_weights(gy - fy0)
    out = 0
    for j in range(4):
        row = 0
        for i in range(4):
            row = row + _taps(image, x0 - 1 + i, y0 - 1 + j, padding) * wx[i][..., None]
        out = out + row * wy[j][..., None]
    return out


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> list[np.ndarray]:
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    rest = 1 - t  # torch's order of operations, for the same float32 bits
    return [far(t + 1), near(t), near(rest), far(rest + 1)]


def _pad_coords(c: np.ndarray, size: int, padding: str) -> np.ndarray:
    if padding == "reflection":  # reflect about the outer edges (-0.5, size - 0.5), then clip
        span = 2.0 * size
        c = np.abs(np.mod(c + 0.5, span))
        c = np.where(c > size, span - c, c) - 0.5
    return np.clip(c, 0, size - 1)


def _taps(image: np.ndarray, x: np.ndarray, y: np.ndarray, padding: str) -> np.ndarray:
    h, w = image.shape[:2]
    if padding == "zeros":
        inside = ((x >= 0) & (x < w) & (y >= 0) & (y < h))[..., None]
        return np.where(inside, image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0)
    xs = _pad_coords(x.astype(np.float64), w, padding).astype(np.int64)
    ys = _pad_coords(y.astype(np.float64), h, padding).astype(np.int64)
    return image[ys, xs]


def warp_3d(image: np.ndarray, offsets: np.ndarray, mode: str = "bicubic", padding: str = "border") -> np.ndarray:
    """One 3D step on a uint8 image, truncated back to uint8 as Deforum does."""
    h, w = image.shape[:2]
    out = sample(image.astype(np.float32), (_base_grid(w, h) - offsets).astype(np.float32), mode, padding)
    return np.clip(out, 0, 255).astype(np.uint8)


class CameraPath:
    """The images Deforum's camera makes of one anchor image: its warp to any output time
    after the anchor's, with the mask of pixels that still come from the anchor."""

    def __init__(self, camera: Camera, anchor: np.ndarray, anchor_time: float = 0.0, depth=None, motion=None):
        """``depth``: a function of a frame giving its depth map (Deforum predicts it on every
        frame it moves), or None: a flat scene (z = 1), as with depth warping off. ``motion``:
        a hybrid video's step after the camera's (``render.hybrid_motion.VideoMotion``), or None."""
        self.motion = motion
        self.camera = camera
        self.anchor = np.asarray(anchor, np.uint8)
        self.t0 = float(anchor_time)
        self.depth = depth
        h, w = self.anchor.shape[:2]
        self.flat = np.ones((h, w), np.float32)

    def at(self, times: list[float]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(frames, masks) at each output time (sorted, >= the anchor's): uint8 (h, w, 3) and a
        float32 (h, w) share of each pixel that the anchor covers (1 inside, 0 invented).

        Whole steps are chained on the image as Deforum chains them (its frames, to the bit);
        a time between frames is the last whole frame plus that part of the next step."""
        frames, masks = [], []
        for frame, mask in self.iter_at(times):
            frames.append(frame)
            masks.append(mask)
        return frames, masks

    def iter_at(self, times):
        """``at``, one (frame, mask) at a time (a preview writes each as it comes)."""
        h, w = self.anchor.shape[:2]
        image, cover, now = self.anchor, np.ones((h, w), np.float32), self.t0
        for t in times:
            target = max(now, float(math.floor(t + 1e-9)))  # the last frame boundary up to t
            for frame, fraction in self.camera.steps(now, target):
                image, cover = self._step(image, cover, frame, fraction)
            now = target
            out_image, out_cover = image, cover
            for frame, fraction in self.camera.steps(now, t):  # the part of a step past ``now``
                out_image, out_cover = self._step(out_image, out_cover, frame, fraction)
            yield out_image, out_cover

    def _step(self, image, cover, frame: int, fraction: float):
        image, cover = self._camera_step(image, cover, frame, fraction)
        if self.motion is not None:  # Deforum moves by the video after the camera (render.py)
            image, cover = self.motion.step(image, cover, frame, fraction)
        return image, cover

    def _camera_step(self, image, cover, frame: int, fraction: float):
        cam = self.camera
        if cam.mode == "2D":
            M = matrix_2d(cam.params(frame, fraction), cam.W, cam.H, cam.flip_at(frame))
            return warp_2d(image, M, cam.border), _warp_cover_2d(cover, M)
        if cam.mode != "3D":
            return image, cover
        if cam.flip:  # Deforum warps by the flip first, with the 2D border
            flip = flip_matrix(cam.W, cam.H, *cam.flip_at(frame))
            image, cover = warp_2d(image, flip, cam.border), _warp_cover_2d(cover, flip)
        z = depth_to_z(self.depth(image), cam.depth_algorithm) if self.depth is not None else None
        off = offsets_3d(cam.params(frame, fraction), self.flat if z is None else z, cam.aspect(frame))
        h, w = image.shape[:2]
        grid = (_base_grid(w, h) - off).astype(np.float32)
        image = np.clip(sample(image.astype(np.float32), grid, cam.sampling_mode, cam.padding_mode), 0,
                        255).astype(np.uint8)
        cover = sample(cover[..., None], grid, "bilinear", "zeros")[..., 0]
        return image, cover


def _base_grid(w: int, h: int) -> np.ndarray:
    """``affine_grid(identity, align_corners=False)`` as torch builds it: pixel centres in [-1, 1]."""
    xs = linspace(w) * np.float32(w - 1) / np.float32(w)
    ys = linspace(h) * np.float32(h - 1) / np.float32(h)
    return np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float32)


def _warp_cover_2d(cover: np.ndarray, M: np.ndarray) -> np.ndarray:
    import cv2

    h, w = cover.shape
    return cv2.warpPerspective(cover, M, (w, h), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
