"""The Wan tab on the WebUIs' gradio: 3.41.2 (A1111 v1.10.1) and 4.40.0 (Forge), each in its
own venv made by .ci/gradio-envs.sh (skipped when that venv is missing)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, real_settings_files

SCRIPT = ROOT / "tests" / "gradio_version_check.py"
VENVS = {"3.41.2": ROOT / ".venv-gradio3", "4.40.0": ROOT / ".venv-gradio4"}


@pytest.mark.parametrize("version", list(VENVS))
def test_tab_builds_and_maps_fields(version):
    venv = VENVS[version]
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.exists():
        pytest.skip(f"{venv.name} is missing; create it with .ci/gradio-envs.sh")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("PYTHONHOME", None)
    files = [str(p) for p in real_settings_files()] or [str(ROOT / "examples" / "example_settings.txt")]
    proc = subprocess.run([str(python), str(SCRIPT), *files], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gradio"] == version
    assert result["page"] == 200 and result["config"] == 200
    assert result["db_served"] is False  # gradio's file route never hands out the job database
    guarded = result["guarded"]  # the page, its config, its queue: the guard's 403 for foreign ones
    assert guarded["foreign_host"][:3] == [403] * 3 and guarded["foreign_origin"][:3] == [403] * 3, guarded
    assert guarded["own"][:2] == [200, 200] and guarded["own"][2] not in (401, 403), guarded
    if version.startswith("3."):  # the queue's websocket
        assert guarded["foreign_origin"][3] == "refused" and guarded["own"][3] == "send_hash", guarded
        # A raw value naming a server file: refused before gradio 3 copies it; a received one read.
        named = result["named_files"]
        assert all(named[f"{f}_outside"].startswith("refused: ") for f in ("import", "soundtrack_upload")), named
        assert named["import_received"] == named["soundtrack_upload_received"] == "read", named
    assert result["components"] > 40 and result["dependencies"] >= 14
    assert result["round_trips"] == len(files)
    assert result["poll"] == "idle: no jobs yet"
    assert result["unprompted_warnings"] == []  # gradio 4's client warns on no call the page makes by itself
    assert result["task_js"] == result["task_buttons"]  # the WebUI's progress bar is asked for
    assert result["preset_choices"] == ["quality", "balanced", "fast", "low-vram"] and result["preset_info"]
    assert result["gpus_value"] == 1
    assert result["preset_settings"] == ["low-vram", 2, "group", True]
