"""Deforum's camera, read exactly: the per-output-frame 2D and 3D warp steps of a settings
file (their matrices and offset fields), the steps from a window's first frame to any
(fractional) output time, and where they carry points. ``render.warp`` applies them to images.

Deforum moves its canvas once per output frame (``animation.py``): frame i is frame i-1 warped
by the step of frame i, then diffused. A settings file therefore defines an exact sequence of
image warps that needs no model. Conventions kept from Deforum:

- 2D: rotation about the transform centre with zoom (``cv2.getRotationMatrix2D``) after a
  translation in pixels per frame (``render.warp`` warps forward with ``cv2.warpPerspective``,
  border ``replicate``/``wrap``). With ``enable_perspective_flip`` Deforum computes
  ``np.matmul(bM, rot, trans)``: the third argument is numpy's ``out``, so Deforum drops the
  translation; here it is applied, as meant (``quirks`` says so).
- 3D: translation /200, rotation X·Y·Z, a field of view camera whose aspect is the
  ``aspect_ratio_schedule`` (W/H only with ``aspect_ratio_use_old_formula``); near and far
  cancel out of x and y. Depth is normalised, histogram-equalised and mapped to z per depth
  algorithm (MiDaS: 2 - d, others: d + 1); z = 1 (a flat plane) when depth warping is off.
  ``render.warp`` samples the offset field as Deforum does. The x direction is opposite to 2D's.

Pure numpy; OpenCV, when present, makes the flip's matrix (the bits Deforum gets).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .schedule import ExprError, build_schedule

MODES = ("2D", "3D")
# Deforum's defaults (args.py) for the keys the camera reads: a file without animation_mode
# is 2D, with Deforum's default zoom.
CAMERA_DEFAULTS: dict[str, object] = {
    "animation_mode": "2D", "border": "replicate", "angle": "0: (0)", "zoom": "0: (1.0025+0.002*sin(1.25*3.14*t/30))",
    "translation_x": "0: (0)", "translation_y": "0: (0)", "translation_z": "0: (1.75)",
    "transform_center_x": "0: (0.5)", "transform_center_y": "0: (0.5)",
    "rotation_3d_x": "0: (0)", "rotation_3d_y": "0: (0)", "rotation_3d_z": "0: (0)",
    "enable_perspective_flip": False, "perspective_flip_theta": "0: (0)", "perspective_flip_phi": "0: (0)",
    "perspective_flip_gamma": "0: (0)", "perspective_flip_fv": "0: (53)",
    "fov_schedule": "0: (70)", "aspect_ratio_schedule": "0: (1)", "aspect_ratio_use_old_formula": False,
    "near_schedule": "0: (200)", "far_schedule": "0: (10000)",
    "use_depth_warping": True, "depth_algorithm": "Midas-3-Hybrid", "midas_weight": 0.2,
    "padding_mode": "border", "sampling_mode": "bicubic", "strength_schedule": "0: (0.65)",
}
_SCHEDULES_2D = ("angle", "zoom", "translation_x", "translation_y", "transform_center_x", "transform_center_y")
_SCHEDULES_3D = ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                 "rotation_3d_z", "fov_schedule", "aspect_ratio_schedule", "near_schedule", "far_schedule")
_FLIP = ("perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv")
STILL = {"angle": 0.0, "zoom": 1.0, "translation_x": 0.0, "translation_y": 0.0, "translation_z": 0.0,
         "rotation_3d_x": 0.0, "rotation_3d_y": 0.0, "rotation_3d_z": 0.0}
TRANSLATION_SCALE = 1.0 / 200.0  # Deforum's 3D translation unit ("matches Disco")
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")
PADDING_MODES = ("border", "zeros", "reflection")


class SingularCamera(ExprError):
    """A camera step that cannot be undone: the settings are refused (not left still)."""


def _truthy(value) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on") if isinstance(value, str) else bool(value)


# --- one step ----------------------------------------------------------------------------

def flip_matrix(W: int, H: int, theta: float, phi: float, gamma: float, fv: float) -> np.ndarray:
    """Deforum's perspective-flip homography (``get_flip_perspective_matrix``): the image plane
    turned by phi (x), gamma (y), theta (z) degrees and seen through a ``fv`` degree lens.
    With OpenCV its own calls (the bits Deforum gets); without, numpy's (the plan's summaries)."""
    half = np.deg2rad(fv / 2.0)
    d = np.sqrt(W * W + H * H)
    side = d / np.cos(half)
    h = d / (2.0 * np.sin(half))
    near, far = h - d / 2.0, h + d / 2.0
    shift = np.eye(4)
    shift[2, 3] = -h
    proj = np.eye(4)
    proj[0, 0] = proj[1, 1] = 1.0 / np.tan(half)
    proj[2, 2] = -(far + near) / (far - near)
    proj[2, 3] = -(2.0 * far * near) / (far - near)
    proj[3, 2] = -1.0
    full = proj @ shift @ _rotation_4x4(phi, gamma, theta)
    corners = np.array([[[-W / 2.0, H / 2.0, 0.0], [W / 2.0, H / 2.0, 0.0], [W / 2.0, -H / 2.0, 0.0],
                         [-W / 2.0, -H / 2.0, 0.0]]])
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        out = cv2.perspectiveTransform(corners, full)
    else:
        homog = np.c_[corners[0], np.ones(4)] @ full.T
        out = (homog[:, :3] / homog[:, 3:])[None]
    pin = (corners[0, :, :2] + [W / 2.0, H / 2.0]).astype(np.float32)
    pout = ((out[0, :, :2] + [1.0, 1.0]) * (0.5 * side)).astype(np.float32)
    m33 = cv2.getPerspectiveTransform(pin, pout) if cv2 is not None else _perspective_from_points(pin, pout)
    post = np.vstack([np.float32([[1, 0, (W - side) / 2], [0, 1, (H - side) / 2]]), [0, 0, 1]])
    return np.matmul(m33, post)


def _flip_det(W: int, H: int, flip: tuple) -> float:
    """The flip homography's determinant relative to its scale (NaN when it cannot be made)."""
    try:
        with np.errstate(all="ignore"):
            m = flip_matrix(W, H, *flip)
            return float(np.linalg.det(m / np.abs(m).max())) if np.isfinite(m).all() else math.nan
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError, Exception):  # cv2.error for a degenerate quad
        return math.nan


