"""Deforum settings file (or dict) -> validated ``RenderSettings``.

Reads what real Deforum files hold (docs/settings.md): Deforum's
defaults for missing keys, the legacy ``animation_prompts``, ``--neg``, the
positive/negative prompt fields, keys that are expressions, Deforum's own
deprecated keys, and our ``wan_*`` keys. Unknown keys are kept and written back,
so a settings file round-trips through this tool and through Deforum.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError, WanError
from ..models.file_models import resolve_model
from ..models.registry import ModelSpec
from . import prompt_text, values
from .camera import CAMERA_DEFAULTS, STILL, Camera, SingularCamera
from .control import ControlVideo, control_video, read_requested_control
from .files import FileRefused, read_limited
from .hybrid import MODES_WITH_HYBRID, Hybrid, hybrid_keys, hybrid_video_of, read_hybrid
from .keyframes import Keyframe, read_keyframes
from .keys import (  # noqa: F401
    BACKENDS,
    COLOR_MODES,
    KEYS,
    OFFLOAD_MODES,
    RETIME_MODES,
    WAN_ALIASES,
    WAN_DEFAULTS,
    preset_overrides,
    read_all,
)
from .parseq import Manifest, read_manifest
from .schedule import MAX_SEED, SEED_BEHAVIORS, ExprError, Schedule, build_schedule, parse_frame_key
from .source_video import Extraction, VideoInfo, VideoRefused, extraction_of, kept_frames, probe

MAX_FILE_BYTES = 16 * 1024 * 1024  # real run-saved files reach ~1 MB (per-frame schedules)
TIMESTRING_RE = re.compile(r"^\d{14}\Z")  # \Z: "$" would also accept a trailing newline

# Deforum's defaults (args.py) for the keys this tool reads.
DEFORUM_DEFAULTS: dict[str, Any] = {
    "W": 512, "H": 512, "seed": -1, "seed_behavior": "iter", "seed_iter_N": 1,
    "seed_schedule": '0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)',
    "steps": 25, "enable_steps_scheduling": False, "steps_schedule": "0: (25)",
    "cfg_scale_schedule": "0: (7)", "fps": 15, "max_frames": 120,
    "batch_name": "Deforum_{timestring}", "color_coherence": "LAB",
    "animation_prompts_positive": "", "animation_prompts_negative": "",
    "use_init": False, "init_image": None, "add_soundtrack": "None", "soundtrack_path": "",
    "skip_video_creation": False, "resume_from_timestring": False,
    "resume_timestring": "", "prompts": {"0": ""}, "enable_subseed_scheduling": False,
    "subseed_schedule": "0: (1)", "subseed_strength_schedule": "0: (0)",
}

# Deforum's deprecation_utils: renamed keys and replaced values.
_RENAMED = {"flip_2d_perspective": "enable_perspective_flip",
            "skip_video_for_run_all": "skip_video_creation"}
_COLOR_LEGACY = {"Match Frame 0 HSV": "HSV", "Match Frame 0 LAB": "LAB", "Match Frame 0 RGB": "RGB"}

_BATCH_UNSAFE = re.compile(r'[<>:"/\\|?*\s,]')


@dataclass(frozen=True)
class VideoInput:
    """Deforum's Video Input: the source video, its extraction and, once the video was read
    (``load_settings(read_video=True)``), its probe and the source frame of each output frame."""
    path: str
    extraction: Extraction
    strength: tuple[float, ...]  # Deforum's strength_schedule per output frame: 1 - denoise
    info: VideoInfo | None = None
    kept: tuple[int, ...] = ()  # output frame i shows source frame kept[i]
    # use_mask_video: where each frame may change (white; invert_mask flips it), frame c of
    # this video for source frame c, as Deforum extracts both with the same keys.
    mask_path: str = ""
    invert_mask: bool = False


@dataclass
class Prompt:
    frame: int
    positive: str
    negative: str


# The Wan keys' part of the settings object: one field per key row with an attribute, typed
# by the row (config/keys.py); every field is given by load_settings, so none has a default.
_WanKeys = make_dataclass("_WanKeys", [(k.attr, k.value_type) for k in KEYS if k.attr], kw_only=True)


@dataclass(kw_only=True)
class RenderSettings(_WanKeys):
    source: str
    raw: dict  # everything the file held (legacy keys converted), for writing back
    W: int
    H: int
    fps: float
    max_frames: int
    seed: int
    seed_was_random: bool
    seed_behavior: str
    seed_iter_N: int
    seed_schedule: Schedule | None
    cfg: Schedule
    steps: int
    steps_schedule: Schedule | None
    prompts: list[Prompt]  # sorted by frame, first at frame 0
    frame_prompts: list[str]  # each frame's prompt as Deforum builds it ("positive --neg negative")
    batch_name: str  # template; resolve with resolve_batch_name()
    color_coherence: str
    init_image: str | None
    soundtrack: str | None
    skip_video_creation: bool
    resume_timestring: str | None
    camera: Camera | None = None  # Deforum's camera (config.camera); None: still
    # Deforum's subseed and its strength per frame; None: not scheduled (subseed -1, strength 0)
    subseed: Schedule | None = None
    subseed_strength: Schedule | None = None
    parseq: Manifest | None = None  # the Parseq manifest whose values replace the schedules
    video_input: VideoInput | None = None  # animation_mode "Video Input"
    hybrid: Hybrid | None = None  # 2D/3D with hybrid_motion or hybrid_composite (config.hybrid)
    control: ControlVideo | None = None  # a VACE control video (ControlNet units, wan_control)
    keyframes: list[Keyframe] = field(default_factory=list)  # guided images, sorted by frame
    speed_overrides: dict = field(default_factory=dict)  # preset fields set explicitly (presets.resolve)
    warnings: list[str] = field(default_factory=list)

    def steps_at(self, frame: int) -> int:
        return int(self.steps_schedule[frame]) if self.steps_schedule else self.steps

    def to_dict(self) -> dict:
        """The settings as a file Deforum and this tool both re-import (seed resolved)."""
        out = dict(self.raw)
        out["seed"] = self.seed
        out["W"], out["H"] = self.W, self.H
        for key in WAN_DEFAULTS:
            out.setdefault(key, WAN_DEFAULTS[key])
        out["wan_model"] = self.model.id
        return out


def video_init_of(raw: dict) -> str | None:
    """The source video these settings restyle (animation_mode "Video Input"), else None."""
    if str(raw.get("animation_mode")) == "Video Input":
        return str(raw.get("video_init_path") or "")
    return None


def source_video_of(raw: dict) -> str | None:
    """The video these settings read: a Video Input's, or a hybrid render's, else None."""
    video = video_init_of(raw)
    return video if video is not None else hybrid_video_of(raw)


def video_mask_of(raw: dict) -> str | None:
    """The mask video of a Video Input (``use_mask_video`` on), else None."""
    if video_init_of(raw) is not None and _bool(raw.get("use_mask_video", False)):
        return str(raw.get("video_mask_path") or "")
    return None


def init_image_of(raw: dict) -> str | None:
    """The init image these settings use (``use_init`` on and a file named), else None."""
    image = raw.get("init_image")
    if _bool(raw.get("use_init", DEFORUM_DEFAULTS["use_init"])) and image not in (None, "", "None"):
        return str(image)
    return None


def soundtrack_of(raw: dict) -> str | None:
    """The soundtrack file these settings use (``add_soundtrack`` "File" and a path), else None."""
    if str(raw.get("add_soundtrack", DEFORUM_DEFAULTS["add_soundtrack"])) == "File" and raw.get("soundtrack_path"):
        return str(raw["soundtrack_path"])
    return None


def read_settings_file(path: str | os.PathLike) -> dict:
    """Read a Deforum settings file (.txt/.json, UTF-8 with or without BOM, CRLF ok)."""
    name = Path(path).name
    try:
        text = read_limited(path, MAX_FILE_BYTES, "settings file").decode("utf-8-sig")
    except FileRefused as exc:
        raise SettingsError(str(exc), name) from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"not UTF-8 text (byte {exc.start})", name) from None
    return parse_settings_text(text, name)


def parse_settings_text(text: str, source: str = "<settings>") -> dict:
    if len(text) > MAX_FILE_BYTES:
        raise SettingsError("settings text is too large", source)
    if not text.strip():
        raise SettingsError("file is empty", source)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                            source) from None
    except RecursionError:
        raise SettingsError("JSON nested too deeply", source) from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise SettingsError("invalid JSON: a number has too many digits", source) from None
    if not isinstance(data, dict):
        raise SettingsError(f"expected a JSON object of settings, got {type(data).__name__}", source)
    return data


def load_settings(source: str | os.PathLike | dict, overrides: dict | None = None,
                  name: str | None = None, models_dir: str | os.PathLike | None = None,
                  read_video: bool = False, base: str | os.PathLike | None = None) -> RenderSettings:
    """Load, convert and validate settings. Raises ``SettingsError`` with one line.

    ``models_dir``: the models folder a ``wan_model`` file is looked for in (with the extra
    folders); None: $DEFORUM_WAN_MODELS_DIR or the default one. ``read_video``: probe a Video
    Input's source video (max_frames becomes the number of frames it gives, as in Deforum);
    only for paths already confined (``render.inputs``) or named by the user themselves. A
    hybrid render's video is read the same way (config.hybrid).
    ``base``: the folder a relative video path starts from (default: a settings file's own)."""
    if isinstance(source, dict):
        data, label = dict(source), name or "<settings>"
    else:
        data, label = read_settings_file(source), name or Path(source).name
        base = base if base is not None else Path(source).parent
    if overrides:
        data.update(overrides)
    video = None
    if read_video and source_video_of(data) is not None:
        video = _read_video(data, label, base)
        if video_init_of(data) is not None or not hybrid_keys(data)["hybrid_use_init_image"]:
            data["max_frames"] = len(video[2])  # Deforum's rule: one output frame per kept frame
        data["video_init_path"] = str(video[0])  # the run's saved settings name the files read
        if video[3]:
            data["video_mask_path"] = video[3]
    control = read_requested_control(data, label, base, video[2] if video else None) if read_video else None
    try:
        values.check_plain(data)
        return _validate(data, label, models_dir, video, control)
    except SettingsError:
        raise
    except (ExprError, WanError) as exc:  # unknown model ids come from the registry
        raise SettingsError(str(exc), label) from None


def _read_video(data: dict, label: str, base) -> tuple[Path, VideoInfo, list[int], str]:
    """The source video's path, probe and kept frames, and its mask video's path (or "");
    one SettingsError line otherwise."""
    try:
        path = _video_path(data, label, base)
        extraction = extraction_of(data, label)
        info, kept = kept_frames(path, extraction, label)
        mask = ""
        if video_mask_of(data) is not None:
            mask_path = _video_path(data, label, base, "video_mask_path", video_mask_of(data))
            have = len(extraction.kept(probe(mask_path, label).frames))
            if have < len(kept):  # Deforum runs out of mask frames there and stops
                raise VideoRefused(f"video_mask_path {mask_path.name} gives {have} frames, the video {len(kept)};"
                                   " the mask must last as long as the video", label)
            mask = str(mask_path)
        return path, info, kept, mask
    except ExprError as exc:
        raise SettingsError(str(exc), label) from None
    except VideoRefused as exc:
        if video_init_of(data) is not None:  # Video Input: nothing to render without the video
            raise
        # a hybrid video: shared Deforum files often keep their author's path
        raise VideoRefused(f"{exc.detail}; or set hybrid_motion and hybrid_composite to None to render"
                           " without the hybrid video", label) from None


def _video_path(raw: dict, label: str, base, key: str = "video_init_path", value: str | None = None) -> Path:
    text = _path(source_video_of(raw) if value is None else value, key)
    if not text:
        needs = "animation_mode Video Input" if video_init_of(raw) is not None else "hybrid video"
        raise SettingsError(f"{needs} needs {key} (a video file)", label)
    if "://" in text:
        raise SettingsError(f"{key} {text[:120]!r} is a URL (the render reads local files only);"
                            " download it into the output folder", label)
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None and not os.path.exists(path):
        path = Path(base) / path
    return path


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from the command line; VALUE is JSON when it parses, else a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SettingsError(f"--set expects KEY=VALUE, got {text!r}", "--set")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# --- validation ---------------------------------------------------------------------

def _validate(data: dict, label: str, models_dir=None, video: tuple | None = None,
              control: tuple | None = None) -> RenderSettings:
    warnings: list[str] = []
    raw = _convert_legacy(data, warnings)
    get = lambda key: raw.get(key, DEFORUM_DEFAULTS.get(key, WAN_DEFAULTS.get(key)))  # noqa: E731

    if "W" not in raw and ("width" in raw or "height" in raw):
        warnings.append("'width'/'height' are not Deforum keys; Deforum uses W/H (512x512 here)")
    max_frames = _int(get("max_frames"), "max_frames", 1, 100_000)
    fps = _number(get("fps"), "fps", 1, 240)
    manifest = read_manifest(raw)
    if manifest is not None:
        # Video Input: the video's kept frames are the frames (Deforum crashes on the pair); the
        # manifest is cut or repeated to them like to any max_frames
        max_frames = max_frames if video is not None else manifest.max_frames(max_frames)
        fps = manifest.output_fps(fps)
        warnings += manifest.warnings
    schedule = _Schedules(get, manifest, max_frames)
    wan = read_all(get)  # every Wan key once; early: the size rules are the model's
    # A file or folder is found in the model folders (models_dir or $DEFORUM_WAN_MODELS_DIR, the extra ones).
    model = resolve_model(wan["wan_model"], wan["wan_components"], models_dir, low=wan["wan_model_low"])
    if wan["wan_model_low"] and not model.weights_2:
        warnings.append(f"wan_model_low is for a wan_model file (the high-noise expert); {model.id} runs without it")
    W = _size(get("W"), "W", model, warnings)
    H = _size(get("H"), "H", model, warnings)

    seed_raw = _int(get("seed"), "seed", -1, 2**63 - 1)
    seed_was_random = seed_raw == -1
    seed = random.SystemRandom().randint(0, MAX_SEED) if seed_was_random else seed_raw
    behavior = str(get("seed_behavior"))
    if behavior not in SEED_BEHAVIORS:
        raise ExprError(f"seed_behavior {behavior!r} is not one of {', '.join(SEED_BEHAVIORS)}")
    if behavior == "fixed" and wan["wan_svi"] != "off":
        warnings.append(f"wan_svi {wan['wan_svi']}: Stable Video Infinity advises a different seed per window"
                        " (the same noise accumulates artifacts); seed_behavior fixed gives each the same, iter does not")
    iter_n = _int(get("seed_iter_N"), "seed_iter_N", 1, 1_000_000)
    keyframes = read_keyframes(raw, max_frames)
    if keyframes and behavior != "schedule":  # Deforum's rule for guided images
        warnings.append(f"guided images (use_looper): seed_behavior {behavior!r} set to 'schedule', as Deforum does")
        behavior = "schedule"
    behavior, seed_schedule, subseed, subseed_strength = schedule.seeds(behavior, seed)

    cfg = schedule("cfg_scale_schedule", seed)
    if any(not (0 <= v <= 100) for v in cfg.values):
        raise ExprError("cfg_scale_schedule: values must be between 0 and 100")
    warnings += cfg.warnings
    steps = _int(get("steps"), "steps", 1, 1000)
    steps_schedule = None
    if _bool(get("enable_steps_scheduling")):
        steps_schedule = schedule("steps_schedule", seed)
        if any(not (1 <= v <= 1000) for v in steps_schedule.values):
            raise ExprError("steps_schedule: values must be between 1 and 1000")
        warnings += steps_schedule.warnings

    prompts, texts = schedule.prompts(raw, warnings)
    batch_name = _batch_template(get("batch_name"))
    color = str(get("color_coherence"))
    if color not in COLOR_MODES:
        warnings.append(f"color_coherence {color!r} is not available for Wan; using None")
        color = "None"

    # Only the files in use are read as paths (Deforum files keep an unused init_image).
    init_image = _path(raw.get("init_image"), "init_image") if init_image_of(raw) else None
    soundtrack = _path(raw.get("soundtrack_path"), "soundtrack_path") if soundtrack_of(raw) else None
    if str(get("add_soundtrack")) not in ("None", "File"):
        warnings.append(f"add_soundtrack {get('add_soundtrack')!r} is not supported; no soundtrack")

    resume = None
    if _bool(get("resume_from_timestring")):
        resume = str(get("resume_timestring") or "")
        if not TIMESTRING_RE.match(resume):
            raise ExprError(f"resume_timestring must be 14 digits (YYYYmmddHHMMSS), got {resume!r}")

    cont_id = wan["wan_continue_model"]
    attrs = {k.attr: wan[k.name] for k in KEYS if k.attr}
    attrs.update(model=model, continue_model=resolve_model(cont_id, wan["wan_components"], models_dir) if cont_id else None)

    in_effect = raw
    if manifest is not None and manifest.overrides and manifest.cadence:  # the manifest's cadence is Deforum's
        in_effect = dict(raw, diffusion_cadence=manifest.cadence)
    camera = _camera(in_effect, max_frames, W, H, seed, warnings, wan_camera=wan["wan_camera"],
                     series=schedule.camera())
    attrs.update(_videos(raw, label, max_frames, seed, warnings, wan["wan_control"], video, control))

    return RenderSettings(
        source=label, raw=raw, camera=camera, W=W, H=H, fps=fps, max_frames=max_frames, seed=seed,
        seed_was_random=seed_was_random, seed_behavior=behavior, seed_iter_N=iter_n,
        seed_schedule=seed_schedule, cfg=cfg, steps=steps, steps_schedule=steps_schedule,
        prompts=prompts, frame_prompts=texts, subseed=subseed, subseed_strength=subseed_strength,
        parseq=manifest, batch_name=batch_name, color_coherence=color, init_image=init_image,
        soundtrack=soundtrack, skip_video_creation=_bool(get("skip_video_creation")),
        resume_timestring=resume, speed_overrides=preset_overrides(wan), warnings=warnings,
        keyframes=keyframes, **attrs,
    )


def _videos(raw: dict, label: str, max_frames: int, seed: int, warnings: list[str], wan_control,
            video: tuple | None, control: tuple | None) -> dict:
    """The videos a render reads: Video Input's, a hybrid video, a control video (each or None);
    ``video``/``control``: what reading them found (None: not read)."""
    if str(raw.get("animation_mode")) in MODES_WITH_HYBRID:
        hybrid_keys(raw)  # a misspelt hybrid value is one line, even when it leaves hybrid off
    return {
        "video_input": _video_input(raw, label, max_frames, seed, video) if video_init_of(raw) is not None else None,
        "hybrid": read_hybrid(raw, label, max_frames, seed, warnings, video) if hybrid_video_of(raw) is not None
        else None,
        "control": control_video(raw, wan_control, max_frames, seed, label, control),
    }


class _Schedules:
    """Deforum's per-frame values: a Parseq manifest's where it gives them, else the file's."""

    def __init__(self, get, manifest: Manifest | None, max_frames: int):
        self.get, self.manifest, self.max_frames = get, manifest, max_frames

    def series(self, key: str) -> list[float] | None:
        return self.manifest.series(key, self.max_frames) if self.manifest is not None else None

    def __call__(self, key: str, seed: int) -> Schedule:
        series = self.series(key)
        if series is not None:
            return Schedule(f"parseq_manifest {self.manifest.field_of(key)}", [float(v) for v in series], [])
        return build_schedule(self.get(key), self.max_frames, seed, key)

    def seeds(self, behavior: str, seed: int) -> tuple[str, Schedule | None, Schedule | None, Schedule | None]:
        """seed_behavior in effect, the seed schedule, the subseed and its strength schedules."""
        parseq_seed = self.series("seed_schedule") is not None
        if parseq_seed:  # Deforum then takes every frame's seed from the manifest, whatever seed_behavior says
            behavior = "schedule"
        # Deforum's Parseq mode reads the file's seed_schedule with s = -1 (random seeds); s is the seed here
        seeds = self("seed_schedule", seed) if behavior == "schedule" else None
        if parseq_seed or _bool(self.get("enable_subseed_scheduling")):
            return behavior, seeds, self("subseed_schedule", seed), self("subseed_strength_schedule", seed)
        return behavior, seeds, None, None

    def prompts(self, raw: dict, warnings: list[str]) -> tuple[list[Prompt], list[str]]:
        texts = self.manifest.prompts(self.max_frames) if self.manifest is not None else None
        if texts is None:
            return _prompts(raw, self.max_frames, warnings)
        return _runs(texts, warnings), texts

    def camera(self) -> dict[str, list[float]]:
        return {k: v for k in CAMERA_DEFAULTS if (v := self.series(k)) is not None}


def _video_input(raw: dict, label: str, max_frames: int, seed: int, video: tuple | None) -> VideoInput:
    """Video Input's source and strength; with the source's probe and kept frames when read."""
    strength = build_schedule(raw.get("strength_schedule", "0: (0.65)"), max_frames, seed, "strength_schedule")
    if any(not (0 <= v <= 1) for v in strength.values):
        raise ExprError("strength_schedule: values must be between 0 and 1")
    extraction = extraction_of(raw, label)
    if video is None:
        return VideoInput(str(raw.get("video_init_path") or ""), extraction, tuple(strength.values))
    path, info, kept, mask = video
    return VideoInput(str(path), extraction, tuple(strength.values), info, tuple(kept), mask,
                      _bool(raw.get("invert_mask", False)))


def _camera(raw: dict, max_frames: int, W: int, H: int, seed: int, warnings: list[str],
            wan_camera: str = "off", series: dict | None = None) -> Camera:
    """Deforum's camera of these settings (``series``: per-frame values that replace schedules),
    and a warning naming what of it Wan does not do."""
    try:
        camera = Camera.from_settings(raw, max_frames, W, H, seed, series=series)
    except SingularCamera:  # a camera that cannot be followed back is refused, never dropped
        raise
    except ExprError as exc:  # a broken camera schedule leaves the camera still, loudly
        warnings.append(f"{exc}; the camera is left still")
        camera = Camera("None", W, H, {})
    warnings.extend(camera.quirks)
    missing = []
    if camera.moves:
        moving = sorted(k for k, vals in camera.series.items() if k in STILL and any(abs(v - STILL[k]) > 1e-9
                                                                                     for v in vals))
        if wan_camera == "off":
            missing.append(f"the {camera.mode} camera ({', '.join(moving) or 'perspective flip'}; wan_camera"
                           " is off: its path is only in `plan` and `camera`)")
    hybrid = hybrid_video_of(raw) is not None  # read by config.hybrid: it says what it leaves out
    if hybrid and wan_camera == "off":  # the video's motion and composite live in the guide
        on = [f"{k}: {raw.get(k)}" for k in ("hybrid_motion", "hybrid_composite") if str(raw.get(k, "None")) != "None"]
        missing.append(f"hybrid video ({', '.join(on)}; wan_camera is off: Wan's windows follow no guide)")
    for key, still, label in _NOT_APPLIED:
        value = raw.get(key)
        if hybrid and key.startswith("hybrid_"):
            continue
        if value is not None and str(value).strip().lower() not in still:
            missing.append(f"{label} ({key}: {value})")
    if str(raw.get("animation_mode")) == "Interpolation":
        missing.append(f"animation_mode {raw.get('animation_mode')}")
    if missing:
        warnings.append("not applied to Wan's windows: " + "; ".join(missing))
    return camera


# Deforum features no Wan window reproduces: key, the values that mean "off", what it is.
_NOT_APPLIED = (
    ("diffusion_cadence", ("1", "1.0"), "cadence"),
    ("hybrid_composite", ("none", "false", "0"), "hybrid video"),
    ("hybrid_motion", ("none",), "hybrid motion"),
    ("use_mask", ("false", "0"), "masks"),
    ("use_noise_mask", ("false", "0"), "noise masks"),
    ("optical_flow_cadence", ("none",), "optical flow cadence"),
)


def _convert_legacy(data: dict, warnings: list[str]) -> dict:
    raw = dict(data)
    for old, new in _RENAMED.items():
        if old in raw:
            raw[new] = raw.pop(old)
            warnings.append(f"'{old}' is now '{new}' (as Deforum converts it)")
    if str(raw.get("color_coherence")) in _COLOR_LEGACY:
        raw["color_coherence"] = _COLOR_LEGACY[str(raw["color_coherence"])]
    for old, new in WAN_ALIASES.items():
        if old in raw and new not in raw:
            raw[new] = raw[old]
    # Deforum's UI loader lets the legacy key win when present.
    if "animation_prompts" in raw and raw["animation_prompts"] not in (None, ""):
        legacy = raw.pop("animation_prompts")
        if isinstance(legacy, str):
            try:
                legacy = json.loads(legacy)
            except json.JSONDecodeError as exc:
                raise ExprError(f"animation_prompts is not valid JSON: {exc.msg}") from None
        raw["prompts"] = legacy
    return raw


def _prompts(raw: dict, max_frames: int, warnings: list[str]) -> tuple[list[Prompt], list[str]]:
    """The prompt keyframes for Wan, and each frame's prompt as Deforum builds it."""
    prompts = raw.get("prompts", DEFORUM_DEFAULTS["prompts"])
    if not isinstance(prompts, dict):
        raise ExprError(f"prompts must be a mapping of frame -> prompt, got {type(prompts).__name__}")
    if not prompts:
        raise ExprError("prompts is empty")
    pos_all = _text(raw.get("animation_prompts_positive", ""), "animation_prompts_positive")
    # Deforum strips a stray --neg from the negative field.
    neg_all = _text(raw.get("animation_prompts_negative", ""), "animation_prompts_negative").replace("--neg", "")
    by_frame: dict[int, str] = {}
    for key, value in prompts.items():
        frame = parse_frame_key(key, max_frames)
        if frame >= max_frames:
            warnings.append(f"prompt at frame {key!r} ({frame}) is at or past max_frames={max_frames}; ignored")
            continue
        if frame in by_frame:
            warnings.append(f"two prompts at frame {frame}; the later one ({key!r}) wins")
        if not isinstance(value, str):  # null or a number is a broken file, not a prompt
            raise ExprError(f"prompt {key!r} must be text, got {json.dumps(value)}")
        # Deforum's args.py, positive text first
        by_frame[frame] = f"{pos_all} {value} {'' if '--neg' in value else '--neg'} {neg_all}"
    if not by_frame:
        raise ExprError(f"no prompt keyframe falls inside max_frames={max_frames}")
    keys = sorted(by_frame)
    texts, k = [], 0
    for frame in range(max_frames):  # Deforum's prompt series: held forward, the first back to frame 0
        while k + 1 < len(keys) and keys[k + 1] <= frame:
            k += 1
        texts.append(by_frame[keys[k]])
    cleaned = _Cleaner(warnings)
    out = [Prompt(frame, *cleaned(by_frame[frame])) for frame in keys]
    out[0] = Prompt(0, out[0].positive, out[0].negative)  # Deforum back-fills frames before the first key
    cleaned.warn()
    return out, texts


def _runs(texts: list[str], warnings: list[str]) -> list[Prompt]:
    """Prompt keyframes from a prompt per frame (a manifest's): one where Wan's prompt changes."""
    cleaned = _Cleaner(warnings)
    out: list[Prompt] = []
    for frame, text in enumerate(texts):
        positive, negative = cleaned(text)
        if not out or (out[-1].positive, out[-1].negative) != (positive, negative):
            out.append(Prompt(frame, positive, negative))
    cleaned.warn()
    return out


class _Cleaner:
    """Deforum prompts -> Wan's (positive, negative), each text once; says what it removed."""

    def __init__(self, warnings: list[str]):
        self.warnings, self.seen, self.stripped, self.weighted = warnings, {}, False, False

    def __call__(self, text: str) -> tuple[str, str]:
        if text not in self.seen:
            positive, negative = prompt_text.split(text)
            clean = prompt_text.for_wan(positive), prompt_text.for_wan(negative)
            self.weighted |= prompt_text.weighted(text)
            self.stripped |= clean != (prompt_text.squash(positive), prompt_text.squash(negative))
            self.seen[text] = clean
        return self.seen[text]

    def warn(self) -> None:
        if self.weighted:
            self.warnings.append("composable prompts (A: 0.7 AND B: 0.3, Parseq's prompt weights) mean nothing to"
                                 " Wan's text encoder: each frame keeps its strongest part, and a window starts"
                                 " where that changes")
        if self.stripped:
            self.warnings.append("A1111 emphasis like (word:1.2) and <lora:...> tags mean nothing to Wan's"
                                 " text encoder; they were removed from the prompts")


def resolve_batch_name(template: str, timestring: str, settings: RenderSettings) -> str:
    """Fill ``{timestring}``, ``{seed}`` and any ``{settings_key}`` (case-insensitive), then
    make the name safe the way Deforum does (``/ \\ : * ? " < > | , whitespace`` -> ``_``)."""
    values = {str(k).lower(): v for k, v in settings.raw.items() if isinstance(v, (str, int, float))}
    values.update(timestring=timestring, seed=settings.seed, w=settings.W, h=settings.H)

    def fill(match: re.Match) -> str:
        return str(values.get(match.group(1).lower(), match.group(0)))

    name = _BATCH_UNSAFE.sub("_", re.sub(r"{(\w+)}", fill, template))[:120]
    if name in ("", ".", ".."):
        raise SettingsError(f"batch_name {template!r} resolves to {name!r}, not a folder name",
                            settings.source)
    return name


def _batch_template(value) -> str:
    text = _text(value, "batch_name")
    if "\x00" in text:
        raise ExprError("batch_name contains a NUL character")
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text):
        raise ExprError(f"batch_name {text!r} is an absolute path; it must be a folder name")
    if ".." in re.split(r"[/\\]", text):
        raise ExprError(f"batch_name {text!r} contains '..'; it must stay inside the output folder")
    if not text.strip():
        return DEFORUM_DEFAULTS["batch_name"]
    if all(part in ("", ".") for part in re.split(r"[/\\]", text.strip())):
        raise ExprError(f"batch_name {text!r} names no folder; give a folder name (e.g. Deforum_{{timestring}})")
    return text


# --- scalar helpers (one definition each: config.values) ---------------------------------

_number, _int, _bool, _text, _path = values.number, values.whole, values.truthy, values.text, values.path


def _size(value, key: str, model: ModelSpec, warnings: list[str]) -> int:
    size = _int(value, key, model.size_multiple, 8192)
    rounded = size - size % model.size_multiple
    if rounded != size:
        warnings.append(f"{key}={size} is not a multiple of {model.size_multiple} ({model.id});"
                        f" rounded down to {rounded}")
    return rounded
