"""The Wan tab's fields <-> a Deforum settings dict. Pure: no gradio, no torch.

``settings_to_fields`` shows a settings dict the way ``load_settings`` reads it (legacy
keys, Deforum's defaults). ``fields_to_settings`` writes the fields back onto the dict
they came from: a field the user did not change keeps the file's own value and spelling
(``"seed": "1"``, ``"Match Frame 0 LAB"``), and every key the tab has no field for is kept,
so an imported file is written back as Deforum and this tool read it.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..config.camera import CAMERA_DEFAULTS
from ..config.keyframes import guided_images_of
from ..config.keys import (
    BY_NAME,
    COLOR_MODES,
    DEFAULT_PRESET,
    KEYS,
    LORA_EXPERTS,
    PRESETS,
    WAN_ALIASES,
    WAN_DEFAULTS,
    Key,
)
from ..config.schedule import SEED_BEHAVIORS, ExprError
from ..config.settings import (  # fields read values exactly as load_settings does
    _COLOR_LEGACY,
    DEFORUM_DEFAULTS,
    init_image_of,
    soundtrack_of,
)
from ..config.values import match_choice, truthy
from ..errors import SettingsError
from ..models.file_models import resolve_model
from ..models.places import looks_like_file
from ..models.registry import DEFAULT_MODEL, FILE_MODELS, MODELS, get_model

CUSTOM_SIZE = "custom"
# Deforum's animation modes. 2D and 3D move the camera; Video Input restyles an imported file's
# video_init_path; Interpolation is read but not rendered by Wan (the plan warns); a file
# without the key has no camera here.
ANIMATION_MODES = ("2D", "3D", "None", "Video Input", "Interpolation")
# What the tab's video conditions besides Video Input: a VACE control video of this kind.
CONTROL_CHOICES = ("none", "depth", "canny", "gray", "flow")

# The Wan keys' fields, from the key table: field name -> key (the control field is written
# with the video field: ``_apply_video``).
WAN_KEY_FIELDS: dict[str, Key] = {k.field: k for k in KEYS if k.field}
# Field name -> the settings key it edits: Deforum's keys, then the Wan keys. Fields whose
# value lives in two keys (init_image: use_init + init_image, soundtrack: add_soundtrack +
# soundtrack_path, prompts: prompts / animation_prompts) are handled by name below.
_DEFORUM_FIELDS: dict[str, str] = {
    "width": "W", "height": "H", "fps": "fps", "frames": "max_frames",
    "cfg": "cfg_scale_schedule", "seed": "seed", "seed_behavior": "seed_behavior",
    "seed_iter_n": "seed_iter_N", "color_coherence": "color_coherence", "prompts": "prompts",
    "positive": "animation_prompts_positive", "negative": "animation_prompts_negative",
    "init_image": "init_image", "soundtrack": "soundtrack_path", "batch_name": "batch_name",
    "depth_warping": "use_depth_warping",
    "animation_mode": "animation_mode",
    "video_path": "video_init_path", "keyframes": "init_images",
}
FIELD_KEYS: dict[str, str] = {**_DEFORUM_FIELDS, **{f: k.name for f, k in WAN_KEY_FIELDS.items()}}
FIELDS: tuple[str, ...] = tuple(FIELD_KEYS)
MANIFEST_LABELS = {"frames": "Frames", "fps": "Output fps"}  # the fields a Parseq manifest can set
# Fields that configure Wan rather than describe the animation (every Wan key's field):
# applied to every file of an imported batch (each file keeps its own prompts, frames, ...).
WAN_FIELDS: tuple[str, ...] = tuple(WAN_KEY_FIELDS)
_NUMBER_FIELDS = ("width", "height", "fps", "frames", "seed", "seed_iter_n")


def _get(settings: dict, key: str) -> Any:
    if key in settings:
        return settings[key]
    for alias, ours in WAN_ALIASES.items():
        if ours == key and alias in settings:
            return settings[alias]
    return DEFORUM_DEFAULTS.get(key, WAN_DEFAULTS.get(key))


def _number(value: Any) -> float | int | None:
    """A number for a Number field; None when the file holds something else (an expression)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = value
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            return None
    return int(number) if float(number).is_integer() else float(number)


def _choice(value: Any, options: tuple[str, ...], default: str) -> str:
    return match_choice(value, options) or default


