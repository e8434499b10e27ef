"""Color coherence and overlap blending for chained Wan windows.

``match_color`` is Deforum's ``maintain_colors`` (colors.py): histogram matching per
channel in the chosen colour space, uint8 in and out. The histogram matching is
scikit-image's ``match_histograms(..., channel_axis=-1)`` re-implemented (same algorithm,
same uint8 truncation; tests compare the two) because scikit-image 0.26 needs Python >=
3.11 and pulls in scipy, while A1111 hosts run Python 3.10: in numpy, and for the render's
``ColorMatcher`` as 256-entry tables applied with OpenCV.
"""

from __future__ import annotations

import numpy as np

from ..config.keys import COLOR_MODES


def _template_cdf(template: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The values that occur in a uint8 channel and their cumulative quantiles."""
    counts = np.bincount(template.reshape(-1))
    values = np.nonzero(counts)[0]
    return np.cumsum(counts[values]) / template.size, values


def _match_lut(source: np.ndarray, template: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """skimage's ``_match_cumulative_cdf`` for unsigned ints as a 256-entry table: each
    source value maps to the template value at the same quantile (linear between template
    values), truncated to uint8 as skimage's store into a uint8 array does."""
    src_quantiles = np.cumsum(np.bincount(source, minlength=256)) / source.size
    tmpl_quantiles, tmpl_values = template
    return np.interp(src_quantiles, tmpl_quantiles, tmpl_values).astype(np.uint8)


def match_histograms(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-channel (last axis) histogram matching of uint8 images; returns uint8.

    As in skimage, float results are stored into a uint8 array, i.e. truncated.
    """
    if image.dtype != np.uint8 or reference.dtype != np.uint8:
        raise ValueError("match_histograms takes uint8 images")
    if image.ndim != reference.ndim or image.shape[-1] != reference.shape[-1]:
        raise ValueError("image and reference must have the same number of channels")
    return _match_channels(image, [_template_cdf(reference[..., c]) for c in range(reference.shape[-1])])


def _match_channels(image: np.ndarray, templates: list) -> np.ndarray:
    matched = np.empty(image.shape, dtype=image.dtype)
    for c, template in enumerate(templates):
        channel = image[..., c].reshape(-1)
        matched[..., c] = _match_lut(channel, template)[channel].reshape(image.shape[:-1])
    return matched


def _match_channels_cv2(image: np.ndarray, templates: list) -> np.ndarray:
    """``_match_channels`` through OpenCV's histogram and table lookup: the same tables,
    ~4x quicker on an 832x480 frame (the render does this for every frame of every window)."""
    import cv2

    luts = []
    for c, (tmpl_quantiles, tmpl_values) in enumerate(templates):
        counts = cv2.calcHist([image], [c], None, [256], [0, 256]).ravel()  # float32: exact below 2**24
        quantiles = np.cumsum(counts, dtype=np.float64) / (image.shape[0] * image.shape[1])
        luts.append(np.interp(quantiles, tmpl_quantiles, tmpl_values).astype(np.uint8))
    return cv2.LUT(image, np.stack(luts, axis=-1).reshape(1, 256, len(templates)))


def _check_rgb(name: str, img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 (H,W,3) RGB, got {img.dtype} {img.shape}")


class ColorMatcher:
    """``match_color`` against one anchor, whose histograms are computed once (a render
    matches every frame of every window to frame 0)."""

    def __init__(self, anchor: np.ndarray, mode: str):
        if mode not in COLOR_MODES:
            raise ValueError(f"color coherence mode must be one of {COLOR_MODES}, got {mode!r}")
        _check_rgb("anchor", anchor)
        self.mode = mode
        self._convert = None
        if mode in ("HSV", "LAB"):
            import cv2  # render extra; only needed when colour coherence is on

            self._convert = ((cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if mode == "HSV"
                             else (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB))
            anchor = cv2.cvtColor(anchor, self._convert[0])
        self._templates = [] if mode == "None" else [_template_cdf(anchor[..., c]) for c in range(3)]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.mode == "None":
            return frame
        _check_rgb("frame", frame)
        try:
            import cv2
        except ImportError:  # RGB without the render extra
            return _match_channels(frame, self._templates)
        if self._convert is None:
            return _match_channels_cv2(np.ascontiguousarray(frame), self._templates)
        to, back = self._convert
        return cv2.cvtColor(_match_channels_cv2(cv2.cvtColor(frame, to), self._templates), back)


def match_color(frame: np.ndarray, anchor: np.ndarray, mode: str) -> np.ndarray:
    """Match ``frame``'s colour histograms to ``anchor`` (both uint8 (H,W,3) RGB; sizes
    may differ) in ``mode``'s colour space, as Deforum's ``maintain_colors``.

    "None" returns ``frame`` itself. HSV matches hue linearly like Deforum (cv2's 8-bit
    hue is 0..179), and LAB uses cv2's 8-bit LAB, exactly as Deforum does.
    """
    if mode == "None":
        return frame
    return ColorMatcher(anchor, mode)(frame)


def crossfade_weights(n: int) -> np.ndarray:
    """Weights of ``b`` for ``n`` overlapping frames: (i+1)/(n+1), i = 0..n-1.

    Strictly inside (0, 1): the frame before the overlap is pure ``a`` (weight 0) and
    the frame after it pure ``b`` (weight 1), so the n frames step evenly between them.
    """
    return (np.arange(1, n + 1, dtype=np.float32) / np.float32(n + 1))


def crossfade(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend the overlap of two windows: frame i = a_i + w_i (b_i - a_i), w from
    ``crossfade_weights``. ``a``/``b`` are float (N,...) of the same shape; float32 out.

    ``a + w(b - a)`` rather than ``(1-w)a + wb``: equal inputs come back exactly.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"crossfade needs two arrays of the same (N,...) shape, got {a.shape} and {b.shape}")
    w = crossfade_weights(a.shape[0]).reshape((-1,) + (1,) * (a.ndim - 1))
    return a + w * (b - a)


__all__ = ["COLOR_MODES", "ColorMatcher", "crossfade", "crossfade_weights", "match_color", "match_histograms"]
