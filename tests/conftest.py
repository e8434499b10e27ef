import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example_settings.txt"


def _deforum_settings_dir() -> Path | None:
    # Real Deforum files live beside the project (never committed; see the README).
    env = os.environ.get("DEFORUM_SETTINGS_DIR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "deforum-settings"]:
        if candidate.is_dir():
            return candidate
    return None


DEFORUM_DIR = _deforum_settings_dir()


def real_settings_files() -> list[Path]:
    if DEFORUM_DIR is None:
        return []
    return sorted(p for p in DEFORUM_DIR.iterdir() if p.suffix in (".txt", ".json"))


@pytest.fixture
def deforum_dir() -> Path:
    if DEFORUM_DIR is None:
        pytest.skip("real Deforum settings not found (set DEFORUM_SETTINGS_DIR)")
    return DEFORUM_DIR


# Fuzzing depth: HYPOTHESIS_PROFILE=deep for a long local run.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("default", max_examples=300, deadline=None)
_hsettings.register_profile("deep", max_examples=5000, deadline=None)
_hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
