"""Deforum's guided images (use_looper, init_images): keys as Deforum evaluates them, the image
in force at each frame against Deforum's own code, and each bad keyframe one line."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import FIXTURES, settings
from PIL import Image

from deforum_wan.config.keyframes import image_at, read_keyframes
from deforum_wan.errors import SettingsError, WanError
from deforum_wan.render.job import JobSpec, check_job

TABLE = json.loads((FIXTURES / "deforum_guided_images" / "table.json").read_text())


@pytest.mark.parametrize("case", TABLE, ids=lambda c: c["init_images"][:40])
def test_image_at_each_frame_is_deforums(case):
    keys = read_keyframes({"use_looper": True, "init_images": case["init_images"]}, case["max_frames"])
    assert [image_at(keys, f) for f in range(case["max_frames"])] == case["images"]


def test_keys_are_sorted_by_frame_and_expressions_cut_to_whole_frames():
    given = {"max_f/2": "b.png", "0": "a.png", "max_f/4-5": "c.png"}
    keys = read_keyframes({"use_looper": "true", "init_images": given}, 120)
    assert [(k.frame, k.image, k.key) for k in keys] == [(0, "a.png", "0"), (24, "c.png", "max_f/4-5"),
                                                          (59, "b.png", "max_f/2")]


def test_guided_images_apply_in_2d_and_3d_only_as_in_deforum():
    given = {"use_looper": True, "init_images": {"0": "a.png"}}
    assert read_keyframes({**given, "animation_mode": "3D"}, 10)
    assert read_keyframes({**given, "animation_mode": "Video Input"}, 10) == []
    assert read_keyframes({**given, "use_looper": False}, 10) == []


def test_an_eval_escape_is_not_evaluated():
    with pytest.raises(ValueError, match="init_images key"):
        read_keyframes({"use_looper": True, "init_images": {"__import__('os').getpid()": "a.png"}}, 10)


def _png(path, color):
    Image.fromarray(np.full((64, 64, 3), color, np.uint8)).save(path)
    return path


def _job(out, images, **more):
    return JobSpec(settings({"animation_mode": "2D", "use_looper": True, "init_images": json.dumps(images),
                             "max_frames": 20, "wan_camera": "off", **more}), name="kf")


def test_good_keyframes_are_confined_to_absolute_paths(tmp_path):
    _png(tmp_path / "a.png", 10)
    _png(tmp_path / "b.png", 200)
    checked = check_job(_job(tmp_path, {"0": "a.png", "max_f/2": "b.png"}), tmp_path)
    assert [k.image for k in checked.settings.keyframes] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert [k.frame for k in checked.settings.keyframes] == [0, 9]
    assert checked.settings.seed_behavior == "schedule"  # Deforum forces it with guided images


@pytest.mark.parametrize("images, message", [
    ({"0": "missing.png"}, "init_images key '0': 'missing.png' must name an existing file"),
    ({"0": "a.png", "20": "a.png"}, "init_images key '20' is frame 20, past the last frame 19"),
    ({"0": "a.png", "max_f+1": "a.png"}, "init_images key 'max_f\\+1' is frame 20, past the last frame 19"),
    ({"-3": "a.png"}, "init_images key '-3' is negative"),
    ({"0": "notes.txt"}, "init_images key '0' .*notes.txt: not a PNG, JPEG"),
    ({"0": "../outside.png"}, "init_images key '0': '../outside.png' must name an existing file"),
    ({"0": "https://deforum.github.io/a1/Gi1.png"}, "is a URL"),
    ({"0": "a.png", "0.0": "a.png"}, "are both frame 0"),
])
def test_a_bad_keyframe_is_one_line(tmp_path, images, message):
    out = tmp_path / "out"
    out.mkdir()
    _png(out / "a.png", 10)
    _png(tmp_path / "outside.png", 10)
    (out / "notes.txt").write_text("not an image")
    with pytest.raises((SettingsError, WanError), match=message) as info:
        check_job(_job(out, images), out)
    assert "\n" not in str(info.value)
