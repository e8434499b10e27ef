"""Parseq files planned here against what Deforum's own code gives for them, frame by frame
(tests/fixtures/parseq: manifests from Parseq's renderer, values from Deforum; NOTE.md)."""
import json

import pytest
from helpers import FIXTURES

from deforum_wan.cli.main import main

CASES = sorted(p.name.removesuffix(".settings.json") for p in (FIXTURES / "parseq").glob("*.settings.json"))
TOLERANCE = 2e-6  # Deforum's values are rounded to 6 decimals


def planned(case: str, capsys) -> dict:
    assert main(["plan", str(FIXTURES / "parseq" / f"{case}.settings.json"), "--json", "--frames"]) == 0
    return json.loads(capsys.readouterr().out)


def test_every_case_is_here():
    assert len(CASES) >= 7


@pytest.mark.parametrize("case", CASES)
def test_plan_frames_are_deforums(case, capsys):
    deforum = json.loads((FIXTURES / "parseq" / f"{case}.deforum.json").read_text())
    ours = planned(case, capsys)
    assert (ours["max_frames"], ours["fps"]) == (deforum["max_frames"], deforum["fps"])
    assert len(ours["frames"]) == len(deforum["frames"])
    skipped = set(deforum.get("not_compared", {}))
    for mine, theirs in zip(ours["frames"], deforum["frames"]):
        f = theirs["frame"]
        assert mine["frame"] == f
        # Deforum's negative prompt keeps the space after its --neg: compared with the ends stripped
        assert (mine["prompt"], mine["negative_prompt"]) == (theirs["prompt"].strip(), theirs["negative_prompt"].strip()), f
        for key in ("seed", "subseed"):
            if key not in skipped:
                assert mine[key] == theirs[key], (f, key)
        for key in ("subseed_strength", "cfg", "strength"):
            assert mine[key] == pytest.approx(theirs[key], abs=TOLERANCE), (f, key)
        for key, value in theirs["camera"].items():  # frame 0: none (Deforum warps nothing into it)
            assert mine["camera"][key] == pytest.approx(value, abs=TOLERANCE), (f, key)


def test_where_deforum_gives_random_seeds_the_files_seed_is_used(capsys):
    # weights_flip: seed_behavior schedule, no seed in the manifest; Deforum's schedule has s = -1
    ours = planned("weights_flip", capsys)
    settings = json.loads((FIXTURES / "parseq" / "weights_flip.settings.json").read_text())
    assert settings["seed_behavior"] == "schedule"
    assert all(frame["seed"] != -1 for frame in ours["frames"])
