"""Stream a segment's native Wan frames onto its output frames.

Output frame j of a segment (L output frames made from M native frames) shows the
native position p = j * M / L, so the segment keeps its duration and the next
prompt starts on its keyframe. ``nearest`` takes frame round(p); ``blend`` mixes
frames floor(p) and floor(p)+1 linearly; ``flow`` moves both of them to p along
their optical flow before mixing (no double edges on motion); ``native`` is M == L
(identity).
Frames arrive in order and outputs leave as soon as the frames they need exist,
so a segment of any length is never held in memory whole.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from ..pixels import to_uint8


class Retimer:
    def __init__(self, n_native: int, n_out: int, mode: str, next_out: int = 0):
        if n_native < 1 or n_out < 1:
            raise ValueError("a segment needs at least one native and one output frame")
        self.n_native, self.n_out, self.mode = n_native, n_out, mode
        self.next_out = next_out  # segment-local index of the next output frame
        self.frames: dict[int, np.ndarray] = {}
        self.available = -1  # highest native index pushed
        self._flows: tuple | None = None  # flow mode: (lo, flow lo->hi, flow hi->lo), reused per pair

    def _sources(self, j: int) -> tuple[int, int, float]:
        p = j * self.n_native / self.n_out
        lo = min(int(math.floor(p)), self.n_native - 1)
        if self.mode == "nearest":
            k = min(int(math.floor(p + 0.5)), self.n_native - 1)
            return k, k, 0.0
        hi = min(lo + 1, self.n_native - 1)
        return lo, hi, p - lo if hi > lo else 0.0

    def push(self, index: int, frame: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Add native frame ``index`` (segment-local); yield (output index, frame) now ready."""
        if index != self.available + 1 and self.available >= 0:
            raise ValueError(f"native frame {index} pushed after {self.available}")
        self.frames[index] = frame
        self.available = index
        yield from self._drain()

    def _drain(self) -> Iterator[tuple[int, np.ndarray]]:
        while self.next_out < self.n_out:
            lo, hi, w = self._sources(self.next_out)
            if hi > self.available:
                break
            a, b = self.frames[lo], self.frames[hi]
            if w == 0.0:
                frame = a
            elif self.mode == "flow":
                if self._flows is None or self._flows[0] != lo:
                    self._flows = (lo, *pair_flows(a, b))
                frame = flow_interpolate(a, b, w, *self._flows[1:])
            else:
                frame = a.astype(np.float32) * (1 - w) + b.astype(np.float32) * w
            yield self.next_out, frame
            self.next_out += 1
        # Keep only what later outputs can still need.
        if self.next_out < self.n_out:
            keep_from = self._sources(self.next_out)[0]
            for k in [k for k in self.frames if k < keep_from]:
                del self.frames[k]
        else:
            self.frames.clear()

    @property
    def done(self) -> bool:
        return self.next_out >= self.n_out


def _gray_u8(frame: np.ndarray):
    import cv2  # render extra, like colour coherence

    return cv2.cvtColor(to_uint8(frame), cv2.COLOR_RGB2GRAY)


def pair_flows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's DIS optical flow a->b and b->a (float32 (H, W, 2), pixels)."""
    import cv2

    ga, gb = _gray_u8(a), _gray_u8(b)
    if min(ga.shape) < 16:  # DIS fails (OpenCV 5 even crashes) on smaller inputs: blend
        zero = np.zeros(ga.shape + (2,), np.float32)
        return zero, zero
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(ga, gb, None), dis.calc(gb, ga, None)


def flow_interpolate(a: np.ndarray, b: np.ndarray, t: float, f_ab: np.ndarray, f_ba: np.ndarray) -> np.ndarray:
    """The frame at time t (0..1) between float (H, W, 3) frames a and b.

    The flows from time t back to a and to b are approximated from the two pair flows
    as in Super SloMo (Jiang et al. 2018, eq. 4); a and b are warped backwards along them
    and mixed (1-t, t). Float32 out.
    """
    import cv2

    f_ta = -(1 - t) * t * f_ab + t * t * f_ba
    f_tb = (1 - t) ** 2 * f_ab - t * (1 - t) * f_ba
    h, w = f_ab.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def warp(img, flow):
        return cv2.remap(np.asarray(img, np.float32), gx + flow[..., 0], gy + flow[..., 1],
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return (1 - t) * warp(a, f_ta) + t * warp(b, f_tb)
