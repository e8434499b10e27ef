"""Deforum's Guided Images (``use_looper``, ``init_images``): pictures the video passes through
at given frames (docs/keyframes.md).

``init_images`` is a JSON object (Deforum keeps it as JSON text) of frame key -> image file.
A key is a number or an expression of ``max_f`` (max_frames - 1), evaluated by
config/schedule.py's evaluator, never by ``eval``. Deforum takes the keys in the JSON's
order; they are sorted by frame here (for keys already in order the two agree). The image in
force at frame f is the one of the last key <= f, the first image before the first key
(Deforum's count of the later keys each frame has reached).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import values
from .schedule import ExprError, evaluate_number

# Deforum applies guided images in these animation modes only (generate.py).
GUIDED_MODES = ("2D", "3D")
MAX_KEYFRAMES = 1000


@dataclass(frozen=True)
class Keyframe:
    frame: int  # output frame the image is pinned to
    image: str  # the image file as the settings name it
    key: str  # the key as written


def guided_images_of(raw: dict) -> dict | None:
    """The ``init_images`` object of settings that use guided images, else None; ExprError
    (one line) when it is not a JSON object of key -> file name."""
    if not values.truthy(raw.get("use_looper", False)):
        return None
    if str(raw.get("animation_mode", "2D")) not in GUIDED_MODES:
        return None
    given = raw.get("init_images")
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except ValueError as exc:
            raise ExprError(f"init_images is not JSON ({exc})") from None
    if not isinstance(given, dict) or not given:
        raise ExprError("init_images must be a JSON object of frame -> image file, e.g. {\"0\": \"a.png\"}")
    if len(given) > MAX_KEYFRAMES:
        raise ExprError(f"init_images holds {len(given)} images; at most {MAX_KEYFRAMES}")
    return given


def read_keyframes(raw: dict, max_frames: int) -> list[Keyframe]:
    """The guided images sorted by frame; [] without them. ExprError names the bad one."""
    given = guided_images_of(raw)
    if given is None:
        return []
    out: dict[int, Keyframe] = {}
    for key, image in given.items():
        frame = frame_of(str(key), max_frames)
        if frame >= max_frames:
            raise ExprError(f"init_images key {key!r} is frame {frame}, past the last frame {max_frames - 1}"
                            f" (max_frames {max_frames})")
        if not isinstance(image, str) or not image.strip():
            raise ExprError(f"init_images key {key!r} must name an image file, got {image!r}")
        name = values.path(image.strip(), f"init_images key {key!r}")
        if "://" in name:
            raise ExprError(f"init_images key {key!r}: {name[:120]!r} is a URL (the render reads local files"
                            " only); download it into the output folder")
        if frame in out:
            raise ExprError(f"init_images keys {out[frame].key!r} and {key!r} are both frame {frame}")
        out[frame] = Keyframe(frame, name, str(key))
    return [out[f] for f in sorted(out)]


def frame_of(key: str, max_frames: int) -> int:
    """A key's frame: a number or an expression of ``max_f``, cut to a whole frame toward
    zero as Deforum's ``int(numexpr.evaluate(key))`` does (``max_f/4-5`` of 120 frames is 24)."""
    try:
        value = evaluate_number(key.strip(), max_f=max_frames - 1)
    except ExprError as exc:
        raise ExprError(f"init_images key {key!r}: {exc}") from None
    if value < 0:
        raise ExprError(f"init_images key {key!r} is negative ({value:g})")
    return int(value)


def image_at(keyframes: list[Keyframe], frame: int) -> str:
    """The image in force at ``frame``: the last key <= frame, the first before any."""
    current = keyframes[0].image if keyframes else ""
    for k in keyframes:
        if k.frame <= frame:
            current = k.image
    return current


def with_images(raw: dict, images: dict[str, str]) -> dict:
    """``raw`` with ``init_images`` naming ``images`` (key as written -> new file name),
    kept as JSON text when it was (the run's saved settings name the files read)."""
    given = guided_images_of(raw) or {}
    replaced = {key: images.get(str(key), value) for key, value in given.items()}
    out = dict(raw)
    out["init_images"] = json.dumps(replaced, indent=4) if isinstance(raw.get("init_images"), str) else replaced
    return out
