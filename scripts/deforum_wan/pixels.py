"""Float frames in [0, 1] to 8-bit pixels: one rounding for every frame the project turns
into uint8 (the PNGs written, the images and VACE context handed to the pipelines, the
frames the camera warps), so the same float frame is the same pixels everywhere.

Round half to even (``np.rint``), as diffusers' own ``numpy_to_pil`` does; exact, where
``x * 255 + 0.5`` truncated rounds some values just below a half up in float32.
"""
from __future__ import annotations

import numpy as np


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """Float frame(s) in [0, 1] (clipped) to uint8, rounded to the nearest level."""
    return np.rint(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
