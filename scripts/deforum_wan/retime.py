"""Stream a segment's native Wan frames onto its output frames.

Output frame j of a segment (L output frames made from M native frames) shows the
native position p = j * M / L, so the segment keeps its duration and the next
prompt starts on its keyframe. ``nearest`` takes frame round(p); ``blend`` mixes
frames floor(p) and floor(p)+1 linearly; ``native`` is M == L (identity).
Frames arrive in order and outputs leave as soon as the frames they need exist,
so a segment of any length is never held in memory whole.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np


class Retimer:
    def __init__(self, n_native: int, n_out: int, mode: str, next_out: int = 0):
        if n_native < 1 or n_out < 1:
            raise ValueError("a segment needs at least one native and one output frame")
        self.n_native, self.n_out, self.mode = n_native, n_out, mode
        self.next_out = next_out  # segment-local index of the next output frame
        self.frames: dict[int, np.ndarray] = {}
        self.available = -1  # highest native index pushed

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
            frame = a if w == 0.0 else (a.astype(np.float32) * (1 - w) + b.astype(np.float32) * w)
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