def _perspective_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The homography taking 4 points to 4 others (``cv2.getPerspectiveTransform``'s system)."""
    A, b = np.zeros((8, 8)), np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src.astype(np.float64), dst.astype(np.float64))):
        A[i] = [x, y, 1, 0, 0, 0, -x * u, -y * u]
        A[i + 4] = [0, 0, 0, x, y, 1, -x * v, -y * v]
        b[i], b[i + 4] = u, v
    return np.append(np.linalg.solve(A, b), 1.0).reshape(3, 3)


def _rotation_about(cx: float, cy: float, angle: float, scale: float) -> np.ndarray:
    """``cv2.getRotationMatrix2D`` (the same double arithmetic)."""
    a = math.cos(angle * math.pi / 180) * scale
    b = math.sin(angle * math.pi / 180) * scale
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy]])


def _rotation_4x4(phi: float, gamma: float, theta: float) -> np.ndarray:
    phi, gamma, theta = (np.deg2rad(v) for v in (phi, gamma, theta))
    rx, ry, rz = np.eye(4), np.eye(4), np.eye(4)
    rx[1, 1] = rx[2, 2] = np.cos(phi)
    rx[1, 2], rx[2, 1] = -np.sin(phi), np.sin(phi)
    ry[0, 0] = ry[2, 2] = np.cos(gamma)
    ry[0, 2], ry[2, 0] = np.sin(gamma), -np.sin(gamma)
    rz[0, 0] = rz[1, 1] = np.cos(theta)
    rz[0, 1], rz[1, 0] = -np.sin(theta), np.sin(theta)
    return rx @ ry @ rz


