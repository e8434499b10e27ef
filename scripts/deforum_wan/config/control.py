"""A control video for VACE: Deforum's ControlNet units that take a video (``cn_1_*`` to ``cn_5_*``)
or the ``wan_control`` key become the one control video a VACE window is shown, of a kind
(depth, canny, gray, flow), its strength diffusers' ``conditioning_scale`` from the unit's weight.

Which of its frames are used is Deforum's rule for ControlNet videos (deforum_controlnet.py,
process_controlnet_input_frames): under Video Input the video's own extract_* keys, otherwise
frames 0 to max_frames - 1; output frame i is conditioned on the i-th frame kept.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SettingsError
from .keys import CONTROL_KINDS as KINDS  # noqa: F401
from .schedule import ExprError, build_schedule
from .source_video import Extraction, VideoInfo, VideoRefused, extraction_of, kept_frames

UNITS = 5  # Deforum's ControlNet tabs (cn_1 .. cn_5)
# Why there is no pose control: said in the one line that refuses it.
NO_POSE = ("pose control is not available: OpenPose's models (sd-webui-controlnet's openpose,"
           " controlnet_aux) are licensed for non-commercial research only, and no permissively licensed"
           " pose estimator is wired in; use depth, canny, gray or flow")
# sd-webui-controlnet's depth preprocessors -> Deforum's depth_algorithm whose model stands for it
_DEPTH_OF_MODULE = {"depth_zoe": "Zoe", "depth_anything_v2": "Depth-Anything-V2-small"}


@dataclass(frozen=True)
class ControlVideo:
    kind: str  # one of KINDS but pose
    path: str
    key: str  # the key that named the video: cn_1_vid_path ... or wan_control
    weight: tuple[float, ...]  # conditioning_scale per output frame
    depth_algorithm: str = "Midas-3-Hybrid"  # kind depth: the model that estimates it
    info: VideoInfo | None = None
    kept: tuple[int, ...] = ()  # output frame i is conditioned on frame kept[i]; () until read


def kind_of_module(module: str) -> str | None:
    """The control kind of a sd-webui-controlnet preprocessor name, or None."""
    name = str(module or "").strip().lower()
    if name.startswith("depth"):
        return "depth"
    if name.startswith("canny"):
        return "canny"
    if name.startswith("recolor"):  # ControlNet's recolour: the frame's luminance
        return "gray"
    if "openpose" in name or name.startswith("dw_"):
        return "pose"
    return None


def _on(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes", "on")


def _used(raw: dict, i: int) -> bool:
    """Unit ``i`` is on and reads its video (loopback mode reads the previous frame instead)."""
    return _on(raw.get(f"cn_{i}_enabled", False)) and not _on(raw.get(f"cn_{i}_loopback_mode", False))


def requested(raw: dict, wan_control: dict | None, label: str) -> tuple[str, dict] | None:
    """(key, {kind, video, weight, depth_algorithm}) of the one control video these settings ask
    for, or None; more than one, an unknown preprocessor or pose is one SettingsError line."""
    found = []
    if wan_control:
        found.append(("wan_control", dict(wan_control, depth_algorithm=raw.get("depth_algorithm", "Midas-3-Hybrid"))))
    for i in range(1, UNITS + 1):
        video = str(raw.get(f"cn_{i}_vid_path") or "").strip()
        if not _used(raw, i) or not video:
            continue
        module = raw.get(f"cn_{i}_module", "none")
        kind = kind_of_module(module)
        if kind is None:
            raise SettingsError(f"cn_{i}_module {module!r} has no VACE control here; use a depth_*, canny or"
                                " recolor_* preprocessor (or wan_control with depth, canny, gray or flow)", label)
        found.append((f"cn_{i}_vid_path", {"kind": kind, "video": video, "weight": raw.get(f"cn_{i}_weight", "0:(1)"),
                                           "depth_algorithm": _DEPTH_OF_MODULE.get(str(module).strip().lower(),
                                                                                   "Midas-3-Hybrid")}))
    if len(found) > 1:
        raise SettingsError(f"VACE takes one control video; {' and '.join(k for k, _ in found)} each give one:"
                            " enable only one", label)
    if found and found[0][1]["kind"] == "pose":
        raise SettingsError(f"{found[0][0]}: {NO_POSE}", label)
    return found[0] if found else None


def control_paths(raw: dict, wan_control) -> list[tuple[str, str]]:
    """(key, path) of every control video named: the input files a job's confinement checks."""
    out = [(f"cn_{i}_vid_path", str(raw.get(f"cn_{i}_vid_path") or "").strip()) for i in range(1, UNITS + 1)
           if _used(raw, i)]
    if isinstance(wan_control, dict) and wan_control.get("video"):
        out.append(("wan_control", str(wan_control["video"])))
    return [(k, v) for k, v in out if v]


