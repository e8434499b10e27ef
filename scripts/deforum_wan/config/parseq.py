"""Parseq manifests (rewbs/sd-parseq): per-frame values that replace Deforum's schedules.

Read as Deforum's ``parseq_adapter.py`` reads them: a manifest is active when
``parseq_manifest`` is not empty; a field replaces Deforum's schedule of the same name only
when ``rendered_frames[0]`` has it; with ``parseq_use_deltas`` the motion fields are the
``*_delta`` ones (Parseq's zoom delta is 1 + difference); with
``parseq_non_schedule_overrides`` the manifest also sets max_frames (its length), fps
(``options.output_fps``) and cadence. A manifest longer than max_frames is cut, a shorter one
repeats its last entry. Every value is checked here, so a bad manifest is one line before
any model loads; a URL is refused, never fetched.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from . import values
from .schedule import ExprError

MAX_MANIFEST_CHARS = 100 * 2**20  # refused unparsed above this (real ones: ~1 kB a frame)
MAX_RENDERED_FRAMES = 100_000  # max_frames' own bound
MAX_PROMPT_CHARS = 100_000

# Motion fields: the step from frame f-1 to f, so with deltas Parseq's differences are used.
DELTA_FIELDS = frozenset({
    "angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
    "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma"})
# Deforum's schedule key -> the manifest's field (ParseqAnimKeysDecorator; the others through its
# fallback, which drops the key's _schedule suffix).
SCHEDULE_FIELDS = {
    **{name: name for name in ("angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x",
                               "rotation_3d_y", "rotation_3d_z", "perspective_flip_theta", "perspective_flip_phi",
                               "perspective_flip_gamma")},
    "perspective_flip_fv": "perspective_flip_fv", "transform_center_x": "transform_center_x",
    "transform_center_y": "transform_center_y", "fov_schedule": "fov", "near_schedule": "near",
    "far_schedule": "far", "aspect_ratio_schedule": "aspect_ratio", "strength_schedule": "strength",
    "cfg_scale_schedule": "scale", "steps_schedule": "steps_schedule", "seed_schedule": "seed",
    "subseed_schedule": "subseed", "subseed_strength_schedule": "subseed_strength",
}
PROMPT_FIELD = "deforum_prompt"
# How the tab names what a manifest keyframes, in this order.
_SHOWN = {PROMPT_FIELD: "prompts", "seed": "seed", "scale": "cfg", "strength": "strength"}


def _refuse_constant(name: str):
    raise ExprError(f"parseq_manifest holds {name}, not a number")


@dataclass(frozen=True)
class Manifest:
    frames: list[dict]  # rendered_frames, as given
    fps: float | None  # options.output_fps
    cadence: float | None  # options.cadence
    use_deltas: bool
    overrides: bool  # parseq_non_schedule_overrides
    warnings: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.frames)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.frames[0])

    def max_frames(self, file_value: int) -> int:
        return self.length if self.overrides else file_value

    def output_fps(self, file_value: float) -> float:
        return self.fps if self.overrides and self.fps else file_value

    def field_of(self, key: str) -> str | None:
        """The manifest field that replaces Deforum's schedule ``key``; None when it has none."""
        name = SCHEDULE_FIELDS.get(key)
        if name is None:
            return None
        if self.use_deltas and name in DELTA_FIELDS:
            name += "_delta"
        return name if name in self.frames[0] else None

    def series(self, key: str, max_frames: int) -> list[float] | None:
        """Deforum's ``key`` schedule as the manifest gives it, one value per frame; None when
        the manifest leaves it to the settings file."""
        name = self.field_of(key)
        return None if name is None else self._per_frame(name, max_frames)

    def prompts(self, max_frames: int) -> list[str] | None:
        """Each frame's ``deforum_prompt`` ("positive --neg negative"); None: the file's prompts."""
        return self._per_frame(PROMPT_FIELD, max_frames) if PROMPT_FIELD in self.frames[0] else None

    def _per_frame(self, name: str, max_frames: int) -> list:
        out: list = [None] * max_frames
        for entry in self.frames:
            if entry["frame"] < max_frames and name in entry:
                out[entry["frame"]] = entry[name]
        # Deforum repeats the last entry from its frame on (its deltas too: the motion goes on).
        last = self.frames[-1]
        for i in range(last["frame"], max_frames):
            out[i] = last.get(name, out[i - 1] if i else None)
        # A frame the manifest skips holds the value before it (Deforum would leave it NaN).
        held = next((v for v in out if v is not None), self.frames[0][name])
        for i, value in enumerate(out):
            held = held if value is None else value
            out[i] = held
        return out

    def keyframed(self) -> list[str]:
        """What the manifest sets, for a person: prompts, seed, cfg, strength, then the camera."""
        have = set(self.frames[0])
        shown = [label for name, label in _SHOWN.items() if name in have]
        for key, name in SCHEDULE_FIELDS.items():
            label = key.removesuffix("_schedule")
            if name in _SHOWN or label in shown or name.startswith("subseed"):  # subseeds: the seed's
                continue
            if self.field_of(key) is not None:
                shown.append(label)
        return shown

    def summary(self) -> str:
        fps = f" at {self.fps:g} fps" if self.fps else ""
        what = ", ".join(self.keyframed()) or "nothing Deforum reads"
        return f"Parseq manifest: {self.length} frames{fps}, keyframes for {what}"


