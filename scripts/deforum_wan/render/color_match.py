"""Colour correction of chained windows (``wan_color_match``), before a window's frames seed
the next one: the loop corrects a window's frames before they enter the carry stream, so the
conditioning frame and the VACE context the next window takes are corrected ones.

- ``deforum``: Deforum's ``color_coherence`` histogram matching (render.color.ColorMatcher);
- ``lab``: the mean and spread of each Lab channel moved onto the reference's (Reinhard's
  transfer, what Wan2GP applies between its sliding windows);
- ``off``: nothing.

The reference (``wan_color_reference``) is the shot's first frame (``shot``; a shot is a
prompt segment, so a cut or a new prompt starts one and the shot's first window is left as
it came) or the frame the window continues from (``previous``). ``strength`` mixes the
corrected frame with the one Wan made.
"""
from __future__ import annotations

import numpy as np

from ..pixels import to_uint8


def _lab(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.float32), cv2.COLOR_RGB2Lab)


class LabMatcher:
    """Float RGB frames in [0, 1] moved to a reference's Lab mean and standard deviation."""

    def __init__(self, reference: np.ndarray):
        px = _lab(_float(reference)).reshape(-1, 3)
        self.mean, self.std = px.mean(0), px.std(0)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        lab = _lab(frame)
        px = lab.reshape(-1, 3)
        mean, std = px.mean(0), px.std(0)
        scale = np.where(std > 1e-3, self.std / np.maximum(std, 1e-3), 1.0).astype(np.float32)
        out = (lab - mean) * scale + self.mean
        return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


class HistogramMatcher:
    """Deforum's colour coherence (uint8 histograms) on float frames."""

    def __init__(self, reference: np.ndarray, mode: str):
        from .color import ColorMatcher

        self.matcher = ColorMatcher(to_uint8(_float(reference)), mode)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.matcher(to_uint8(frame)).astype(np.float32) / 255.0


def _float(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32) / 255.0 if frame.dtype == np.uint8 else frame.astype(np.float32)


class ColorCorrection:
    """The render's colour correction: ``reference_for`` and ``apply`` per window."""

    def __init__(self, mode: str, coherence: str, strength: float, reference: str):
        self.mode = "off" if mode == "deforum" and coherence == "None" else mode
        self.coherence, self.strength, self.reference = coherence, float(strength), reference
        self.shots: dict[int, np.ndarray] = {}  # shot (segment) -> its first output frame, uint8

    @property
    def active(self) -> bool:
        return self.mode != "off" and self.strength > 0

    def matcher(self, reference: np.ndarray):
        return LabMatcher(reference) if self.mode == "lab" else HistogramMatcher(reference, self.coherence)

    def correct(self, frames: list[np.ndarray], reference: np.ndarray | None) -> list[np.ndarray]:
        """``frames`` (float, [0, 1]) matched to ``reference``, mixed by the strength."""
        if not self.active or reference is None:
            return frames
        match = self.matcher(reference)
        out = []
        for f in frames:
            m = match(f)
            out.append(m if self.strength >= 1 else (f + self.strength * (m - f)).astype(np.float32))
        return out