def _shown(key: Key, value: Any) -> Any:
    """A Wan key's value as its field shows it (by the key's kind)."""
    if key.kind == "model":
        return model_id(value)
    if key.kind == "preset":
        return preset_name(value)
    if key.kind == "loras":
        return loras_text(value)
    if key.kind == "control":  # the kind; its video is the video field's
        return _control_of({"wan_control": value})[0]
    if key.kind == "flag":
        return truthy(value)
    if key.kind in ("choice", "text") and key.choices:
        return _choice(value, key.choices, key.default)
    if key.kind == "text":  # free text: a file name
        return "" if value is None else str(value).strip()
    if key.optional:  # a number the model supplies when empty
        return "" if value in (None, "") else str(value)
    return _number(value) if _number(value) is not None else key.default


def _normalized(key: Key, value: Any) -> Any:
    """A field value handed by gradio (floats, labels...) as ``_shown`` would show it."""
    if key.kind == "loras":
        return loras_text(parse_loras(value))
    if key.kind in ("model", "preset", "flag"):
        return _shown(key, value)
    if key.kind in ("choice", "text"):
        return str(value or "").strip()
    if key.optional:
        return "" if value is None else str(value).strip()
    number = _number(value)
    return number if number is not None else value


def preset_name(value: Any) -> str:
    """A preset as the dropdown lists it (presets.get_preset also takes ``low_vram``)."""
    text = str(value).strip().lower().replace("_", "-") if value not in (None, "") else DEFAULT_PRESET
    return text if text in PRESETS else str(value).strip()  # an unknown name: load_settings reports it


def model_id(value: Any) -> str:
    """The model in a model field value: the registry id ("wan2.1-t2v-1.3b [installed]" -> the
    id), or a weight file's name as it is spelled ("Wan 2.1.safetensors [file: ...]" -> the name)."""
    text = str(value or "").strip()
    name = text.split(" [", 1)[0].strip()
    if looks_like_file(name):
        return name
    return text.split()[0].lower() if text else DEFAULT_MODEL


def model_spec(value: Any, models_dir=None):
    """The ModelSpec a model field value names: a registry model, a weight file already read
    (settings naming it register it), or one read by its header in the model folders
    (``models_dir``); WanError for an unknown one."""
    mid = model_id(value)
    if mid.lower() in MODELS or mid in FILE_MODELS or not looks_like_file(mid):
        return get_model(mid)
    return resolve_model(mid, models_dir=models_dir)


def size_label(width: int, height: int) -> str:
    return f"{width}x{height}"


def size_choices(model: str) -> list[str]:
    """The model's trained sizes, then "custom" (W/H typed in)."""
    try:
        sizes = model_spec(model).sizes
    except Exception:  # an unknown id: load_settings reports it; offer custom only
        sizes = ()
    return [size_label(w, h) for w, h in sizes] + [CUSTOM_SIZE]


def size_for(model: str, width: Any, height: Any) -> str:
    label = size_label(_number(width) or 0, _number(height) or 0)
    return label if label in size_choices(model) else CUSTOM_SIZE


def nearest_size(model: str, width: Any, height: Any) -> str:
    """The Size choice when the model changes: the current W/H if it was trained at them, else
    its trained size of the nearest aspect ratio (what the render would pick); custom when it
    has no trained sizes."""
    current = size_for(model, width, height)
    sizes = [parse_size(c) for c in size_choices(model) if c != CUSTOM_SIZE]
    w, h = _number(width) or 0, _number(height) or 0
    if current != CUSTOM_SIZE or not sizes or not (w > 0 and h > 0):
        return current
    best = min(sizes, key=lambda s: abs(math.log((s[0] / s[1]) / (w / h))))
    return size_label(*best)


def size_note(plan, width: Any, height: Any) -> str:
    """The size the plan renders (the planner's choice for the model: a trained size, rounded
    to its multiple), and where it is not the W x H asked for, that it is not."""
    asked = (_number(width) or 0, _number(height) or 0)
    if (plan.width, plan.height) == asked:
        return f"renders {plan.width}x{plan.height}"
    return f"renders {plan.width}x{plan.height}, not W/H {asked[0]}x{asked[1]} ({plan.size_source})"


