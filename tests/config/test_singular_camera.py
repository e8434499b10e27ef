"""A camera that cannot be inverted (zoom 0, a perspective flip seen edge-on, a field of view
of 0 or 180 degrees) is one line through every door: the settings, ``plan`` on the command
line and /wan_api/plan on a real uvicorn (422, not a 500)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError

BASE = {"animation_mode": "2D", "max_frames": 24, "prompts": {"0": "a"}, "wan_model": "tiny-random"}
SINGULAR = [
    ({"zoom": "0: (1.0), 12: (0)"}, "zoom 0 at frame 12 makes the 2D warp singular"),
    ({"enable_perspective_flip": True, "perspective_flip_phi": "0: (90)"}, "phi 90, gamma 0, fv 53 at frame 0"),
    ({"enable_perspective_flip": True, "perspective_flip_gamma": "0: (0), 5: (90)"}, "gamma 90, fv 53 at frame 5"),
    ({"enable_perspective_flip": True, "perspective_flip_fv": "0: (180)"}, "fv 180 at frame 0 makes the 2D warp"),
    ({"animation_mode": "3D", "fov_schedule": "0: (180)"}, "fov 180 at frame 0 makes the 3D projection singular"),
    ({"animation_mode": "3D", "fov_schedule": "0: (70), 3: (0)"}, "fov 0 at frame 3 makes the 3D projection"),
]


@pytest.mark.parametrize("extra, line", SINGULAR)
def test_a_singular_camera_is_refused_in_one_line(extra, line):
    with pytest.raises(SettingsError) as err:
        load_settings({**BASE, **extra})
    assert line in str(err.value) and "\n" not in str(err.value)


def test_nearly_edge_on_is_still_a_camera():
    settings = load_settings({**BASE, "enable_perspective_flip": True, "perspective_flip_phi": "0: (89)"})
    assert settings.camera.mode == "2D" and settings.camera.flip


def test_the_command_line_plan_says_it_in_one_line(tmp_path):
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps({**BASE, **SINGULAR[0][0]}))
    done = subprocess.run([sys.executable, "-m", "deforum_wan", "plan", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and SINGULAR[0][1] in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_api_plan_answers_422_not_500(tmp_path):
    httpx = pytest.importorskip("httpx")
    fastapi = pytest.importorskip("fastapi")
    from helpers import Served

    from deforum_wan.service.api import mount_api
    from deforum_wan.service.jobs import JobManager

    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", python="false")
    app = fastapi.FastAPI()
    mount_api(app, manager)
    try:
        with Served(app) as served, httpx.Client(base_url=served.url, timeout=60) as http:
            for extra, line in SINGULAR:
                for route in ("/wan_api/plan", "/wan_api/jobs"):
                    r = http.post(route, json={"settings": {**BASE, **extra}})
                    assert r.status_code == 422 and line in r.json()["error"], (route, r.status_code, r.text)
            assert http.get("/wan_api/jobs").json()["jobs"] == []  # nothing queued
    finally:
        manager.shutdown()
