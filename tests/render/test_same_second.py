"""Two renders started together into one fixed batch folder (a batch_name without
{timestring}): each claims its own timestring, both finish. Real processes on the tiny model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, worker_env

pytestmark = pytest.mark.slow

SETTINGS = {"max_frames": 8, "W": 32, "H": 32, "fps": 8, "prompts": {"0": "a lighthouse"}, "steps": 2,
            "seed": 1, "seed_behavior": "fixed", "wan_model": "tiny-random", "cfg_scale_schedule": "0: (5)",
            "batch_name": "together"}


def test_two_renders_started_together_into_a_fixed_folder_both_finish(tmp_path, tiny_models_dir):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS), encoding="utf-8")
    out = tmp_path / "out"
    env = dict(worker_env(), PYTHONPATH=str(ROOT / "scripts"))
    cmd = [sys.executable, "-m", "deforum_wan", "render", str(settings), "--outdir", str(out),
           "--models-dir", str(tiny_models_dir)]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-800:] for e in errors]
    stamps = sorted(p.name[:14] for p in (out / "together").glob("*_settings.txt"))
    assert len(stamps) == 2 and stamps[0] != stamps[1], stamps
    for ts in stamps:
        assert (out / "together" / f"{ts}.mp4").is_file()
        assert len(list((out / "together").glob(f"{ts}_[0-9]*.png"))) == 8