def read_manifest(raw: dict) -> Manifest | None:
    """The settings' Parseq manifest, checked; None when ``parseq_manifest`` is empty.
    Raises ``ExprError`` (one line) for anything Deforum could not render from."""
    from .keys import PARSEQ_KEYS

    given = raw.get("parseq_manifest")
    if given is None or (isinstance(given, str) and not given.strip()):
        return None
    keys = {k.name: k.read(raw.get(k.name, k.default)) for k in PARSEQ_KEYS if k.name != "parseq_manifest"}
    data = _parse(given)
    values.check_plain(data, "parseq_manifest")  # lone surrogates, integers no float holds
    if not isinstance(data, dict):
        raise ExprError(f"parseq_manifest must be a JSON object (Parseq's manifest), got {type(data).__name__}")
    options = data.get("options")
    if not isinstance(options, dict):
        raise ExprError("parseq_manifest has no 'options' object: it is not a Parseq manifest")
    frames = data.get("rendered_frames")
    if not isinstance(frames, list) or not frames:
        raise ExprError("parseq_manifest has no rendered_frames: render it in Parseq and copy the manifest again")
    if len(frames) > MAX_RENDERED_FRAMES:
        raise ExprError(f"parseq_manifest has {len(frames)} rendered frames; at most {MAX_RENDERED_FRAMES}")
    warnings = _check_frames(frames)
    return Manifest(frames, _option(options, "output_fps", 1, 240), _option(options, "cadence", 1, 1000),
                    use_deltas=keys["parseq_use_deltas"], overrides=keys["parseq_non_schedule_overrides"],
                    warnings=warnings)


def names_file(value) -> bool:
    """Whether ``parseq_manifest`` names a manifest file (``render.inputs`` reads it in place)."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return (len(text) < 4096 and "\n" not in text and not text.lower().startswith("http")
            and text.lower().endswith((".json", ".txt")))


def _parse(given) -> object:
    if isinstance(given, dict):  # an API caller may send the manifest as an object
        return given
    if not isinstance(given, str):
        raise ExprError(f"parseq_manifest must be Parseq's manifest (JSON text), got {type(given).__name__}")
    if len(given) > MAX_MANIFEST_CHARS:
        raise ExprError(f"parseq_manifest is larger than {MAX_MANIFEST_CHARS // 2**20} MB; refused unread")
    text = given.strip()
    if text.lower().startswith("http"):  # Deforum downloads it; a render here never fetches anything
        raise ExprError("parseq_manifest is a URL, which is not fetched: paste the manifest itself"
                        " (Parseq's 'Copy manifest') into parseq_manifest, or name a manifest file inside the"
                        " output folder or the allowed input folders")
    if names_file(text):  # only reached where no job reads it (render.inputs inlines it for a job)
        raise ExprError(f"parseq_manifest names the file {text[:80]!r}, which is read only for a job: paste the"
                        " manifest itself to check it here")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ExprError(f"parseq_manifest is not JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ExprError("parseq_manifest is nested too deeply") from None
    except ExprError:  # NaN or Infinity (an ExprError is a ValueError too)
        raise
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise ExprError("parseq_manifest holds a number with too many digits") from None


def _option(options: dict, name: str, lo: float, hi: float) -> float | None:
    value = options.get(name)
    if value in (None, "", 0):
        return None
    if not _is_number(value) or not lo <= value <= hi:
        raise ExprError(f"parseq_manifest options.{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_frames(frames: list) -> list[str]:
    """Each entry a frame number and numbers (a prompt text); the first holds every field."""
    seen: set[int] = set()
    for i, entry in enumerate(frames):
        if not isinstance(entry, dict):
            raise ExprError(f"parseq_manifest rendered_frames[{i}] is not an object")
        frame = entry.get("frame")
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame < MAX_RENDERED_FRAMES:
            raise ExprError(f"parseq_manifest rendered_frames[{i}] has no frame number (got {frame!r})")
        seen.add(frame)
        for name, value in entry.items():
            if name == PROMPT_FIELD:
                if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
                    raise ExprError(f"parseq_manifest frame {frame}: deforum_prompt must be text"
                                    f" (at most {MAX_PROMPT_CHARS} characters)")
            elif not _is_number(value):
                raise ExprError(f"parseq_manifest frame {frame}: {name} must be a number, got {json.dumps(value)[:40]}")
    if 0 not in seen:
        raise ExprError("parseq_manifest has no frame 0")
    warnings = []
    missing = len(frames) != max(seen) + 1 or len(seen) != len(frames)
    if missing:
        warnings.append(f"parseq_manifest: frame numbers 0..{max(seen)} are not each given once ({len(frames)}"
                        " entries); a frame it skips holds the value before it, a repeated one: the later wins")
    return warnings
