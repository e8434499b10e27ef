"""Each output frame's values as Deforum would use them: prompt, seeds, CFG, strength and the
camera step from frame f-1 to f, under Deforum's names (``plan --frames``). From a Parseq
manifest where it gives them (its delta values when deltas are in use), else from the
settings file's schedules."""
from __future__ import annotations

from . import prompt_text
from .camera import CAMERA_DEFAULTS
from .keyframes import image_at
from .parseq import PROMPT_FIELD
from .schedule import ExprError, build_schedule, seed_at
from .settings import RenderSettings

# Deforum's name of each camera value -> its schedule key
CAMERA_KEYS = {
    "angle": "angle", "zoom": "zoom", "translation_x": "translation_x", "translation_y": "translation_y",
    "translation_z": "translation_z", "rotation_3d_x": "rotation_3d_x", "rotation_3d_y": "rotation_3d_y",
    "rotation_3d_z": "rotation_3d_z", "transform_center_x": "transform_center_x",
    "transform_center_y": "transform_center_y", "perspective_flip_theta": "perspective_flip_theta",
    "perspective_flip_phi": "perspective_flip_phi", "perspective_flip_gamma": "perspective_flip_gamma",
    "perspective_flip_fv": "perspective_flip_fv", "fov": "fov_schedule", "near": "near_schedule",
    "far": "far_schedule",
}
# Deforum's subseed and its strength when not scheduled (args.py's root defaults)
NO_SUBSEED, NO_SUBSEED_STRENGTH = -1, 0.0


def schedule_values(settings: RenderSettings, key: str) -> list[float]:
    """Deforum's schedule ``key`` per frame: the camera's (which holds the manifest's), the
    manifest's, or the file's; a broken one is its default (the camera says so in warnings)."""
    n = settings.max_frames
    camera = settings.camera
    if camera is not None and key in camera.series:
        return camera.series[key]
    if settings.parseq is not None:
        given = settings.parseq.series(key, n)
        if given is not None:
            return [float(v) for v in given]
    try:
        return build_schedule(settings.raw.get(key, CAMERA_DEFAULTS[key]), n, settings.seed, key).values
    except ExprError:
        return build_schedule(CAMERA_DEFAULTS[key], n, settings.seed, key).values


def frame_values(settings: RenderSettings, source_frames: list[int] | None = None, control: str = "") -> list[dict]:
    """``source_frames``: a Video Input's, hybrid video's or control video's source frame per output
    frame (the plan's), added as ``source_frame``; a hybrid composite's alpha as ``hybrid_alpha``;
    ``control``: the control kind each frame is conditioned on (the plan's), added as ``control``
    with its strength. With guided images: ``keyframe`` (the image in force, as the settings name
    it) and ``anchor`` (true on the frame it is pinned to)."""
    n = settings.max_frames
    series = {name: schedule_values(settings, key) for name, key in CAMERA_KEYS.items()}
    strength = schedule_values(settings, "strength_schedule")
    hybrid = settings.hybrid
    composite = hybrid.alpha if hybrid is not None and hybrid.composite != "None" else None
    pinned = {k.frame for k in settings.keyframes}
    out = []
    for f in range(n):
        positive, negative = prompt_text.split(prompt_text.at_frame(settings.frame_prompts[f], f, n))
        out.append({
            "frame": f, "prompt": positive, "negative_prompt": negative,
            "seed": seed_at(f, settings.seed, settings.seed_behavior, settings.seed_iter_N, settings.seed_schedule),
            "subseed": int(settings.subseed[f]) if settings.subseed is not None else NO_SUBSEED,
            "subseed_strength": float(settings.subseed_strength[f]) if settings.subseed_strength is not None
            else NO_SUBSEED_STRENGTH,
            "cfg": settings.cfg[f], "strength": min(max(strength[f], 0.0), 1.0),  # Deforum clamps it so
            "camera": {name: values[f] for name, values in series.items()},
        })
        if source_frames:
            out[-1]["source_frame"] = source_frames[f]
        if composite is not None:
            out[-1]["hybrid_alpha"] = composite[f]
        if control:
            weight = settings.control.weight if settings.control is not None else (1.0,)
            out[-1]["control"] = {"kind": control, "strength": weight[min(f, len(weight) - 1)]}
        if settings.keyframes:
            out[-1]["keyframe"] = image_at(settings.keyframes, f)
            out[-1]["anchor"] = f in pinned
    return out


def from_manifest(settings: RenderSettings) -> set[str]:
    """The per-frame values (frame_values' names) a Parseq manifest gives."""
    manifest = settings.parseq
    if manifest is None:
        return set()
    given = {name for name, key in CAMERA_KEYS.items() if manifest.field_of(key) is not None}
    for name, key in (("cfg", "cfg_scale_schedule"), ("strength", "strength_schedule"), ("seed", "seed_schedule"),
                      ("subseed", "subseed_schedule"), ("subseed_strength", "subseed_strength_schedule")):
        if manifest.field_of(key) is not None:
            given.add(name)
    if PROMPT_FIELD in manifest.fields:
        given |= {"prompt", "negative_prompt"}
    return given


_COLUMNS = (("seed", 10, "d"), ("cfg", 6, "g"), ("strength", 8, "g"), ("angle", 7, "g"), ("zoom", 7, "g"),
            ("translation_x", 7, "g"), ("translation_y", 7, "g"), ("translation_z", 7, "g"),
            ("rotation_3d_x", 6, "g"), ("rotation_3d_y", 6, "g"), ("rotation_3d_z", 6, "g"))
_SHORT = {"translation_x": "tx", "translation_y": "ty", "translation_z": "tz", "rotation_3d_x": "rx",
          "rotation_3d_y": "ry", "rotation_3d_z": "rz", "strength": "str"}


def format_frames(settings: RenderSettings, frames: list[dict]) -> str:
    """A readable per-frame table; a column whose values come from a Parseq manifest is marked *."""
    marked = from_manifest(settings)

    def head(name: str, width: int) -> str:
        return (_SHORT.get(name, name) + ("*" if name in marked else "")).rjust(width)

    lines = [f"{'frame':>5} " + " ".join(head(n, w) for n, w, _ in _COLUMNS) + "  prompt" +
             ("*" if "prompt" in marked else "")]
    for row in frames:
        values = {**row, **row["camera"]}
        cells = " ".join(f"{values[n]:>{w}d}" if f == "d" else f"{values[n]:>{w}.4g}" for n, w, f in _COLUMNS)
        prompt = row["prompt"] if len(row["prompt"]) <= 60 else row["prompt"][:57] + "..."
        neg = f"  --neg {row['negative_prompt'][:30]}" if row["negative_prompt"] else ""
        source = f"  (source frame {row['source_frame']})" if "source_frame" in row else ""
        if "hybrid_alpha" in row:
            source += f" (hybrid alpha {row['hybrid_alpha']:g})"
        if "control" in row:
            source += f"  ({row['control']['kind']} control {row['control']['strength']:g})"
        guided = (f"  [{'pinned to ' if row['anchor'] else 'guided by '}{row['keyframe']}]" if "keyframe" in row
                  else "")
        lines.append(f"{row['frame']:>5} {cells}  {prompt}{neg}{source}{guided}")
    if marked:
        lines.append(f"*: from the Parseq manifest ({settings.parseq.summary()})")
    lines.append("each camera value is the step from frame f-1 to f (Deforum never applies frame 0's);"
                 " all of the file's schedules are listed, its animation_mode uses its own")
    return "\n".join(lines)