def with_path(raw: dict, key: str, path: str) -> None:
    """``raw`` naming ``path`` for ``key``'s control video (the file that was checked or read)."""
    if key != "wan_control":
        raw[key] = path
        return
    from .keys import BY_NAME

    raw["wan_control"] = dict(BY_NAME["wan_control"].read(raw["wan_control"]), video=path)


def extraction_for(raw: dict, max_frames: int, video_input: bool, label: str) -> Extraction:
    """Deforum's extraction of a ControlNet video: the Video Input keys, else the first max_frames."""
    return extraction_of(raw, label) if video_input else Extraction(0, max_frames - 1, 1)


def read_control(raw: dict, key: str, path: Path, needed: int, video_input: bool, label: str
                 ) -> tuple[VideoInfo, list[int]]:
    """The control video's probe and kept frames (through the source-video bounds); a video that
    gives fewer than ``needed`` frames is one line."""
    extraction = extraction_for(raw, needed, video_input, label)
    try:
        info, kept = kept_frames(path, extraction, label)
    except VideoRefused as exc:
        raise VideoRefused(f"{key}: {exc.detail}", label) from None
    if len(kept) < needed:
        raise VideoRefused(f"{key} {path.name} gives {len(kept)} frames, the render {needed}; the control video"
                           " must last as long as the render", label)
    return info, kept[:needed]


def control_path(text: str, key: str, base, label: str) -> Path:
    if "://" in text:
        raise SettingsError(f"{key} {text[:120]!r} is a URL (the render reads local files only)", label)
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None and not os.path.exists(path):
        path = Path(base) / path
    return path


def control_video(raw: dict, wan_control: dict | None, max_frames: int, seed: int, label: str,
                  probed: tuple | None) -> ControlVideo | None:
    """The settings' control video, its weight per output frame; with its probe when read."""
    asked = requested(raw, wan_control, label)
    if asked is None:
        return None
    key, spec = asked
    weight = spec.get("weight", 1.0)
    try:
        series = build_schedule(weight if isinstance(weight, str) else f"0:({float(weight)})", max_frames, seed,
                                key.replace("vid_path", "weight"))
    except (ExprError, ValueError, TypeError) as exc:
        raise SettingsError(f"{key.replace('vid_path', 'weight')}: {exc}", label) from None
    if any(not 0 <= v <= 10 for v in series.values):
        raise SettingsError(f"{key.replace('vid_path', 'weight')}: the control strength must be 0 to 10", label)
    info, kept = probed if probed is not None else (None, ())
    return ControlVideo(spec["kind"], str(spec["video"]), key, tuple(series.values), spec["depth_algorithm"],
                        info, tuple(kept))


def read_requested_control(data: dict, label: str, base, video_kept: list[int] | None,
                           default_frames: int = 120) -> tuple[VideoInfo, list[int]] | None:
    """Probe the control video ``data`` asks for (``video_kept``: a Video Input's kept frames, or
    None): its probe and kept frames, ``data`` naming the file read; None without one."""
    from .keys import BY_NAME

    try:
        wan_control = BY_NAME["wan_control"].read(data.get("wan_control"))
        needed = len(video_kept) if video_kept is not None else int(data.get("max_frames", default_frames))
    except (ExprError, TypeError, ValueError) as exc:
        raise SettingsError(str(exc), label) from None
    asked = requested(data, wan_control, label)
    if asked is None:
        return None
    key, spec = asked
    path = control_path(spec["video"], key, base, label)
    probed = read_control(data, key, path, max(needed, 1), video_kept is not None, label)
    with_path(data, key, str(path))
    return probed