def manifest_fields(values: list, settings) -> str:
    """Frames and Output fps in ``values`` (FIELDS order) as a Parseq manifest with its
    non-schedule overrides sets them for ``settings``: the render uses its length and fps, not
    the file's max_frames and fps. The import's note on it; "" when it changes neither."""
    manifest = settings.parseq
    if manifest is None or not manifest.overrides:
        return ""
    # its length, unless a source video's kept frames are the frames (Deforum's rule)
    wanted = {"frames": settings.max_frames if settings.max_frames == manifest.length else None,
              "fps": settings.fps if manifest.fps else None}
    was = {}  # field -> the file's value, where the manifest's differs
    for name, value in wanted.items():
        index = FIELDS.index(name)
        if value is not None and _number(values[index]) != value:
            was[name] = values[index]
            values[index] = int(value) if float(value).is_integer() else value
    if not was:
        return ""
    now = " at ".join(f"{values[FIELDS.index(name)]} {name}" for name in was)
    before = " at ".join(f"{value} {name}" for name, value in was.items())
    return (f"{' and '.join(MANIFEST_LABELS[name] for name in was)} show the manifest's {now} (its"
            f" non-schedule overrides), not the file's {before}")


def parse_size(label: str) -> tuple[int, int] | None:
    w, sep, h = str(label or "").partition("x")
    return (int(w), int(h)) if sep and w.isdigit() and h.isdigit() else None


def prompts_text(prompts: Any) -> str:
    """Deforum's prompts JSON as the editor shows it (Deforum's UI also shows indented JSON)."""
    if isinstance(prompts, str):
        try:
            prompts = json.loads(prompts)
        except json.JSONDecodeError:
            return prompts  # shown as it is; parse_prompts reports the error on use
    return json.dumps(prompts, indent=4, ensure_ascii=False)


