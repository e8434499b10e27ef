"""``JobManager``: the SQLite-backed queue and its worker subprocess, for real."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import LONG, QUICK, SINGLE, frames_on_disk, manifest, settings, wait_for, worker_env

from deforum_wan.errors import SettingsError, WanError
from deforum_wan.render.video import probe_video
from deforum_wan.service.jobs import FORCE_AFTER, JobManager, JobNotFound
from deforum_wan.service.jobstore import DatabaseLocked

pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self):
        self.events: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        with self.lock:
            self.events.append(event)

    def seen(self, job: str, kind: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("job") == job and e.get("event") == kind]


def finished(manager: JobManager, job: str) -> dict | None:
    record = manager.get(job)
    return record if record["status"] not in ("queued", "running") else None


@pytest.fixture(scope="module")
def env():
    return worker_env()


@pytest.fixture(scope="module")
def shared(tiny_models_dir, tmp_path_factory, env):
    """One manager for the tests that need no restart (its worker survives them all)."""
    root = tmp_path_factory.mktemp("jobs")
    manager = JobManager(root / "jobs.db", root / "out", models_dir=str(tiny_models_dir), env=env)
    recorder = Recorder()
    manager.subscribe(recorder)
    yield manager, recorder
    manager.shutdown()


def test_submit_validates_first_and_queues_nothing_on_error(shared):
    manager, _ = shared
    before = len(manager.list())
    with pytest.raises(SettingsError, match="W must be a number"):
        manager.submit({"W": "wide"})
    with pytest.raises(SettingsError, match="settings must be a JSON object"):
        manager.submit(["not", "a", "dict"])
    with pytest.raises(SettingsError, match="^second: "):  # all or nothing, the bad one named
        manager.submit_batch([("first", settings(QUICK)), ("second", settings(QUICK, fps="fast"))])
    assert len(manager.list()) == before
    with pytest.raises(JobNotFound):
        manager.get("no-such-job")
    with pytest.raises(JobNotFound):
        manager.cancel("no-such-job")


def test_queue_runs_in_order_cancel_and_progress(shared):
    manager, recorder = shared
    long_job, quick_job, dropped = manager.submit_batch(
        [("long", settings(LONG)), ("quick", settings(QUICK)), ("dropped", settings(QUICK))])
    assert [j["id"] for j in manager.list()[-3:]] == [long_job, quick_job, dropped]
    assert manager.cancel(dropped) is True
    assert manager.get(dropped)["status"] == "cancelled"

    wait_for(lambda: recorder.seen(long_job, "window_done"), 90, "the long job's first window")
    running = manager.get(long_job)
    assert running["status"] == "running" and running["run_dir"]
    assert running["progress"]["windows"] > 2 and running["progress"]["frames"] == 24
    assert manager.get(quick_job)["status"] == "queued"
    assert manager.cancel(long_job) is True  # running: stopped, frames kept, the queue goes on

    stopped = wait_for(lambda: finished(manager, long_job), 60, "the long job to stop")
    assert stopped["status"] == "interrupted"
    frames = stopped["progress"]["frames_written"]
    assert 0 < frames < 24
    assert len(frames_on_disk(stopped["run_dir"], stopped["timestring"])) == frames
    assert Path(stopped["video"]).is_file() and Path(stopped["preview"]).is_file()

    done = wait_for(lambda: finished(manager, quick_job), 60, "the quick job")
    assert done["status"] == "done", done
    assert done["progress"]["frames_written"] == done["progress"]["frames"] == 12
    assert probe_video(done["video"])["frames"] == 12
    assert done["started"] >= stopped["finished"] - 1 and done["finished"] >= done["started"]
    assert manager.get(dropped)["status"] == "cancelled"  # never ran
    wait_for(lambda: recorder.seen(quick_job, "job_done"), 30, "the quick job's last event")  # follows the store
    kinds = [e["event"] for e in recorder.events if e.get("job") == quick_job]
    assert kinds[0] == "job_queued" and kinds[-1] == "job_done" and "step" in kinds

    # Resume continues the same run in the same folder up to the last frame.
    again = manager.resume(long_job)
    resumed = wait_for(lambda: finished(manager, again), 90, "the resumed job")
    assert resumed["status"] == "done", resumed
    assert resumed["run_dir"] == stopped["run_dir"] and resumed["timestring"] == stopped["timestring"]
    assert len(frames_on_disk(resumed["run_dir"], resumed["timestring"])) == 24
    with pytest.raises(WanError, match="nothing to resume"):
        manager.resume(quick_job)


def test_interrupt_pauses_the_queue_and_skip_goes_on(shared):
    manager, recorder = shared
    first, second = manager.submit_batch([("a", settings(LONG)), ("b", settings(QUICK))])
    wait_for(lambda: recorder.seen(first, "window_done"), 90, "the first job's first window")
    assert manager.interrupt() is True
    assert wait_for(lambda: finished(manager, first), 60, "the stop")["status"] == "interrupted"
    time.sleep(1.0)
    assert manager.get(second)["status"] == "queued" and manager.state()["paused"] is True
    manager.start_queue()
    wait_for(lambda: recorder.seen(second, "step"), 60, "the second job to start")
    assert manager.skip() is True
    assert wait_for(lambda: finished(manager, second), 60, "the skip")["status"] in ("interrupted", "cancelled")
    assert manager.interrupt() is False and manager.skip() is False  # nothing running


def test_killed_worker_fails_the_job_and_the_next_one_runs(shared):
    manager, recorder = shared
    victim, survivor = manager.submit_batch([("victim", settings(LONG)), ("survivor", settings(QUICK))])
    wait_for(lambda: recorder.seen(victim, "window_done"), 90, "the victim's first window")
    pid = manager.worker_pid
    os.kill(pid, signal.SIGKILL)
    failed = wait_for(lambda: finished(manager, victim), 60, "the crash to be noticed")
    assert failed["status"] == "failed"
    assert failed["error"].startswith("worker crashed (exit code -9: killed by SIGKILL")
    assert f"its frames are kept in {failed['run_dir']}; it can be resumed" in failed["error"]
    assert "--resume" not in failed["error"] and "python -m" not in failed["error"]  # no CLI words for the tab
    assert wait_for(lambda: recorder.seen(victim, "job_error"), 30, "the crash event")[-1]["crashed"] is True

    done = wait_for(lambda: finished(manager, survivor), 90, "the next job on a new worker")
    assert done["status"] == "done", done
    assert manager.worker_pid not in (None, pid)


def test_a_repeated_stop_kills_a_hung_worker(shared):
    manager, recorder = shared
    job = manager.submit(settings(LONG), "hung")
    wait_for(lambda: recorder.seen(job, "window_done"), 90, "the first window")
    pid = manager.worker_pid
    os.kill(pid, signal.SIGSTOP)  # frozen for real: it cannot read the interrupt
    try:
        assert manager.cancel(job) is True
        time.sleep(FORCE_AFTER + 0.3)
        assert manager.get(job)["status"] == "running"
        assert manager.cancel(job) is True  # asked again: the worker is killed
        stopped = wait_for(lambda: finished(manager, job), 30, "the forced stop")
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert stopped["status"] == "interrupted", stopped
    assert stopped["message"].startswith("stopped by force") and stopped["run_dir"] in stopped["message"]
    assert manifest(stopped["run_dir"], stopped["timestring"])["windows"]  # resumable


def test_host_hooks_wrap_each_job_before_the_worker_starts(tiny_models_dir, tmp_path, env):
    gates = {"gated": threading.Event(), "stopped": threading.Event()}
    calls: list[tuple] = []
    box: dict = {}

    def before_job(job):
        manager = box["manager"]
        calls.append(("before", job["name"], job["status"], threading.current_thread().name, manager.worker_pid))
        if job["name"] in gates:
            assert gates[job["name"]].wait(60)  # a host waiting for its GPU lock
        if job["name"] == "broken":
            raise RuntimeError("no lock today")

    def after_job(job):
        calls.append(("after", job["name"], job["status"]))
        if job["name"] == "gated":
            raise RuntimeError("a failing after_job must not stop the queue")

    manager = box["manager"] = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(tiny_models_dir),
                                          env=env, before_job=before_job, after_job=after_job)
    recorder = Recorder()
    manager.subscribe(recorder)
    try:
        gated, stopped, broken, ok = manager.submit_batch(
            [(name, settings(SINGLE)) for name in ("gated", "stopped", "broken", "ok")])
        wait_for(lambda: calls, 30, "before_job of the first job")
        time.sleep(1.0)
        # Blocked in before_job: the job is running for the queue, no worker was started.
        assert calls == [("before", "gated", "running", "wan-jobs", None)]
        assert manager.worker_pid is None
        assert manager.get(gated)["progress"]["phase"] == "waiting for the host"
        assert [e["event"] for e in recorder.events if e.get("job") == gated] == ["job_queued", "job_running"]
        gates["gated"].set()
        wait_for(lambda: len(calls) >= 3, 120, "the first job and before_job of the second")
        assert manager.cancel(stopped) is True  # stopped while its before_job waits
        gates["stopped"].set()
        wait_for(lambda: len(calls) == 8, 120, "the last job")
        assert [c[:3] for c in calls] == [
            ("before", "gated", "running"), ("after", "gated", "done"),
            ("before", "stopped", "running"), ("after", "stopped", "cancelled"),
            ("before", "broken", "running"), ("after", "broken", "failed"),
            ("before", "ok", "running"), ("after", "ok", "done")]
        assert all(c[3] == "wan-jobs" for c in calls if c[0] == "before")  # the dispatcher thread
        assert manager.get(stopped)["message"] == "stopped before it started"
        assert not recorder.seen(stopped, "started")  # never sent to the worker
        assert manager.get(broken)["error"] == ("internal error: the host's before_job hook:"
                                                " RuntimeError: no lock today")
        assert not recorder.seen(broken, "started")
    finally:
        for gate in gates.values():
            gate.set()
        manager.shutdown()


def test_second_manager_on_the_same_database_is_refused(shared, tmp_path):
    manager, _ = shared
    with pytest.raises(DatabaseLocked):
        JobManager(manager.store.path, tmp_path)


HOST = """
import json, sys, time
from deforum_wan.service.jobs import JobManager
db, out, models, long_s, quick_s = sys.argv[1:6]
m = JobManager(db, out, models_dir=models)
a = m.submit(json.loads(long_s), "long")
b = m.submit(json.loads(quick_s), "quick")
while not m.get(a)["progress"]["frames_written"]:
    time.sleep(0.05)
