"""How far a chain of windows drifts: per window, its colour, saturation, brightness and
sharpness against the first window of its shot (a shot is a prompt segment; a cut starts
one), the jump at each seam against the motion inside windows, and LV-Bench's video drift
error per shot, VDE = sum_{i=2..N} (N-i+1) |m_i - m_1| / m_1 over the shot's N windows
(for colour on the mean Lab chroma, for clarity on the Laplacian energy).

Cheap: a few frames of each window (``SAMPLES``), each a few ms in OpenCV.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

SAMPLES = 3  # frames measured per window: its first, middle and last
STATS = ("L", "a", "b", "L_std", "a_std", "b_std", "chroma", "saturation", "sharpness")


def lab(frame: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) of a uint8 RGB frame as float32: L 0..100, a/b about -128..127."""
    import cv2

    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def laplacian_energy(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the grey frame (borders reflected): the
    usual focus measure; blur lowers it."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=1).var())


def frame_stats(frame: np.ndarray) -> dict[str, float]:
    """The measured numbers of one uint8 RGB frame (``STATS``)."""
    import cv2

    px = lab(frame).reshape(-1, 3).astype(np.float64)
    mean, std = px.mean(0), px.std(0)
    sat = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)[..., 1].astype(np.float64) / 255.0
    return {"L": mean[0], "a": mean[1], "b": mean[2], "L_std": std[0], "a_std": std[1], "b_std": std[2],
            "chroma": float(np.hypot(px[:, 1], px[:, 2]).mean()), "saturation": float(sat.mean()),
            "sharpness": laplacian_energy(frame)}


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 frames, in 0..255 levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def vde(values: list[float]) -> float | None:
    """LV-Bench's video drift error of one shot's per-window measure; None when m_1 is 0."""
    if not values or values[0] == 0:
        return None
    n, first = len(values), values[0]
    return float(sum((n - i + 1) * abs(values[i - 1] - first) / abs(first) for i in range(2, n + 1)))


def _rel(value: float, first: float) -> float | None:
    return None if first == 0 else (value - first) / abs(first)