def parse_prompts(text: str) -> dict:
    try:
        prompts = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise SettingsError(f"prompts: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                            "prompt schedule") from None
    if not isinstance(prompts, dict) or not prompts:
        raise SettingsError('prompts: expected a JSON object like {"0": "a prompt --neg a negative"}',
                            "prompt schedule")
    return prompts


def loras_text(loras: Any) -> str:
    """``wan_loras`` as one ``path:weight`` per line, ``:high`` or ``:low`` after it for one expert."""
    if not isinstance(loras, list):
        return ""
    lines = []
    for item in loras:
        if isinstance(item, str):
            lines.append(f"{item}:1")
        elif isinstance(item, dict) and isinstance(item.get("path"), str):
            expert = str(item.get("expert") or "both").lower()
            lines.append(f"{item['path']}:{item.get('weight', 1.0):g}" + (f":{expert}" if expert != "both" else ""))
    return "\n".join(lines)


def parse_loras(text: str) -> list[dict]:
    """``path:weight[:expert]`` lines (weight optional, expert high, low or both; a Windows ``C:\\``
    path keeps its colon). ``expert`` is written only for one expert: other lines read as before."""
    out = []
    for line in str(text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, tail = line.rpartition(":")
        expert = tail.strip().lower() if sep and head and tail.strip().lower() in LORA_EXPERTS else "both"
        if expert != "both" or (sep and tail.strip().lower() == "both"):
            line = head.strip()
        path, sep, weight = line.rpartition(":")
        try:
            value = float(weight) if sep and path and "\\" not in weight and "/" not in weight else None
        except ValueError:
            value = None
        if value is None:
            path, value = line, 1.0
        entry = {"path": path.strip(), "weight": value}
        out.append({**entry, "expert": expert} if expert != "both" else entry)
    return out


def cfg_text(value: Any) -> str:
    return str(value if value is not None else DEFORUM_DEFAULTS["cfg_scale_schedule"]).strip()


def normalize_cfg(text: Any) -> str:
    """A bare number typed in the guidance field means a constant schedule."""
    text = str(text or "").strip()
    try:
        return f"0: ({float(text):g})"
    except ValueError:
        return text


def _prompts(settings: dict) -> Any:
    legacy = settings.get("animation_prompts")
    return legacy if legacy not in (None, "") else _get(settings, "prompts")


def settings_to_fields(settings: dict) -> dict[str, Any]:
    """Field values for a settings dict (missing keys show Deforum's / our defaults)."""
    s = settings
    color = str(_get(s, "color_coherence"))
    color = _COLOR_LEGACY.get(color, color)
    return {
        "width": _number(_get(s, "W")) or DEFORUM_DEFAULTS["W"],
        "height": _number(_get(s, "H")) or DEFORUM_DEFAULTS["H"],
        "fps": _number(_get(s, "fps")),
        "frames": _number(_get(s, "max_frames")),
        "cfg": cfg_text(_get(s, "cfg_scale_schedule")),
        "seed": _number(_get(s, "seed")),
        "seed_behavior": _choice(_get(s, "seed_behavior"), SEED_BEHAVIORS, "iter"),
        "seed_iter_n": _number(_get(s, "seed_iter_N")),
        "color_coherence": color if color in COLOR_MODES else "None",
        "prompts": prompts_text(_prompts(s)),
        "positive": str(_get(s, "animation_prompts_positive") or ""),
        "negative": str(_get(s, "animation_prompts_negative") or ""),
        "init_image": init_image_of(s) or "",
        "soundtrack": soundtrack_of(s) or "",
        "batch_name": str(_get(s, "batch_name") or ""),
        # Deforum's 3D depth warping; off: a flat scene (no depth model)
        "depth_warping": truthy(s.get("use_depth_warping", CAMERA_DEFAULTS["use_depth_warping"])),
        "animation_mode": _choice(s.get("animation_mode"), ANIMATION_MODES, str(CAMERA_DEFAULTS["animation_mode"])),
        "video_path": _video_of(s),
        "keyframes": keyframes_text(s),
        **{f: _shown(k, _get(s, k.name)) for f, k in WAN_KEY_FIELDS.items()},
    }


def _control_of(s: dict) -> tuple[str, dict | None]:
    """The control field's kind and the wan_control it stands for (None: none or unreadable)."""
    try:
        control = BY_NAME["wan_control"].read(s.get("wan_control"))
    except ExprError:
        return "none", None  # load_settings reports it
    return (control["kind"], control) if control and control["kind"] in CONTROL_CHOICES else ("none", None)


def _video_of(s: dict) -> str:
    """The tab's video: Video Input's video_init_path, else the control video's."""
    if str(s.get("animation_mode")) != "Video Input" and _control_of(s)[1] is not None:
        return _control_of(s)[1]["video"]
    return str(s.get("video_init_path") or "")


def _normalize(name: str, value: Any) -> Any:
    """A field value as settings_to_fields would show it (gradio hands floats, labels...)."""
    if name in WAN_KEY_FIELDS:
        return _normalized(WAN_KEY_FIELDS[name], value)
    if name in _NUMBER_FIELDS:
        number = _number(value)
        return number if number is not None else value
    if name == "cfg":
        return normalize_cfg(value)
    if name == "prompts":
        return prompts_text(parse_prompts(value))
    if name in ("seed_behavior", "color_coherence", "animation_mode"):
        return str(value or "").strip()
    if name == "depth_warping":
        return truthy(value)
    if name == "keyframes":
        return "\n".join(f"{k}: {v}" for k, v in parse_keyframes(value).items())
    return "" if value is None else value  # free text is kept as typed


def fields_to_settings(fields: dict[str, Any], base: dict | None = None,
                       only: tuple[str, ...] | None = None) -> dict:
    """The settings dict for these field values, written onto ``base`` (the imported file).

    ``only`` limits which fields are applied (a batch applies ``WAN_FIELDS`` to each file).
    Raises ``SettingsError`` (one line) for a prompt schedule that is not JSON.
    """
    base = dict(base or {})
    shown = settings_to_fields(base)
    out = dict(base)
    names = only or FIELDS
    for name in names:
        if name not in fields or name in _VIDEO_FIELDS:
            continue
        value = _normalize(name, fields[name])
        if value == shown[name] and _present(base, name):
            continue  # unchanged: keep the file's own value and spelling
        _apply(out, name, value)
    if any(name in fields for name in _VIDEO_FIELDS if name in names):
        _apply_video(out, shown, fields)
    return out


_VIDEO_FIELDS = ("video_path", "control")


def _apply_video(out: dict, shown: dict, fields: dict) -> None:
    """The video field and the control kind, written together: the video is Video Input's
    ``video_init_path``, and the control video's (``wan_control``) when a kind is chosen."""
    video = str(fields.get("video_path", shown["video_path"]) or "").strip()
    kind = str(fields.get("control", shown["control"]) or "none").strip()
    if video == shown["video_path"] and kind == shown["control"]:
        return  # unchanged: the file's own keys and spelling
    old = _control_of(out)[1]
    if kind == "none":
        if old is not None:
            out["wan_control"] = None
    else:
        out["wan_control"] = {"kind": kind, "video": video, "weight": old["weight"] if old else 1.0}
    if (str(out.get("animation_mode")) == "Video Input" or kind == "none") and (video or "video_init_path" in out):
        out["video_init_path"] = video


def _present(base: dict, name: str) -> bool:
    if name == "prompts":
        return "prompts" in base or "animation_prompts" in base
    if name == "init_image":
        return "use_init" in base
    if name == "soundtrack":
        return "add_soundtrack" in base
    if name == "keyframes":
        return "use_looper" in base
    key = FIELD_KEYS[name]
    return key in base or any(ours == key and alias in base for alias, ours in WAN_ALIASES.items())


def _apply(out: dict, name: str, value: Any) -> None:
    if name == "prompts":
        out.pop("animation_prompts", None)  # the legacy key would win over the edit
        out["prompts"] = parse_prompts(value)
    elif name in WAN_KEY_FIELDS and WAN_KEY_FIELDS[name].kind == "loras":
        out[WAN_KEY_FIELDS[name].name] = parse_loras(value)
    elif name in WAN_KEY_FIELDS and WAN_KEY_FIELDS[name].optional:
        out[WAN_KEY_FIELDS[name].name] = value if value != "" else None
    elif name == "init_image":
        out["use_init"] = bool(value)
        if value:
            out["init_image"] = value
    elif name == "keyframes":  # Deforum's guided images: use_looper + init_images (JSON text, as Deforum keeps it)
        out["use_looper"] = bool(value)
        if value:
            out["init_images"] = json.dumps(parse_keyframes(value), indent=4)
    elif name == "soundtrack":
        out["add_soundtrack"] = "File" if value else "None"
        if value:
            out["soundtrack_path"] = value
    else:
        out[FIELD_KEYS[name]] = value  # ours wins over another fork's alias on re-import


def keyframes_text(settings: dict) -> str:
    """Guided images as the tab shows them: ``frame: image`` per line ("" when off)."""
    try:
        given = guided_images_of({**settings, "animation_mode": "2D"})  # shown whatever the mode
    except ExprError:
        given = None
    return "\n".join(f"{k}: {v}" for k, v in (given or {}).items())


def parse_keyframes(text: Any) -> dict[str, str]:
    """``frame: image`` lines (a frame number or an expression of max_f) -> init_images."""
    out: dict[str, str] = {}
    for line in str(text or "").splitlines():
        if not line.strip():
            continue
        key, sep, image = line.partition(":")
        if not sep or not key.strip() or not image.strip():
            raise SettingsError(f"guided image line {line.strip()[:80]!r} must be 'frame: image'", "guided images")
        out[key.strip()] = image.strip()
    return out


def wan_widget(name: str, start: dict[str, Any], **given: Any) -> dict[str, Any]:
    """A Wan key's widget arguments from its row: label, choices and info, and the value of
    ``start`` (``settings_to_fields``); ``given`` adds or replaces (the model list, a label
    naming the model's value)."""
    key = WAN_KEY_FIELDS[name]
    out: dict[str, Any] = {"label": key.label, "value": start[name]}
    if key.choices:
        out["choices"] = list(key.choices)
    if key.info:
        out["info"] = key.info
    return {**out, **given}


def sampling_label(name: str, model: str) -> str:
    """The label of a field that an empty value leaves to the model, naming the model's value."""
    title = WAN_KEY_FIELDS[name].label
    try:
        spec = model_spec(model)
    except Exception:  # an unknown id: load_settings reports it
        return f"{title} (empty: the model's)"
    value = {"steps": spec.steps, "guidance": spec.guidance, "guidance_2": spec.guidance_2}[name]
    if value is None:
        return f"{title} (not used by {spec.id})"
    return f"{title} (empty: {spec.id}'s {value:g})"


def model_choices(installed: set[str] | None = None, files: dict[str, str] | None = None) -> list[str]:
    """Registry ids for the model dropdown, each marked installed or not, then the Wan weight
    files of the model folders (``files``: name -> label)."""
    return [model_label(mid, installed) for mid in MODELS] + list((files or {}).values())


def model_label(mid: str, installed: set[str] | dict[str, int] | None = None,
                files: dict[str, str] | None = None) -> str:
    """``wan2.1-t2v-1.3b [installed, 16.4 GB]``; ``installed``: ids on disk (or id -> bytes);
    a listed weight file by its label in ``files``."""
    mid = model_id(mid)
    if mid not in MODELS:
        return (files or {}).get(mid, mid)
    installed = installed or set()
    if MODELS[mid].tiny:  # random weights made on this machine, never downloaded
        return f"{mid} [{'built locally' if mid in installed else 'built on first use'}]"
    if mid not in installed:
        return f"{mid} [not downloaded]"
    size = installed.get(mid) if isinstance(installed, dict) else None
    return f"{mid} [installed, {size / 1e9:.1f} GB]" if size else f"{mid} [installed]"
