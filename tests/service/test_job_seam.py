"""One door: a job that cannot be planned is refused by every way in, with the same line,
before anything is queued, a folder is written or a host hook (the WebUI freeing its
checkpoint) runs; the job a door queues is the JSON a worker reads back."""
from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from helpers import EXAMPLE, QUICK, Served, settings
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan.errors import SettingsError, WanError
from deforum_wan.render.job import JobSpec, check_job
from deforum_wan.service.batch import prepare_jobs
from deforum_wan.service.jobs import JobManager

# The model's 17-frame window (1 s at 16 fps) cannot hold a 60-frame overlap: only the
# planner, which knows the model, can tell.
UNPLANNABLE = {"wan_model": "tiny-random", "wan_clip_duration": 1, "wan_overlap": 60}
WHY = "wan_overlap=60 leaves no new frames in a 17-frame window; use at most 15"


@pytest.fixture
def manager(tmp_path):
    hooks: list[str] = []
    jobs = JobManager(tmp_path / "jobs.db", tmp_path / "out", before_job=lambda job: hooks.append(job["id"]))
    jobs.hooks = hooks
    yield jobs
    jobs.shutdown()


def test_check_job_plans_before_anything_is_queued(tmp_path):
    with pytest.raises(SettingsError, match=f"^<settings>: {WHY}$"):
        check_job(JobSpec(settings(UNPLANNABLE)), tmp_path)
    checked = check_job(JobSpec(settings(QUICK), "quick"), tmp_path)
    assert checked.plan.max_frames == 12 and len(checked.plan.windows) >= 2
    assert not any(tmp_path.iterdir())  # checking writes nothing


def test_the_queue_and_the_api_refuse_an_unplannable_job(manager):
    from fastapi import FastAPI

    from deforum_wan.service.api import mount_api

    with pytest.raises(SettingsError, match=WHY):
        manager.submit(settings(UNPLANNABLE), "too-much-overlap")
    with pytest.raises(SettingsError, match=f"^second: {WHY}"):  # all or nothing, the bad one named
        manager.submit_batch([("first", settings(QUICK)), ("second", settings(UNPLANNABLE))])
    app = FastAPI()
    mount_api(app, manager)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        for route in ("/wan_api/jobs", "/wan_api/plan"):
            answer = http.post(route, json={"settings": settings(UNPLANNABLE)})
            assert answer.status_code == 422 and WHY in answer.json()["error"], (route, answer.text)
    assert manager.list() == [] and manager.hooks == [] and manager.worker_pid is None


def test_a_resume_of_a_run_that_is_not_there_is_refused_at_submission(manager):
    with pytest.raises(SettingsError, match="resume 20260101000000: no such run"):
        manager.submit(settings(QUICK), resume="20260101000000")
    assert manager.list() == []


def test_render_and_batch_refuse_it_before_any_folder(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(json.dumps(settings(UNPLANNABLE)))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "deforum_wan", "render", str(bad), "--outdir", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and f"bad.txt: {WHY}" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    (job,) = prepare_jobs([(str(bad), bad)], outdir=out)
    assert job.status == "failed" and job.error == f"bad.txt: {WHY}"


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
stamps = st.none() | st.from_regex(r"\A\d{14}\Z")


@given(settings=st.dictionaries(names, st.integers() | names, max_size=5), name=names, resume=stamps,
       timestring=stamps, base=st.none() | names)
def test_a_spec_is_the_json_a_worker_reads_back(settings, name, resume, timestring, base):
    spec = JobSpec(settings, name, resume, timestring, base or None)
    assert JobSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


@pytest.mark.parametrize("data", [None, [], {"settings": []}, {"settings": {}, "resume": 5},
                                  {"settings": {}, "extra": 1}])
def test_a_malformed_spec_is_one_line(data):
    with pytest.raises(WanError, match="^a job"):
        JobSpec.from_json(data)


def test_the_example_passes_the_one_check(tmp_path):
    checked = check_job(JobSpec(json.loads(EXAMPLE.read_text())), tmp_path)
    assert checked.plan.max_frames == 48


def test_the_tab_refuses_it_at_plan_and_generate(manager):
    from deforum_wan.webui.tab_handlers import WanTab

    tab = WanTab(manager)
    base = settings(UNPLANNABLE)
    values = tab.field_values(base)
    assert tab.plan(*values, base, [])[2] == f"error: tab: {WHY}"
    assert WHY in tab.generate(*values, base, [])
    assert WHY in tab.plan(*values, base, [["file", base]])[0]  # a batch names the file it cannot plan
    assert manager.list() == [] and manager.hooks == []
