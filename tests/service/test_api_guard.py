"""Hostile requests against ``/wan_api/`` on a real uvicorn: wrong content types, huge and
chunked bodies, foreign Hosts and Origins, missing auth, wrong methods, a planner kept busy,
and schemathesis fuzzing of the served OpenAPI schema. Never a 500, never a stalled server."""
from __future__ import annotations

import base64
import sys
import time

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from helpers import Served  # noqa: E402

from deforum_wan.service import api  # noqa: E402
from deforum_wan.service.api import MAX_BODY_BYTES, mount_api  # noqa: E402
from deforum_wan.service.guard import Guard, parse_credentials  # noqa: E402

PLAN = {"settings": {"max_frames": 12, "prompts": {"0": "a"}, "wan_model": "tiny-random"}}


@pytest.fixture(scope="module")
def manager(idle_manager):
    return idle_manager


def serve(manager, guard=None):
    app = fastapi.FastAPI()
    mount_api(app, manager, guard=guard)
    return Served(app)


@pytest.fixture(scope="module")
def server(manager):
    with serve(manager) as served:
        yield served


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def test_a_body_must_be_json_and_is_cut_off_at_the_limit_even_when_chunked(client):
    r = client.post("/wan_api/plan", content=b'{"settings": {}}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = client.post("/wan_api/plan", content=b"{}", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415  # what a cross-site HTML form can send

    def chunks():  # no Content-Length: the server must count
        for _ in range(4 * MAX_BODY_BYTES // (1 << 20)):
            yield b" " * (1 << 20)

    r = client.post("/wan_api/plan", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_the_body_is_counted_as_it_streams_in():
    """The ASGI receive channel yields 1 MiB chunks without end: the reader stops right past
    the limit instead of holding the whole body."""
    import asyncio

    from starlette.requests import Request

    from deforum_wan.service.guard import Refused, read_json_body

    pulled = []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b" " * (1 << 20), "more_body": True}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", b"application/json")]}
    with pytest.raises(Refused) as refused:
        asyncio.run(read_json_body(Request(scope, receive), 8 << 20))
    assert refused.value.status == 413 and len(pulled) == 9


def test_foreign_hosts_and_origins_are_refused(client, server):
    assert client.get("/wan_api/models", headers={"host": "evil.example"}).status_code == 403
    assert client.get("/wan_api/jobs", headers={"host": f"evil.example:{server.port}"}).status_code == 403
    assert client.get("/wan_api/models", headers={"host": f"localhost:{server.port}"}).status_code == 200
    r = client.post("/wan_api/plan", json=PLAN, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "evil.example" in r.json()["error"]
    r = client.post("/wan_api/plan", json=PLAN, headers={"origin": server.url})  # the page it served
    assert r.status_code == 200


def test_allowed_hosts_and_origins_come_from_the_environment(manager, monkeypatch):
    monkeypatch.setenv("DEFORUM_WAN_ALLOWED_HOSTS", "wan.example")
    monkeypatch.setenv("DEFORUM_WAN_ALLOWED_ORIGINS", "https://wan.example")
    with serve(manager) as served, httpx.Client(base_url=served.url) as http:
        assert http.get("/wan_api/models", headers={"host": "wan.example"}).status_code == 200
        r = http.post("/wan_api/plan", json=PLAN, headers={"origin": "https://wan.example"})
        assert r.status_code == 200


def test_auth_by_password_or_token(manager):
    guard = Guard.from_env(credentials=parse_credentials("ann:s3cret,bob:pw"), token="tok-123")
    with serve(manager, guard) as served, httpx.Client(base_url=served.url) as http:
        r = http.get("/wan_api/jobs")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert http.get("/wan_api/jobs", auth=("ann", "s3cret")).status_code == 200
        assert http.get("/wan_api/jobs", auth=("ann", "wrong")).status_code == 401
        assert http.get("/wan_api/jobs", headers={"authorization": "Bearer tok-123"}).status_code == 200
        assert http.get("/wan_api/jobs", headers={"authorization": "Bearer nope"}).status_code == 401
        garbage = "Basic " + base64.b64encode(b"\xff\xfe").decode()
        assert http.get("/wan_api/jobs", headers={"authorization": garbage}).status_code == 401


def test_wrong_methods_are_405_and_the_schema_declares_bodies_and_ids(client):
    r = client.get("/wan_api/plan")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert client.delete("/wan_api/jobs").status_code == 405
    schema = client.get("/openapi.json").json()
    for path in ("/wan_api/jobs", "/wan_api/plan"):
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body
    params = schema["paths"]["/wan_api/jobs/{job_id}"]["get"]["parameters"]
    assert params[0]["name"] == "job_id" and params[0]["in"] == "path"


@pytest.mark.slow
def test_a_heavy_plan_runs_off_the_event_loop_within_a_budget(client, monkeypatch):
    monkeypatch.setattr(api, "PLAN_SECONDS", 1.0)
    heavy = {"settings": {"max_frames": 100000, "animation_mode": "3D", "prompts": {"0": "a"},
                          "translation_z": "0: (1+sin(t/7)*cos(t/3))", "wan_model": "tiny-random"}}
    import threading

    answers = {}
    thread = threading.Thread(target=lambda: answers.update(plan=client.post("/wan_api/plan", json=heavy)))
    thread.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert client.get("/wan_api/models").status_code == 200  # served while the plan runs
    assert time.monotonic() - start < 5
    thread.join(60)
    r = answers["plan"]
    assert r.status_code == 503 and "longer than 1 s" in r.json()["error"]


@pytest.mark.slow
def test_a_flood_of_heavy_submissions_leaves_the_other_routes_answered(manager, client, monkeypatch):
    monkeypatch.setattr(api, "PLAN_SECONDS", 3.0)
    heavy = {"settings": {"max_frames": 10000, "animation_mode": "3D", "prompts": {"0": "a"},
                          "translation_z": "0: (1+sin(t/7)*cos(t/3))", "wan_model": "tiny-random"}}
    from concurrent.futures import ThreadPoolExecutor

    before = len(client.get("/wan_api/jobs").json()["jobs"])
    with ThreadPoolExecutor(40) as pool, httpx.Client(base_url=client.base_url, timeout=120) as other:
        posts = [pool.submit(other.post, "/wan_api/jobs", json=heavy) for _ in range(40)]
        time.sleep(1.0)  # every submission is in: their checks hold what threads they may
        for _ in range(3):
            start = time.monotonic()
            assert client.get("/wan_api/jobs").status_code == 200
            assert time.monotonic() - start < 3, f"GET /wan_api/jobs took {time.monotonic() - start:.1f} s"
        answers = [p.result() for p in posts]
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {200, 503} and 503 in statuses, statuses
    for r in answers:
        if r.status_code == 503:
            message = r.json()["error"]
            assert message and "\n" not in message and ("busy" in message or "longer than 3 s" in message)
    queued = sum(len(r.json()["jobs"]) for r in answers if r.status_code == 200)
    assert len(client.get("/wan_api/jobs").json()["jobs"]) - before == queued  # a 503 queued nothing


def test_a_queue_database_that_cannot_be_written_is_503_not_500(manager, client):
    store = manager.store
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full for this database
    try:
        big = {"settings": {**PLAN["settings"], "prompts": {"0": "x" * 200_000}}}
        r = client.post("/wan_api/jobs", json=big)
        assert r.status_code == 503 and "full" in r.json()["error"]
        assert manager._thread.is_alive()
    finally:
        store._db.execute("PRAGMA max_page_count = 1073741823")
    r = client.post("/wan_api/jobs", json=PLAN)  # space is back: stored again
    assert r.status_code == 200


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(server):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    failures, calls = [], []
    started = time.monotonic()
    from schemathesis import GenerationMode

    for result, mode in [(r, m) for r in schema.get_all_operations() for m in GenerationMode]:
        operation = result.ok()

        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            response = case.call(headers={"host": f"127.0.0.1:{server.port}"})
            calls.append(response.status_code)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as exc:  # collected: every operation gets its turn
                failures.append(f"{operation.label}: {str(exc).splitlines()[0]}")

        try:
            given(case=operation.as_strategy(mode))(fuzz)()
        except Unsatisfiable:
            continue  # no invalid input exists (an operation without parameters or body)
        if time.monotonic() - started > 90:
            break  # bounded in time as well as in examples
    assert not failures, "\n".join(failures[:10])
    assert len(calls) > 40 and 500 not in calls
    print(f"schemathesis: {len(calls)} requests, statuses {sorted(set(calls))},"
          f" {time.monotonic() - started:.1f} s", file=sys.stderr)


@pytest.mark.slow
def test_sigterm_stops_the_ui_gracefully_and_the_job_is_resumable(tiny_models_dir, tmp_path):
    import os
    import signal
    import socket
    import subprocess

    from helpers import LONG, ROOT, settings, wait_for, worker_env

    from deforum_wan.service.jobstore import JobStore, jobs_db_path

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    out = tmp_path / "out"
    env = {**worker_env(), "PYTHONPATH": str(ROOT / "scripts")}
    proc = subprocess.Popen([sys.executable, "-m", "deforum_wan", "ui", "--port", str(port), "--outdir", str(out),
                             "--models-dir", str(tiny_models_dir)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(f"{url}/wan_api/models", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 90, "the ui to serve")
        job = httpx.post(f"{url}/wan_api/jobs", json={"settings": settings(LONG, max_frames=48)}).json()["jobs"][0]
        wait_for(lambda: httpx.get(f"{url}/wan_api/jobs/{job}").json()["progress"]["frames_written"] > 0, 120,
                 "frames on disk")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    store = JobStore(jobs_db_path(out))
    try:
        record = store.get(job)
    finally:
        store.close()
    assert record["status"] == "interrupted" and "resume" in record["message"], record
    assert os.path.isdir(record["run_dir"])
