"""Deforum's hybrid video (2D/3D modes with ``hybrid_motion`` or ``hybrid_composite``): which
keys are read, which flow method runs, and the per-frame schedules. Pure (no OpenCV): the
motion itself is ``render.hybrid_motion``'s.

Deforum (hybrid_video.py, render.py): the video's frames are extracted as Video Input's are
(``config.source_video``'s rule) and ``max_frames`` becomes their number; before frame f is
generated its previous frame is moved by the camera, then by the video's motion from input
frame f-1 to f (flow scaled by ``hybrid_flow_factor_schedule``, or a RANSAC perspective/affine
fit), then blended with input frame f at ``hybrid_comp_alpha_schedule`` (``hybrid_composite``
Normal; Before Motion blends before the video's motion, After Generation blends the result).
Here that moved, blended frame is what a window's Time-to-Move guide follows.
"""
from __future__ import annotations

from dataclasses import dataclass

from .keys import HYBRID_COMPOSITES, HYBRID_KEYS, HYBRID_MOTIONS
from .schedule import ExprError, build_schedule
from .source_video import Extraction, VideoInfo, extraction_of
from .values import match_choice

# What opencv-python (no contrib) computes; the others fall back to DIS Medium, said once.
FLOW_METHODS = ("DIS Medium", "DIS Fine", "Farneback")
FALLBACK_FLOW = "DIS Medium"
_WHY = {"RAFT": "RAFT is a model this extension does not ship",
        "DenseRLOF": "cv2.optflow (opencv-contrib) is not installed", "SF": "cv2.optflow (opencv-contrib) is not installed",
        "DualTVL1": "cv2.optflow (opencv-contrib) is not installed", "DeepFlow": "cv2.optflow (opencv-contrib) is not"
        " installed", "PCAFlow": "cv2.optflow (opencv-contrib) is not installed"}
MODES_WITH_HYBRID = ("2D", "3D")


@dataclass(frozen=True)
class Hybrid:
    motion: str  # "None" | "Optical Flow" | "Perspective" | "Affine"
    flow_method: str  # the one that runs (FLOW_METHODS)
    use_prev_img: bool
    composite: str  # "None" | "Normal" | "Before Motion" | "After Generation"
    flow_factor: tuple[float, ...]  # per output frame
    alpha: tuple[float, ...]  # hybrid_comp_alpha_schedule per output frame
    path: str
    extraction: Extraction
    info: VideoInfo | None = None
    kept: tuple[int, ...] = ()  # output frame i is input frame kept[i], once the video was read

    @property
    def moves(self) -> bool:
        return self.motion != "None"

    def describe(self) -> str:
        """The motion source, as ``plan`` names it."""
        if not self.moves:
            return ""
        how = f"flow {self.flow_method}" if self.motion == "Optical Flow" else f"{self.motion.lower()} RANSAC fit"
        return f"video {how}" + (" from the moved frame" if self.use_prev_img else "")


def _composite(value) -> str:
    """Deforum's older files hold a flag here: true meant the blend after motion (Normal)."""
    if isinstance(value, bool) or value is None:
        return "Normal" if value else "None"
    return str(value)


def hybrid_keys(raw: dict) -> dict:
    """Deforum's hybrid keys, read through the key table (``keys.HYBRID_KEYS``)."""
    out = {}
    for key in HYBRID_KEYS:
        value = raw.get(key.name, key.default)
        out[key.name] = key.read(_composite(value) if key.name == "hybrid_composite" else value)
    return out


def hybrid_video_of(raw: dict) -> str | None:
    """The video a 2D/3D render's hybrid motion or composite reads, else None."""
    if str(raw.get("animation_mode")) not in MODES_WITH_HYBRID:
        return None
    # without raising: a misspelt value is refused by the settings reader (read_hybrid), in one line
    motion = match_choice(raw.get("hybrid_motion", "None"), HYBRID_MOTIONS)
    composite = match_choice(_composite(raw.get("hybrid_composite", "None")), HYBRID_COMPOSITES)
    if motion in (None, "None") and composite in (None, "None"):
        return None
    return str(raw.get("video_init_path") or "")


def read_hybrid(raw: dict, label: str, max_frames: int, seed: int, warnings: list[str],
                video: tuple | None = None) -> Hybrid:
    """The hybrid settings, with what Wan does differently from Deforum said in ``warnings``;
    ``video``: the video's (path, probe, kept frames) once read."""
    keys = hybrid_keys(raw)
    method = keys["hybrid_flow_method"]
    if keys["hybrid_motion"] == "Optical Flow" and method not in FLOW_METHODS:
        warnings.append(f"hybrid_flow_method {method}: {_WHY[method]}; {FALLBACK_FLOW} (OpenCV) computes the flow")
        method = FALLBACK_FLOW
    if keys["hybrid_composite"] != "None":
        if keys["hybrid_comp_mask_type"] != "None":
            warnings.append(f"hybrid_comp_mask_type {keys['hybrid_comp_mask_type']} is not applied: the whole"
                            " video frame is blended at hybrid_comp_alpha_schedule")
        if keys["hybrid_composite"] == "After Generation":
            warnings.append("hybrid_composite After Generation: the video frame is blended into the guide as"
                            " Normal blends it (Wan's frames themselves are not blended)")
        if keys["hybrid_use_init_image"]:
            warnings.append("hybrid_use_init_image is not applied: the video frame is blended")
    if keys["hybrid_use_first_frame_as_init_image"]:
        warnings.append("hybrid_use_first_frame_as_init_image is not applied: save the video's first frame and"
                        " set use_init and init_image to start from it")
    if keys["hybrid_motion"] == "Optical Flow" and keys["hybrid_flow_consistency"]:
        warnings.append("hybrid_flow_consistency is not applied: the flow is used as computed")
    factor = build_schedule(raw.get("hybrid_flow_factor_schedule", "0:(1)"), max_frames, seed,
                            "hybrid_flow_factor_schedule")
    alpha = build_schedule(raw.get("hybrid_comp_alpha_schedule", "0:(0.5)"), max_frames, seed,
                           "hybrid_comp_alpha_schedule")
    if any(not (0 <= v <= 1) for v in alpha.values):
        raise ExprError("hybrid_comp_alpha_schedule: values must be between 0 and 1")
    extraction = extraction_of(raw, label)
    path, info, kept = video[:3] if video is not None else (str(raw.get("video_init_path") or ""), None, ())
    return Hybrid(keys["hybrid_motion"], method, keys["hybrid_motion_use_prev_img"], keys["hybrid_composite"],
                  tuple(factor.values), tuple(alpha.values), str(path), extraction, info, tuple(kept))