def matrix_2d(p: dict, W: int, H: int, flip: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The 3x3 forward map of one 2D step (``anim_frame_warp_2d``): dst(M p) = src(p)."""
    rot = np.vstack([_rotation_about(W * p["transform_center_x"], H * p["transform_center_y"], p["angle"],
                                     p["zoom"]), [0, 0, 1]])
    trans = np.vstack([np.float32([[1, 0, p["translation_x"]], [0, 1, p["translation_y"]]]), [0, 0, 1]])
    # Deforum's matmul(bM, rot, trans) meant this product (numpy takes trans as its out buffer)
    return flip_matrix(W, H, *flip) @ rot @ trans if flip is not None else rot @ trans


def rotation_3d(rx: float, ry: float, rz: float) -> np.ndarray:
    """Deforum's (pytorch3d's) ``euler_angles_to_matrix(radians, "XYZ")`` in float32: Rx @ Ry @ Rz."""
    mats = []
    for axis, deg in (("X", rx), ("Y", ry), ("Z", rz)):
        angle = np.float32(math.radians(deg))
        c, s, one, zero = np.cos(angle), np.sin(angle), np.float32(1), np.float32(0)
        mats.append(np.array({"X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
                              "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
                              "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis], np.float32))
    return mats[0] @ mats[1] @ mats[2]


def _projection(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """pytorch3d's FoVPerspectiveCameras matrix, transposed for row vectors, in float32 (near and
    far cancel out of x and y, up to the last bits, which this keeps as Deforum has them)."""
    f32 = np.float32
    tan_half = np.tan(f32(np.pi / 180) * f32(fov_deg) / f32(2))
    near, far = f32(near), f32(far)
    max_y = tan_half * near
    max_x = max_y * f32(aspect)
    K = np.zeros((4, 4), np.float32)
    K[0, 0] = f32(2.0) * near / (max_x - (-max_x))
    K[1, 1] = f32(2.0) * near / (max_y - (-max_y))
    K[3, 2] = 1
    K[2, 2] = far / (far - near)
    K[2, 3] = -(far * near) / (far - near)
    return K.T


def offsets_3d(p: dict, z: np.ndarray, aspect: float) -> np.ndarray:
    """(h, w, 2) offsets in grid units of one 3D step (``transform_image_3d_new``): where each
    pixel's world point (x, y, z) projects after the camera moved, minus where it did; composed
    and applied as pytorch3d does (world-to-view then projection, one 4x4 matrix, float32)."""
    h, w = z.shape
    y, x = np.meshgrid(linspace(h), linspace(w), indexing="ij")
    return _point_offsets(p, x.ravel(), y.ravel(), z.astype(np.float32).ravel(), aspect).reshape(h, w, 2)


def _point_offsets(p: dict, x: np.ndarray, y: np.ndarray, z: np.ndarray, aspect: float) -> np.ndarray:
    """(n, 2) offsets of world points (x, y, z) in one 3D step, in the points' float type
    (float32: Deforum's bits; float64: the plan's point-following)."""
    dtype = x.dtype
    view = np.eye(4, dtype=dtype)
    view[:3, :3] = rotation_3d(p["rotation_3d_x"], p["rotation_3d_y"], p["rotation_3d_z"])
    view[3, :3] = np.array([-p["translation_x"] * TRANSLATION_SCALE, p["translation_y"] * TRANSLATION_SCALE,
                            -p["translation_z"] * TRANSLATION_SCALE], np.float32)
    proj = _projection(p["fov_schedule"], aspect, p.get("near_schedule", 200.0), p.get("far_schedule", 10000.0))
    points = np.stack([x, y, z, np.ones_like(x)], axis=1)
    new, old = points @ (view @ proj.astype(dtype)), points @ proj.astype(dtype)
    return (new[:, :2] / new[:, 3:] - old[:, :2] / old[:, 3:]).astype(dtype)


def depth_to_z(depth: np.ndarray | None, algorithm: str) -> np.ndarray | None:
    """Deforum's depth -> z: normalised to [0, 1], histogram-equalised (1024 bins), then
    2 - d for MiDaS (disparity) and d + 1 for metric depth (Zoe, AdaBins, LeReS) and
    Depth-Anything (as the Tok fork maps it: 2.3 - d). None: no usable depth (flat z = 1)."""
    if depth is None:
        return None
    d = np.asarray(depth, np.float64)
    if not np.isfinite(d).all() or d.min() == d.max():
        return None  # Deforum's own rule: a broken depth map gives a flat plane
    d = (d - d.min()) / (d.max() - d.min())
    hist, edges = np.histogram(d, bins=1024, range=(0, 1))
    cdf = hist.cumsum()
    d = np.interp(d, edges[:-1], cdf / float(cdf[-1]))
    name = algorithm.lower()
    if name.startswith("midas"):
        return (2.0 - d).astype(np.float32)
    if name.startswith("depth-anything"):
        return (2.3 - d).astype(np.float32)
    return (d + 1.0).astype(np.float32)


# --- a settings file's camera ----------------------------------------------------------------

@dataclass
class Camera:
    """Every per-frame camera value of a settings file, and the step of each frame."""

    mode: str  # "2D" | "3D" | "None" (no camera: every path is the identity)
    W: int
    H: int
    series: dict[str, list[float]]
    flip: bool = False
    border: str = "replicate"
    depth_warping: bool = False
    depth_algorithm: str = "Midas-3-Hybrid"
    aspect_old_formula: bool = False
    sampling_mode: str = "bicubic"
    padding_mode: str = "border"
    quirks: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(cls, raw: dict, max_frames: int, W: int, H: int, seed: int = 0,
                      series: dict[str, list[float]] | None = None) -> Camera:
        """``series``: per-frame values (a Parseq manifest's) that replace the file's schedules."""
        get = lambda key: raw.get(key, CAMERA_DEFAULTS.get(key))  # noqa: E731
        given = series or {}
        mode = str(get("animation_mode"))
        if mode not in MODES:
            return cls("None", W, H, {})
        names = set(_SCHEDULES_2D if mode == "2D" else _SCHEDULES_3D) | {"strength_schedule"}
        flip = _truthy(get("enable_perspective_flip"))
        if flip:
            names |= set(_FLIP)
        series = {}
        for name in sorted(names):
            if name in given:
                series[name] = [float(v) for v in given[name]]
                continue
            try:
                series[name] = build_schedule(get(name), max_frames, seed, name).values
            except ExprError as exc:
                raise ExprError(f"camera: {exc}") from None
        camera = cls(mode, W, H, series, flip=flip, border=str(get("border")),
                     depth_warping=mode == "3D" and _truthy(get("use_depth_warping")),
                     depth_algorithm=str(get("depth_algorithm")),
                     aspect_old_formula=_truthy(get("aspect_ratio_use_old_formula")),
                     sampling_mode=_pick(get("sampling_mode"), SAMPLING_MODES),
                     padding_mode=_pick(get("padding_mode"), PADDING_MODES))
        camera.check_invertible()
        if flip and mode == "2D" and any(series[k][i] for k in ("translation_x", "translation_y")
                                         for i in range(max_frames)):
            camera.quirks.append("2D perspective flip: Deforum drops translation_x/y while the flip is on"
                                 " (np.matmul's third argument is its output buffer); this path moves by them,"
                                 " as meant")
        return camera

    def check_invertible(self) -> None:
        """Every step can be undone (the planner follows points back through them): a zoom of 0,
        a perspective flip seen edge-on or a field of view of 0 or 180 degrees is one ExprError
        line naming the frame, not a LinAlgError or NaNs later."""
        n = len(next(iter(self.series.values()), []))
        if self.mode == "2D":
            flips: dict[tuple, float] = {}
            for i in range(n):
                zoom = self.series["zoom"][i]
                if not math.isfinite(zoom) or abs(zoom) < 1e-9:
                    raise SingularCamera(f"camera: zoom {zoom:g} at frame {i} makes the 2D warp singular")
                flip = self.flip_at(i)
                if flip is None:
                    continue
                if flip not in flips:
                    flips[flip] = _flip_det(self.W, self.H, flip)
                if not math.isfinite(flips[flip]) or abs(flips[flip]) < 1e-14:  # exactly edge-on, not nearly
                    theta, phi, gamma, fv = flip
                    raise SingularCamera(f"camera: perspective flip theta {theta:g}, phi {phi:g}, gamma {gamma:g}, fv"
                                    f" {fv:g} at frame {i} makes the 2D warp singular")
        elif self.mode == "3D":
            for i in range(n):
                fov = self.series["fov_schedule"][i]
                if not 0 < fov < 180:
                    raise SingularCamera(f"camera: fov {fov:g} at frame {i} makes the 3D projection singular"
                                    " (it must be between 0 and 180 degrees)")
                near, far = self.series["near_schedule"][i], self.series["far_schedule"][i]
                if not math.isfinite(far - near) or far == near or (not self.aspect_old_formula
                                                                    and self.series["aspect_ratio_schedule"][i] == 0):
                    raise SingularCamera(f"camera: near {near:g}, far {far:g}, aspect"
                                    f" {self.series['aspect_ratio_schedule'][i]:g} at frame {i} make the 3D"
                                    " projection singular")

    def scaled(self, W: int, H: int) -> Camera:
        """The same camera on a W x H frame (a small preview): 2D translations are pixels, so
        they scale with the frame; 3D and everything else is independent of the size."""
        series = dict(self.series)
        if self.mode == "2D":
            for key, factor in (("translation_x", W / self.W), ("translation_y", H / self.H)):
                series[key] = [v * factor for v in self.series[key]]
        return Camera(self.mode, W, H, series, self.flip, self.border, self.depth_warping, self.depth_algorithm,
                      self.aspect_old_formula, self.sampling_mode, self.padding_mode, list(self.quirks))

    @property
    def moves(self) -> bool:
        if self.mode == "None":
            return False
        return self.flip or any(abs(v - STILL[k]) > 1e-12 for k, vals in self.series.items() if k in STILL
                                for v in vals)

    def params(self, frame: int, fraction: float = 1.0) -> dict:
        """The step of output frame ``frame`` (>= 1); ``fraction`` < 1 is that part of it
        (angles and translations scaled, zoom as a power), for output times between frames."""
        i = min(frame, len(next(iter(self.series.values()))) - 1)
        p = {k: v[i] for k, v in self.series.items()}
        if fraction != 1.0:
            for k in ("angle", "translation_x", "translation_y", "translation_z",
                      "rotation_3d_x", "rotation_3d_y", "rotation_3d_z"):
                if k in p:
                    p[k] *= fraction
            if "zoom" in p:
                p["zoom"] = math.copysign(abs(p["zoom"]) ** fraction, p["zoom"])
        return p

    def flip_at(self, frame: int) -> tuple[float, float, float, float] | None:
        if not self.flip:
            return None
        i = min(frame, len(self.series[_FLIP[0]]) - 1)
        return tuple(self.series[k][i] for k in _FLIP)  # type: ignore[return-value]

    def aspect(self, frame: int) -> float:
        if self.aspect_old_formula:
            return self.W / self.H
        return self.series["aspect_ratio_schedule"][min(frame, len(self.series["aspect_ratio_schedule"]) - 1)]

    def cuts(self) -> list[int]:
        """Frames where Deforum starts over (strength 0: a fresh txt2img frame)."""
        strength = self.series.get("strength_schedule") or []
        return [i for i in range(1, len(strength)) if strength[i] <= 0]

    def steps(self, start: float, end: float) -> list[tuple[int, float]]:
        """The (frame, fraction) steps that carry output time ``start`` to ``end`` (start <= end):
        whole frames, and a partial step at either end when a time falls between frames."""
        out: list[tuple[int, float]] = []
        t = start
        while t < end - 1e-9:
            frame = math.floor(t + 1e-9) + 1  # the step that leads to output frame ``frame``
            stop = min(float(frame), end)
            out.append((frame, stop - t))
            t = stop
        return out


def _pick(value, options: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    return text if text in options else options[0]


def linspace(n: int) -> np.ndarray:
    """``torch.linspace(-1, 1, n)`` to the bit (float32, filled from both ends)."""
    f32 = np.float32
    if n == 1:
        return np.array([-1.0], np.float32)
    step = np.float64(f32(2.0) / f32(n - 1))
    i = np.arange(n)
    # torch fills the halves from each end with a fused multiply-add (one rounding): in float64
    return np.where(i < n // 2, -1.0 + step * i, 1.0 - step * (n - 1 - i)).astype(np.float32)


# --- a window's camera in numbers ---------------------------------------------------------------

def summarize(camera: Camera, start: float, end: float, grid: int = 32) -> dict:
    """Net zoom, pan (% of the width and height), degrees of rotation and the share of the frame
    still covered by the frame at ``start``, from output time ``start`` to ``end``. A grid of
    end-frame points is carried back through the steps (2D: the inverse homography; 3D, flat
    depth: each step's own backward sampling map), so it costs microseconds."""
    if camera.mode == "None" or end <= start:
        return {"zoom": 1.0, "pan_x": 0.0, "pan_y": 0.0, "rotation": 0.0, "coverage": 1.0}
    w, h = camera.W, camera.H
    ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid * h, (np.arange(grid) + 0.5) / grid * w, indexing="ij")
    pts = np.stack([xs.ravel(), ys.ravel()], axis=1)
    src = source_points(camera, np.vstack([pts, [[w / 2.0, h / 2.0]]]), start, end)
    src, centre = src[:-1], src[-1]
    inside = (src[:, 0] >= 0) & (src[:, 0] <= w) & (src[:, 1] >= 0) & (src[:, 1] <= h)
    finite = np.isfinite(src).all(axis=1)
    if finite.sum() < 2 or not np.isfinite(centre).all():
        return {"zoom": 0.0, "pan_x": 0.0, "pan_y": 0.0, "rotation": 0.0, "coverage": 0.0}
    # robust: a point the camera carries off to infinity must not set the zoom
    spread = lambda p: float(np.median(np.linalg.norm(p - np.median(p, axis=0), axis=1)))  # noqa: E731
    zoom = float(spread(pts[finite]) / max(spread(src[finite]), 1e-12))
    d_end, d_src = pts[-1] - pts[0], src[-1] - src[0]
    rotation = math.degrees(math.atan2(d_end[1], d_end[0]) - math.atan2(d_src[1], d_src[0]))
    return {"zoom": round(zoom, 4), "pan_x": round(float(w / 2 - centre[0]) / w * 100, 2),
            "pan_y": round(float(h / 2 - centre[1]) / h * 100, 2),
            "rotation": round((rotation + 180) % 360 - 180, 2), "coverage": round(float(inside.mean()), 3)}


def still(summary: dict) -> bool:
    """A window over which the camera does not move (``summarize``'s figures)."""
    return (not summary or (abs(summary["zoom"] - 1) < 1e-4 and abs(summary["pan_x"]) < 0.01
                            and abs(summary["pan_y"]) < 0.01 and abs(summary["rotation"]) < 0.01
                            and summary["coverage"] >= 1))


def describe(summary: dict) -> str:
    """A few words for a prompt: "camera zooms in, pans left" (empty when nearly still).
    ``summarize``'s pan is the content's move (positive: right, down): the camera goes the
    other way; its rotation is on screen (y down), negative counterclockwise."""
    if still(summary):
        return ""
    parts = []
    zoom, pan_x, pan_y, rotation = summary["zoom"], summary["pan_x"], summary["pan_y"], summary["rotation"]
    if abs(zoom - 1) >= 0.01:
        parts.append("camera zooms in" if zoom > 1 else "camera zooms out")
    if abs(pan_x) >= 1:
        parts.append("pans left" if pan_x > 0 else "pans right")
    if abs(pan_y) >= 1:
        parts.append("tilts up" if pan_y > 0 else "tilts down")
    if abs(rotation) >= 1:
        parts.append("the view turns " + ("counterclockwise" if rotation < 0 else "clockwise"))
    if parts and not parts[0].startswith("camera"):
        parts[0] = "camera " + parts[0]
    return ", ".join(parts)


def source_points(camera: Camera, pts: np.ndarray, start: float, end: float) -> np.ndarray:
    """Where the content at ``pts`` (pixels of the frame at ``end``) was at ``start``."""
    w, h = camera.W, camera.H
    steps = camera.steps(start, end)
    if camera.mode == "2D":
        M = np.eye(3)
        for frame, fraction in steps:
            M = matrix_2d(camera.params(frame, fraction), w, h, camera.flip_at(frame)) @ M
        homog = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(M).T
        with np.errstate(divide="ignore", invalid="ignore"):
            return homog[:, :2] / homog[:, 2:3]
    gx, gy = (2 * pts[:, 0]) / w - 1, (2 * pts[:, 1]) / h - 1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for frame, fraction in reversed(steps):
            off = _point_offsets(camera.params(frame, fraction), gx, gy, np.ones_like(gx), camera.aspect(frame))
            gx, gy = gx - off[:, 0], gy - off[:, 1]
    return np.stack([(gx + 1) * w / 2, (gy + 1) * h / 2], axis=1)
