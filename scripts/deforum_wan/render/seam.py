"""wan_loop's seam: how far the jump from the video's last frame back to its first is from the
motion between neighbouring frames (played in a loop, a seam of 1 is as smooth as the rest)."""
from __future__ import annotations

from typing import Callable

import numpy as np


def measure(read: Callable[[int], np.ndarray], frames: int) -> dict:
    """``read(k)``: frame k as float [0, 1]. The mean absolute change last -> first, the median
    change between neighbours, and their ratio (None: a still video, no change to compare with)."""
    def change(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32))))

    first = previous = read(0)
    steps = []
    for k in range(1, frames):
        frame = read(k)
        steps.append(change(previous, frame))
        previous = frame
    seam = change(previous, first)
    median = float(np.median(steps)) if steps else 0.0
    return {"seam": round(seam, 6), "median_step": round(median, 6),
            "ratio": round(seam / median, 4) if median > 0 else None}


def describe(result: dict) -> str:
    ratio = result["ratio"]
    said = f"{ratio:g}x the median change between neighbouring frames" if ratio is not None else "a still video"
    return f"loop seam: last -> first frame changes {result['seam']:.4f} (mean, 0..1), {said}"
