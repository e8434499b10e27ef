"""A mistake on the command line is one ``error:`` line and a non-zero exit, never a traceback,
and it is found before the work starts (a bench's output file before its minutes of runs).
Each command runs as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, worker_env

from deforum_wan.config.settings import load_settings
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.names import write_settings
from deforum_wan.render.run_folder import RunFolder

TS = "20240101000000"
RUN = {"max_frames": 8, "W": 32, "H": 32, "prompts": {"0": "a"}, "wan_model": "tiny-random", "steps": 2,
       "batch_name": "fifo", "cfg_scale_schedule": "0: (5)", "animation_mode": "None"}


def fifo_lock(tmp_path) -> list[str]:
    """An interrupted run whose lock file is a FIFO: its resume."""
    out = tmp_path / "out"
    settings_file = tmp_path / "run.json"
    settings_file.write_text(json.dumps(RUN), encoding="utf-8")
    folder = RunFolder.of(out, load_settings(dict(RUN)), TS)
    folder.dir.mkdir(parents=True)
    write_settings(folder.settings_file, RUN)
    Manifest(folder.manifest_file, TS, status="interrupted").save()
    os.mkfifo(folder.dir / f"{TS}_render.lock")
    return ["render", str(settings_file), "--outdir", str(out), "--resume", TS]


CASES = {
    "tiny-models into /proc": lambda tmp_path: ["tiny-models", "/proc"],
    "bench --repeat 0": lambda tmp_path: ["bench", "--repeat", "0"],
    "bench --threads -1": lambda tmp_path: ["bench", "--threads", "-1"],
    "bench --json-file in a missing folder": lambda tmp_path: ["bench", "--json-file", str(tmp_path / "no" / "x.json")],
    "a FIFO as the run lock": fifo_lock,
}


@pytest.mark.parametrize("case", CASES)
def test_a_command_line_mistake_is_one_error_line(case, tmp_path):
    if case == "a FIFO as the run lock" and not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs are POSIX")
    env = dict(worker_env(), PYTHONPATH=str(ROOT / "scripts"))
    done = subprocess.run([sys.executable, "-m", "deforum_wan", *CASES[case](tmp_path)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL)
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert done.returncode != 0 and len(errors) == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
