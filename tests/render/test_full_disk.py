"""A disk that fills up in the mp4 step: ffmpeg fails for lack of space, and the manifest (which
has no room for a new file either) still says the run failed, not running. On a real, tiny
tmpfs mounted in a user namespace (``unshare -rm``); skipped where that is not allowed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

SCRIPT = r"""
import errno, json, sys
from pathlib import Path
from PIL import Image
from deforum_wan.errors import WanError
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.names import frame_path
from deforum_wan.render.video import make_video

run = Path(sys.argv[1])
ts = "20240101000000"
for i in range(4):
    Image.new("RGB", (16, 16), (60 * i, 10, 10)).save(frame_path(run, ts, i))
manifest = Manifest(run / f"{ts}_manifest.json", ts, "hash", windows=[{"index": 0}], frames_written=4)
manifest.save()
with open(run / "filler", "wb", buffering=0) as f:  # the disk is full now
    try:
        while True:
            f.write(b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
outcome = {}
try:
    make_video(run, ts, 8, 4)
except WanError as exc:
    outcome["video_error"] = str(exc)
try:
    manifest.set_status("failed")  # what the render loop does when the video step fails
except WanError as exc:
    outcome["status_error"] = str(exc)
outcome["on_disk"] = Manifest.load(manifest.path).status
outcome["frames"] = len(list(run.glob(f"{ts}_0*.png")))
print(json.dumps(outcome))
"""


def test_a_full_disk_in_the_mp4_step_leaves_the_manifest_failed(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    cmd = ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=256k tmpfs "$1" && shift && exec "$@"', "sh",
           str(disk), sys.executable, "-c", SCRIPT, str(disk)]
    env = {"PYTHONPATH": str(ROOT / "scripts"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{disk}"'],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.strip()}")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert "video_error" in outcome, outcome  # ffmpeg really ran out of space
    assert outcome["on_disk"] == "failed" and "status_error" not in outcome, outcome
    assert outcome["frames"] == 4  # the frames are kept for a resume