print(json.dumps({"long": a, "quick": b, "worker": m.worker_pid}), flush=True)
time.sleep(600)
"""


def test_host_killed_mid_job_loses_nothing(tiny_models_dir, tmp_path, env):
    db, out = tmp_path / "jobs.db", tmp_path / "out"
    host = subprocess.Popen([sys.executable, "-c", HOST, str(db), str(out), str(tiny_models_dir),
                             json.dumps(settings(LONG)), json.dumps(settings(QUICK))],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        info = json.loads(host.stdout.readline())
    finally:
        host.kill()  # SIGKILL: no shutdown, no cleanup
        host.wait()
    # The orphaned worker sees its stdin close, stops at the next step and exits.
    wait_for(lambda: not _alive(info["worker"]), 60, "the orphaned worker to exit")

    manager = JobManager(db, out, models_dir=str(tiny_models_dir), env=env)
    try:
        long_job = manager.get(info["long"])
        assert long_job["status"] == "interrupted", long_job
        assert long_job["run_dir"] and "the host stopped" in long_job["message"]
        assert manifest(long_job["run_dir"], long_job["timestring"])["frames_written"] > 0
        # The queued job survived the restart and runs now.
        done = wait_for(lambda: finished(manager, info["quick"]), 90, "the queued job after restart")
        assert done["status"] == "done", done
        again_id = manager.resume(info["long"])
        resumed = wait_for(lambda: finished(manager, again_id), 90, "the resume")
        assert resumed["status"] == "done", resumed
        assert len(frames_on_disk(resumed["run_dir"], resumed["timestring"])) == 24
    finally:
        manager.shutdown()
    # Records outlive the manager: a fresh one reads the same history.
    again = JobManager(db, out, env=env)
    try:
        assert {j["status"] for j in again.list()} == {"done", "interrupted"}
        assert len(again.list()) == 3
    finally:
        again.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_the_queue_survives_a_full_database_and_a_damaged_row(tiny_models_dir, tmp_path, env):
    """A database that stops taking writes mid-job (SQLite's query_only: as a read-only disk)
    and a row whose settings are garbage: the queue thread lives on, reports, and catches up."""
    from deforum_wan.service import jobs as jobs_module
    from deforum_wan.service.jobstore import StoreUnavailable

    jobs_module.RETRY_SECONDS = 0.2
    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(tiny_models_dir), env=env)
    try:
        db = manager.store._db
        # a damaged row, as a failing disk or another tool could leave it
        db.execute("INSERT INTO jobs (id, name, status, settings, progress, created) VALUES"
                   " ('broken', '', 'queued', '{not json', '{}', 0)")
        first = manager.submit(settings(QUICK))
        wait_for(lambda: manager.get(first)["status"] == "running", 60, "the first job to start")
        db.execute("PRAGMA query_only = ON")  # the database turns read-only under the running job
        with pytest.raises(StoreUnavailable, match="readonly"):
            manager.submit(settings(QUICK))
        wait_for(lambda: manager.store_error, 120, "the queue to report the read-only database")
        assert manager._thread.is_alive() and "readonly" in manager.store_error
        assert manager.get(first)["status"] == "running"  # its end is not recorded yet...
        db.execute("PRAGMA query_only = OFF")  # writable again
        done = wait_for(lambda: finished(manager, first), 120, "...and is once it can be")
        assert done["status"] == "done", done
        second = manager.submit(settings(QUICK))
        assert wait_for(lambda: finished(manager, second), 120, "the second job")["status"] == "done"
        broken = manager.get("broken")
        assert broken["status"] == "failed" and "damaged database row" in broken["error"]
        assert manager.store_error is None
    finally:
        manager.shutdown()


def test_the_tab_resumes_an_interrupted_job_and_the_console_tells_each_step(shared, tmp_path):
    """Resume from the tab (the latest stopped job): the same folder, every frame, one console
    line for the start, each window and the end."""
    import io

    from deforum_wan.service.console import ConsoleLog
    from deforum_wan.webui.tab_handlers import WanTab

    manager, recorder = shared
    out = io.StringIO()
    unsubscribe = manager.subscribe(ConsoleLog(manager, out))
    try:
        job = manager.submit(settings(LONG), "console")
        wait_for(lambda: recorder.seen(job, "window_done"), 90, "the first window")
        manager.interrupt()
        stopped = wait_for(lambda: finished(manager, job), 60, "the stop")
        assert stopped["status"] == "interrupted" and stopped["message"].endswith("(kept); it can be resumed")
        tab = WanTab(manager)
        status = tab.resume(None)
        assert status.startswith("queued job ") and status.endswith(f"continues job {job} where it stopped")
        again = status.split()[2].rstrip(":")
        done = wait_for(lambda: finished(manager, again), 120, "the resumed job")
        assert done["status"] == "done" and done["run_dir"] == stopped["run_dir"]
        assert len(frames_on_disk(done["run_dir"], done["timestring"])) == 24
        # The store says "done" before the event reaches the console: wait for the line itself.
        wait_for(lambda: f"job {again} (console) done\n" in out.getvalue(), 30, "the console's last line")
    finally:
        unsubscribe()
    lines = out.getvalue().splitlines()
    assert all(line.startswith("deforum-wan: job ") for line in lines)
    assert any(f"job {job} (console) started: " in line for line in lines)
    assert any(f"job {job} (console) window 1/" in line for line in lines)
    assert any(f"job {job} (console) interrupted: stopped after" in line for line in lines)
    assert any(f"job {again} (console) done" == line.removeprefix("deforum-wan: ") for line in lines)


def test_a_finished_jobs_drift_chart_reaches_its_record_and_the_tabs_poll(shared):
    """The render draws the chart next to its manifest; the done event hands its path to the
    job's record, and the tab's poll shows it once the job is done."""
    pytest.importorskip("cv2")
    pytest.importorskip("gradio")
    from deforum_wan.webui.tab_handlers import WanTab

    manager, _ = shared
    job = manager.submit(settings(QUICK), "drift")
    done = wait_for(lambda: finished(manager, job), 90, "the job")
    assert done["status"] == "done", done
    chart = Path(done["drift_chart"])
    assert chart == Path(done["run_dir"]) / "charts" / f"{done['timestring']}_drift.png" and chart.is_file()
    assert manifest(done["run_dir"], done["timestring"])["drift"]["chart"] == f"charts/{chart.name}"
    polled = WanTab(manager).poll({})[3]
    assert polled["visible"] is True and Path(polled["value"]) == chart.resolve()


def test_the_continuation_models_load_is_not_called_a_restart(shared):
    """T2V then I2V: the worker loads the I2V model after window 0's steps, before its end;
    the phase then reads "loading the continuation model", not "loading the model" again."""
    manager, _ = shared
    phases = []

    def listen(event):
        if event.get("event") == "loading" and event.get("job") == job:
            phases.append((event.get("model"), manager.get(job)["progress"]["phase"]))

    job = None
    unsubscribe = manager.subscribe(listen)
    try:
        job = manager.submit(settings(QUICK), "continuation")
        assert wait_for(lambda: finished(manager, job), 120, "the job")["status"] == "done"
    finally:
        unsubscribe()
    assert phases == [("tiny-random", "loading the model"), ("tiny-random-i2v", "loading the continuation model")]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_a_warm_worker_stays_flat_over_20_jobs(tiny_models_dir, tmp_path, env):
    """20 jobs on one keep-warm worker: its memory after the last is that after the third (the
    pipeline, caches and allocator warmed up), within a few percent; nothing piles up per job."""
    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(tiny_models_dir), env=env,
                         keep_warm=True)
    try:
        sizes = []
        for i in range(20):
            job = manager.submit(settings(SINGLE, seed=i))
            assert wait_for(lambda: finished(manager, job), 120, f"job {i}")["status"] == "done"
            sizes.append(_rss_mb(manager.worker_pid))
        assert manager.worker_pid is not None  # one worker for all of them
        assert sizes[-1] <= sizes[2] * 1.05 + 20, sizes
    finally:
        manager.shutdown()


def test_missing_weights_point_at_the_tabs_download_button(shared):
    manager, _ = shared
    job = manager.submit(settings(QUICK, wan_model="wan2.1-t2v-1.3b", wan_backend="diffusers"))
    failed = wait_for(lambda: finished(manager, job), 120, "the job to fail")
    assert failed["status"] == "failed" and "press Download beside the model in the Wan tab" in failed["error"]
    assert "python -m deforum_wan" not in failed["error"]  # a command the WebUI's Python cannot run


def test_a_database_from_before_the_drift_chart_gains_its_column(tmp_path):
    """A job table an older version wrote (no drift_chart column) opens, keeps its rows and
    records a chart."""
    import sqlite3

    from deforum_wan.service.jobstore import JobStore

    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as old:
        old.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,"
                    " name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, settings TEXT NOT NULL, resume TEXT,"
                    " progress TEXT NOT NULL DEFAULT '{}', run_dir TEXT, timestring TEXT, video TEXT,"
                    " settings_file TEXT, preview TEXT, error TEXT, message TEXT, created REAL NOT NULL,"
                    " started REAL, finished REAL)")
        old.execute("INSERT INTO jobs (id, status, settings, created) VALUES ('old', 'done', '{}', 1.0)")
    old.close()
    store = JobStore(db)
    try:
        assert store.get("old")["drift_chart"] is None
        store.update("old", drift_chart="Run/1_drift.png")
        assert store.get("old")["drift_chart"] == "Run/1_drift.png" and store.get("old")["status"] == "done"
    finally:
        store.close()