def _samples(start: int, end: int) -> list[int]:
    return sorted({start, (start + end - 1) // 2, end - 1}) if end > start else []


@dataclass
class Drift:
    windows: list[dict] = field(default_factory=list)
    shots: list[dict] = field(default_factory=list)
    seam_jump: float | None = None  # mean over the seams, 0..255 levels
    motion: float | None = None  # mean over the windows' consecutive pairs

    def to_dict(self) -> dict:
        return {"windows": self.windows, "shots": self.shots, "seam_jump": _round(self.seam_jump),
                "motion": _round(self.motion),
                "seam_ratio": _round(self.seam_jump / self.motion) if self.seam_jump is not None
                and self.motion else None}

    def describe(self) -> str:
        if not self.windows:
            return "drift: no window measured"
        worst = max(self.windows, key=lambda w: abs(w["shift"]["chroma"] or 0))
        s = worst["shift"]
        parts = [f"chroma {_pct(s['chroma'])}", f"saturation {_pct(s['saturation'])}",
                 f"brightness {s['brightness']:+.1f} L", f"sharpness {_pct(s['sharpness'])}"]
        colour = [x["vde_colour"] for x in self.shots if x["vde_colour"] is not None]
        clarity = [x["vde_clarity"] for x in self.shots if x["vde_clarity"] is not None]
        line = (f"drift: window {worst['window']} against its shot's first: {', '.join(parts)};"
                f" VDE colour {max(colour, default=0):.3f}, clarity {max(clarity, default=0):.3f}")
        if self.seam_jump is not None and self.motion:
            line += f"; seams {self.seam_jump / self.motion:.1f}x the motion inside windows"
        return line + f" ({len(self.windows)} windows, {len(self.shots)} shots)"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def measure(frames: Callable[[int], np.ndarray] | list, windows: list[tuple[int, int, int, bool]]) -> Drift:
    """``frames``: output frames by index (uint8 RGB; a list or a function of the index);
    ``windows``: (shot, first frame, end, starts over) of each window in order, where
    ``starts over`` marks a window with no seam before it (the first, or a cut)."""
    get = frames.__getitem__ if not callable(frames) else frames
    cache: dict[int, np.ndarray] = {}

    def frame(k: int) -> np.ndarray:
        if k not in cache:
            if len(cache) > 8:  # a window's few frames at a time
                cache.clear()
            cache[k] = get(k)
        return cache[k]

    out = Drift()
    firsts: dict[int, dict] = {}
    seams, motions = [], []
    for index, (shot, start, end, fresh) in enumerate(windows):
        picks = _samples(start, end)
        if not picks:
            continue
        stats = [frame_stats(frame(k)) for k in picks]
        mean = {k: float(np.mean([s[k] for s in stats])) for k in STATS}
        pairs = [(k, k + 1) for k in picks if k + 1 < end]
        motion = [mean_abs_diff(frame(a), frame(b)) for a, b in pairs]
        seam = None if fresh or start == 0 else mean_abs_diff(frame(start - 1), frame(start))
        first = firsts.setdefault(shot, mean)
        shift = {"lab_mean": math.dist([mean[k] for k in "Lab"], [first[k] for k in "Lab"]),
                 "lab_std": float(np.mean([mean[f"{k}_std"] - first[f"{k}_std"] for k in "Lab"])),
                 "chroma": _rel(mean["chroma"], first["chroma"]),
                 "saturation": _rel(mean["saturation"], first["saturation"]),
                 "brightness": mean["L"] - first["L"], "sharpness": _rel(mean["sharpness"], first["sharpness"])}
        out.windows.append({"window": index, "shot": shot, **{k: _round(v) for k, v in mean.items()},
                            "shift": {k: _round(v) for k, v in shift.items()},
                            "seam": _round(seam), "motion": _round(float(np.mean(motion))) if motion else None})
        motions += motion
        if seam is not None:
            seams.append(seam)
    for shot in dict.fromkeys(w["shot"] for w in out.windows):
        mine = [w for w in out.windows if w["shot"] == shot]
        out.shots.append({"shot": shot, "windows": len(mine),
                          "vde_colour": _round(vde([w["chroma"] for w in mine])),
                          "vde_clarity": _round(vde([w["sharpness"] for w in mine]))})
    out.seam_jump = float(np.mean(seams)) if seams else None
    out.motion = float(np.mean(motions)) if motions else None
    return out


# --- the chart -------------------------------------------------------------------------
CHART_SERIES = (("chroma", (220, 60, 60)), ("saturation", (230, 150, 30)), ("sharpness", (60, 110, 220)))


def chart(drift: Drift, path: Path, size: tuple[int, int] = (480, 220)) -> Path:
    """A small line chart per window of the relative shift of chroma, saturation and
    sharpness against the shot's first window (PIL only); dashed lines where shots start."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 44, 10, 22, 24
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    rows = drift.windows
    values = [r["shift"][k] or 0.0 for r in rows for k, _ in CHART_SERIES]
    span = max([0.05] + [abs(v) for v in values]) * 1.1
    n = max(len(rows) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (left + (w - left - right) * i / n, top + (h - top - bottom) * (0.5 - v / (2 * span)))

    zero = xy(0, 0)[1]
    draw.line([(left, zero), (w - right, zero)], fill=(150, 150, 150))
    draw.rectangle([left, top, w - right, h - bottom], outline=(180, 180, 180))
    draw.text((2, top - 4), f"{span * 100:+.0f}%", fill=(90, 90, 90))
    draw.text((2, h - bottom - 8), f"{-span * 100:+.0f}%", fill=(90, 90, 90))
    for i, r in enumerate(rows):
        x = xy(i, 0)[0]
        if i and r["shot"] != rows[i - 1]["shot"]:
            for y in range(top, h - bottom, 6):
                draw.line([(x, y), (x, y + 3)], fill=(120, 120, 120))
        draw.text((x - 3, h - bottom + 4), str(r["window"]), fill=(90, 90, 90))
    legend = left
    for key, colour in CHART_SERIES:
        points = [xy(i, r["shift"][key] or 0.0) for i, r in enumerate(rows)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for p in points:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        draw.text((legend, 4), key, fill=colour)
        legend += 8 * len(key) + 16
    draw.text((w - right - 150, 4), "shift vs shot's first window", fill=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
