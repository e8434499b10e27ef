"""Parseq settings files plan frame for frame as Deforum runs them.

Each case in tests/fixtures/parseq holds a settings file whose manifest Parseq's own renderer
made, and the per-frame values Deforum's own code gives for it (NOTE.md there says how). The
plan's ``--json --frames`` output must give the same prompts, seeds, CFG, strength and camera.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from deforum_wan.cli.main import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parseq"
CASES = sorted(p.name[:-len(".deforum.json")] for p in FIXTURES.glob("*.deforum.json"))
TOL = 1e-4
NUMBERS = ("subseed_strength", "cfg", "strength")
INTEGERS = ("frame", "seed", "subseed")


def plan_frames(settings: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["plan", str(settings), "--json", "--frames", "--model", "tiny-random"]) == 0
    return json.loads(capsys.readouterr().out)


def differences(case: str, expected: dict, got: dict) -> list[str]:
    """Every value where the plan's frame differs from Deforum's, one line each."""
    skip = set(expected.get("not_compared", {}))
    out = []
    for key in ("max_frames", "fps"):
        if not math.isclose(got.get(key, math.nan), expected[key], abs_tol=TOL):
            out.append(f"{case}: {key} {got.get(key)!r}, Deforum {expected[key]!r}")
    frames = got.get("frames", [])
    if len(frames) != len(expected["frames"]):
        out.append(f"{case}: {len(frames)} frames, Deforum {len(expected['frames'])}")
    for want, have in zip(expected["frames"], frames):
        where = f"{case} frame {want['frame']}"
        for key in INTEGERS:
            if key not in skip and have.get(key) != want[key]:
                out.append(f"{where}: {key} {have.get(key)!r}, Deforum {want[key]!r}")
        for key in NUMBERS:
            value = have.get(key)
            if not isinstance(value, (int, float)) or not math.isclose(value, want[key], abs_tol=TOL):
                out.append(f"{where}: {key} {value!r}, Deforum {want[key]!r}")
        for key in ("prompt", "negative_prompt"):  # Deforum's negative starts with a space
            if str(have.get(key)).strip() != want[key].strip():
                out.append(f"{where}: {key} {have.get(key)!r}, Deforum {want[key]!r}")
        camera = have.get("camera", {})
        for key, value in want["camera"].items():
            if not isinstance(camera.get(key), (int, float)) or not math.isclose(camera[key], value, abs_tol=TOL):
                out.append(f"{where}: camera {key} {camera.get(key)!r}, Deforum {value!r}")
    return out


def test_every_case_has_its_settings_file_and_frames():
    assert len(CASES) == 7
    for case in CASES:
        settings = json.loads((FIXTURES / f"{case}.settings.json").read_text())
        manifest = json.loads(settings["parseq_manifest"])  # stored as Deforum stores it: JSON text
        assert manifest["rendered_frames"] and manifest["options"]["output_fps"] > 0
        expected = json.loads((FIXTURES / f"{case}.deforum.json").read_text())
        assert [f["frame"] for f in expected["frames"]] == list(range(expected["max_frames"]))


@pytest.mark.parametrize("case", CASES)
def test_plan_frames_match_deforum(case, capsys):
    expected = json.loads((FIXTURES / f"{case}.deforum.json").read_text())
    got = plan_frames(FIXTURES / f"{case}.settings.json", capsys)
    wrong = differences(case, expected, got)
    assert not wrong, f"{len(wrong)} values differ from Deforum's:\n" + "\n".join(wrong[:25])
