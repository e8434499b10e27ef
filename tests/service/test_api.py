"""``/wan_api/`` served by a real uvicorn on a free local port, called with httpx."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from helpers import LONG, QUICK, settings, wait_for, worker_env  # noqa: E402

from deforum_wan.service.api import mount_api  # noqa: E402
from deforum_wan.service.jobs import JobManager  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def manager(tiny_models_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    jobs = JobManager(root / "jobs.db", root / "out", models_dir=str(tiny_models_dir), env=worker_env())
    yield jobs
    jobs.shutdown()


@pytest.fixture(scope="module")
def client(manager):
    app = fastapi.FastAPI()
    mount_api(app, manager)
    mount_api(app, manager)  # a UI reload mounts again: routes are replaced, not doubled
    assert sum(getattr(r, "path", "") == "/wan_api/jobs" for r in app.router.routes) == 3  # GET, POST, 405
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http
    server.should_exit = True
    thread.join(10)
    sock.close()


def job_count(client) -> int:
    return len(client.get("/wan_api/jobs").json()["jobs"])


def poll_done(client, job_id: str, timeout: float = 90) -> dict:
    def status():
        job = client.get(f"/wan_api/jobs/{job_id}").json()
        return job if job["status"] not in ("queued", "running") else None
    return wait_for(status, timeout, f"job {job_id}", interval=0.2)


def test_submit_and_poll_to_done(client):
    r = client.post("/wan_api/jobs", json={"settings": settings(QUICK), "name": "api quick"})
    assert r.status_code == 200, r.text
    (job_id,) = r.json()["jobs"]
    job = poll_done(client, job_id)
    assert job["status"] == "done", job
    assert job["name"] == "api quick" and job["progress"]["frames_written"] == 12
    assert job_id in [j["id"] for j in client.get("/wan_api/jobs").json()["jobs"]]

    video = client.get(f"/wan_api/jobs/{job_id}/video")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    preview = client.get(f"/wan_api/jobs/{job_id}/preview")
    assert preview.status_code == 200 and preview.content[:8] == b"\x89PNG\r\n\x1a\n"
    drift = client.get(f"/wan_api/jobs/{job_id}/drift")  # the chart next to the manifest
    assert drift.status_code == 200 and drift.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(job["drift_chart"]).read_bytes() == drift.content


def test_batch_and_cancel(client):
    r = client.post("/wan_api/jobs", json={"batch": [{"settings": settings(LONG), "name": "long"},
                                                     {"settings": settings(QUICK)}]})
    assert r.status_code == 200, r.text
    long_id, quick_id = r.json()["jobs"]
    r = client.post(f"/wan_api/jobs/{quick_id}/cancel")
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert r.json()["job"]["status"] == "cancelled"
    wait_for(lambda: client.get(f"/wan_api/jobs/{long_id}").json()["status"] == "running", 60, "the long job")
    assert client.post(f"/wan_api/jobs/{long_id}/cancel").json()["cancelled"] is True
    assert poll_done(client, long_id)["status"] in ("interrupted", "cancelled")


BIG_NEST = "[" * 100_000 + "]" * 100_000

BAD_PAYLOADS = [
    # (body, expected status, part of the error)
    (b"not json", 400, "not JSON"),
    (b"", 400, "not JSON"),
    (b"\xff\xfe\x00", 400, "UTF-8"),
    (BIG_NEST.encode(), 400, "nested"),
    ([], 422, "JSON object"),
    ({}, 422, "settings"),
    ({"settings": "W=64"}, 422, "settings"),
    ({"settings": {"W": "wide"}}, 422, "W must be a number"),
    ({"settings": settings(QUICK), "name": 5}, 422, "name"),
    ({"settings": settings(QUICK), "outdir": "/tmp"}, 422, "unknown field 'outdir'"),
    ({"batch": []}, 422, "non-empty list"),
    ({"batch": "x"}, 422, "non-empty list"),
    ({"batch": [{"settings": settings(QUICK)}], "settings": {}}, 422, "either"),
    ({"batch": [{"settings": settings(QUICK)}, {"settings": settings(QUICK, fps="fast")}]}, 422, "fps"),
    ({"batch": [{"settings": settings(QUICK)}, "x"]}, 422, "batch item 2"),
    ({"settings": settings(QUICK, prompts={"-5": "before time"})}, 422, "negative"),
    # Requests cannot make the server read its own files.
    ({"settings": settings(QUICK, use_init=True, init_image="/etc/hostname")}, 422, "init_image"),
    ({"settings": settings(QUICK, use_init=True, init_image="../../../etc/hostname")}, 422, "init_image"),
    ({"settings": settings(QUICK, use_init="yes", init_image="/etc/hostname")}, 422, "init_image"),
    ({"settings": settings(QUICK, use_init=1, init_image="/etc/hostname")}, 422, "init_image"),
    ({"settings": settings(QUICK, add_soundtrack="File", soundtrack_path="/etc/hostname")}, 422,
     "soundtrack_path"),
    ({"settings": settings(QUICK, wan_loras=[{"path": "/etc/x.safetensors", "weight": 1}])}, 422, "wan_loras"),
    ({"settings": settings(QUICK, wan_loras=["../../x.safetensors"])}, 422, "wan_loras"),
    ({"settings": settings(QUICK, wan_distill_lora="/etc/x.safetensors")}, 422, "wan_distill_lora"),
    # Payloads that could only fail later are refused now.
    ({"settings": settings(QUICK, batch_name=".")}, 422, "names no folder"),
    ({"settings": settings(QUICK, batch_name="./")}, 422, "names no folder"),
    ({"settings": settings(QUICK, add_soundtrack="File", soundtrack_path="None")}, 422, "soundtrack_path"),
    ({"settings": settings(QUICK, use_init=True, init_image="https://example.com/a.png")}, 422, "is a URL"),
    ({"settings": settings(QUICK, resume_from_timestring=True, resume_timestring="20200101000000")}, 422,
     "no such run"),
    ({"settings": settings(QUICK, wan_loras=["model.ckpt"])}, 422, "wan_loras"),
    # Hostile values: one line and 422, never a 500.
    ({"settings": settings(QUICK, wan_preset=["fast"])}, 422, "wan_preset must be text"),
    ({"settings": settings(QUICK, wan_preset={"a": 1})}, 422, "wan_preset must be text"),
    ({"settings": settings(QUICK, cfg_scale_schedule="0: (log(2,1))")}, 422, "log()"),
    ({"settings": settings(QUICK, cfg_scale_schedule="0: (10**10**10)")}, 422, "too large"),
    ({"settings": settings(QUICK, cfg_scale_schedule="0: ((-8)**0.5)")}, 422, "not a real number"),
    ({"settings": settings(QUICK, fps=10**400)}, 422, "fps holds an integer"),
    ({"settings": settings(QUICK, prompts={"0": "a \ud800"})}, 422, "lone surrogate"),
    ({"settings": settings(QUICK, batch_name="\udcff")}, 422, "lone surrogate"),
    ({"settings": settings(QUICK), "name": "job \ud800"}, 422, "the job name holds a lone surrogate"),
    ({"settings": settings(QUICK, use_init=True, init_image="a\x00.png")}, 422, "init_image"),
    ({"settings": settings(QUICK, use_init=True, init_image="\ud800.png")}, 422, "init_image"),
    ({"settings": settings(QUICK, use_init=True, init_image="a" * 5000)}, 422, "init_image"),
    ({"settings": settings(QUICK, add_soundtrack="File", soundtrack_path="a\x00.wav")}, 422, "soundtrack_path"),
    ({"settings": settings(QUICK, wan_loras=["a\x00.safetensors"])}, 422, "wan_loras"),
    ({"settings": settings(QUICK, wan_loras=[{"path": "a" * 5000}])}, 422, "wan_loras"),
]


@pytest.mark.parametrize("body, status, message", BAD_PAYLOADS,
                         ids=[f"{i}-{s}" for i, (_, s, _m) in enumerate(BAD_PAYLOADS)])
def test_bad_payloads_are_refused_and_nothing_is_queued(client, body, status, message):
    before = job_count(client)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post("/wan_api/jobs", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and "\n" not in error
    assert job_count(client) == before


def test_unknown_jobs_are_404(client):
    for method, path in [("GET", "/wan_api/jobs/nope"), ("POST", "/wan_api/jobs/nope/cancel"),
                         ("POST", "/wan_api/jobs/nope/resume"), ("GET", "/wan_api/jobs/nope/video")]:
        r = client.request(method, path)
        assert r.status_code == 404, (path, r.text)
        assert "nope" in r.json()["error"]


def test_plan_needs_no_gpu_and_validates(client):
    r = client.post("/wan_api/plan", json={"settings": settings(QUICK)})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["max_frames"] == 12 and len(plan["windows"]) == 2
    r = client.post("/wan_api/plan", json={"settings": {"W": "wide"}})
    assert r.status_code == 422 and "W must be a number" in r.json()["error"]


def test_plan_names_each_models_memory_as_the_command_line_does(client, tiny_models_dir, tmp_path, capsys,
                                                                 monkeypatch):
    from deforum_wan.cli.main import main

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(settings(QUICK)))
    assert main(["plan", str(path), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["memory"]
    r = client.post("/wan_api/plan", json={"settings": settings(QUICK)})
    assert r.status_code == 200, r.text
    memory = r.json()["memory"]
    assert memory == cli and list(memory) == ["tiny-random", "tiny-random-i2v"]  # the planner's I2V partner too
    parts = {p["part"]: p for p in memory["tiny-random"]}
    assert set(parts) == {"transformer", "text_encoder", "vae"} and all(p["bytes"] > 0 for p in parts.values())


def test_every_key_of_the_table_is_read_and_checked_by_the_api(client, manager):
    from helpers import BAD

    from deforum_wan.config.keys import KEYS

    # /plan checks a job as /jobs does: the LoRA file the example names must be there.
    manager.outdir.mkdir(parents=True, exist_ok=True)
    (manager.outdir / "style.safetensors").write_bytes(b"")
    # and the control video wan_control's example names
    from counter_video import write_counter_video

    write_counter_video(manager.outdir / "edges.mp4", QUICK["max_frames"], fps=15)
    for key in KEYS:
        needs = {"wan_model": "tiny-random-vace"} if key.name == "wan_control" else {}  # control: VACE only
        r = client.post("/wan_api/plan", json={"settings": settings(QUICK, **needs, **{key.name: key.example})})
        assert r.status_code == 200, (key.name, r.text)
        if key.kind in BAD:
            r = client.post("/wan_api/plan", json={"settings": settings(QUICK, **{key.name: BAD[key.kind]})})
            assert r.status_code == 422 and (key.name in r.json()["error"] or "unknown model" in r.json()["error"])


def test_models_lists_the_registry_with_local_presence(client):
    r = client.get("/wan_api/models")
    assert r.status_code == 200
    models = {m["id"]: m for m in r.json()["models"]}
    assert models["tiny-random"]["present"] is True
    assert models["wan2.1-t2v-1.3b"]["diffusers_repo"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def test_queue_controls_and_openapi(client):
    for action in ("interrupt", "skip", "start"):
        r = client.post(f"/wan_api/{action}")
        assert r.status_code == 200 and "state" in r.json()
    # The host's /docs must keep working with these routes in it.
    paths = client.get("/openapi.json").json()["paths"]
    assert "/wan_api/jobs/{job_id}/cancel" in paths


def test_init_image_inside_the_output_folder_is_accepted(client, manager):
    from PIL import Image

    manager.outdir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(manager.outdir / "start.png")
    r = client.post("/wan_api/jobs", json={"settings": settings(QUICK, use_init=True, init_image="start.png")})
    assert r.status_code == 200, r.text
    (job_id,) = r.json()["jobs"]
    job = poll_done(client, job_id)
    assert job["status"] == "done", job
    assert client.get(f"/wan_api/jobs/{job_id}/preview").status_code == 200


def test_lora_in_the_models_folder_is_accepted(client, manager, tiny_lora):
    import shutil

    shutil.copy(tiny_lora, Path(manager.models_dir) / "style.safetensors")
    r = client.post("/wan_api/jobs", json={"settings": settings(QUICK, wan_loras=[{"path": "style.safetensors",
                                                                                   "weight": 0.5}])})
    assert r.status_code == 200, r.text
    (job_id,) = r.json()["jobs"]
    job = poll_done(client, job_id)
    assert job["status"] == "done", job
