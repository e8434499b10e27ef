"""The WebUI's own progress bar follows a Wan job: the page's task id goes pending -> active ->
finished in the host's task queue, and what /internal/progress computes from the state
(progress, ETA) only grows, stays <= 1 and never goes negative.

A1111's ``modules.shared_state.State`` and ``modules.progress`` import the whole WebUI (devices,
options), so the two small classes below stand in for the part of their behaviour the bridge
touches, written to v1.10.1's semantics (Forge's are the same): ``begin``/``end``/
``assign_current_image``, the task calls, and how ``progressapi`` turns the state into progress
and ETA. The real ones are exercised by tests/webui/test_webui_host.py inside both WebUIs.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import pytest
from helpers import LONG, settings, worker_env
from helpers import wait_for as wait_until

from deforum_wan.service.jobs import JobManager
from deforum_wan.webui.host_bridge import ProgressBridge


class State:
    """modules/shared_state.py State, the fields and methods the bridge and progressapi use."""

    def __init__(self):
        self.interrupted = self.skipped = False
        self.job = ""
        self.job_no = self.job_count = 0
        self.sampling_step = self.sampling_steps = 0
        self.current_image = None
        self.id_live_preview = 0
        self.textinfo = None
        self.time_start = None

    def begin(self, job="(unknown)"):
        self.sampling_step = 0
        self.time_start = time.time()
        self.job_count = -1
        self.job_no = 0
        self.current_image = None
        self.id_live_preview = 0
        self.skipped = self.interrupted = False
        self.textinfo = None
        self.job = job

    def end(self):
        self.job = ""
        self.job_count = 0

    def assign_current_image(self, image):
        self.current_image = image
        self.id_live_preview += 1


class Progress:
    """modules/progress.py: the task queue and progressapi's answer."""

    def __init__(self, state: State, clock=time.time):
        self.state, self.clock = state, clock
        self.current_task = None
        self.pending_tasks: OrderedDict = OrderedDict()
        self.finished_tasks: list = []

    def add_task_to_queue(self, id_job):
        self.pending_tasks[id_job] = time.time()

    def start_task(self, id_task):
        self.current_task = id_task
        self.pending_tasks.pop(id_task, None)

    def finish_task(self, id_task):
        if self.current_task == id_task:
            self.current_task = None
        self.finished_tasks.append(id_task)

    def progressapi(self, id_task) -> dict:
        active = id_task == self.current_task
        queued = id_task in self.pending_tasks
        completed = id_task in self.finished_tasks
        if not active:
            return {"active": active, "queued": queued, "completed": completed}
        s = self.state
        progress = 0
        if s.job_count > 0:
            progress += s.job_no / s.job_count
        if s.sampling_steps > 0 and s.job_count > 0:
            progress += 1 / s.job_count * s.sampling_step / s.sampling_steps
        progress = min(progress, 1)
        elapsed = self.clock() - s.time_start
        predicted = elapsed / progress if progress > 0 else None
        eta = predicted - elapsed if predicted is not None else None
        return {"active": active, "queued": queued, "completed": completed, "progress": progress, "eta": eta,
                "textinfo": s.textinfo, "id_live_preview": s.id_live_preview}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Idle:
    def state(self):
        return {"current": None, "queued": 0, "paused": False}


def _wired(clock=time.time):
    """A host's state and task progress, and a bridge to them over an idle queue."""
    state = State()
    progress = Progress(state, clock)
    return state, progress, ProgressBridge(Idle(), state, progress=progress, clock=clock, poll_seconds=0.01)


def test_a_task_goes_pending_active_finished_and_the_eta_is_steps_left_times_seconds_per_step():
    clock = Clock()
    state, progress, bridge = _wired(clock)
    bridge.task_queued("task(a)")
    assert progress.progressapi("task(a)") == {"active": False, "queued": True, "completed": False}
    bridge.task_jobs("task(a)", ["j1"])
    bridge({"event": "job_running", "job": "j1"})
    bridge.before_job({"id": "j1"})
    answer = progress.progressapi("task(a)")
    assert answer["active"] and not answer["queued"] and answer["progress"] == 0 and answer["eta"] is None
    bridge({"event": "started", "job": "j1", "windows": 2, "frames": 24})
    bridge({"event": "loading", "job": "j1"})
    assert "loading the model" in state.textinfo
    clock.now += 30  # the model loads: no ETA, and it does not climb
    assert progress.progressapi("task(a)")["eta"] is None
    bridge({"event": "loaded", "job": "j1"})
    seen = []
    for window in range(2):
        for step in range(1, 5):
            clock.now += 2.0  # two seconds a step
            # a step event carries the worker's time (events.make): the seconds per step come from it
            bridge({"event": "step", "job": "j1", "window": window, "step": step, "steps": 4, "time": clock.now})
            seen.append(progress.progressapi("task(a)"))
        if window == 0:  # the worker's order: the continuation model loads before window 0 ends
            bridge({"event": "loading", "job": "j1"})
            assert "loading the continuation model" in state.textinfo
            # Steady through the load: the bridge's holder pins the clock at each poll (0.01 s
            # here), so 40 s of loading leave the ETA of the last step (waited for, not slept:
            # a loaded machine may poll late; without the pin it never comes back).
            steady = seen[-1]["eta"]
            for _ in range(2):
                clock.now += 20
                wait_until(lambda: progress.progressapi("task(a)")["eta"] == pytest.approx(steady), 10,
                           "the ETA pinned through the load")
            bridge({"event": "loaded", "job": "j1"})
        clock.now += 1.0
        bridge({"event": "window_done", "job": "j1", "window": window, "windows": 2, "frames_written": 12 * (window + 1)})
        seen.append(progress.progressapi("task(a)"))
    values = [a["progress"] for a in seen]
    assert values == sorted(values) and values[-1] == 1 and all(0 < v <= 1 for v in values[1:])
    etas = [a["eta"] for a in seen]
    # One step measures nothing: no progress and no ETA yet (A1111 would show the seconds since
    # the last pin), as the tab shows none; from the second step on, both.
    assert values[0] == 0 and etas[0] is None and all(e >= 0 for e in etas[1:])
    # window 0, step 2: 6 steps left at the 2 s measured
    assert etas[1] == pytest.approx(6 * 2.0)
    bridge({"event": "job_done", "job": "j1", "status": "done"})
    bridge.after_job({"id": "j1"})
    assert progress.progressapi("task(a)") == {"active": False, "queued": False, "completed": True}
    assert bridge.wait_idle(5)


def test_the_webuis_eta_and_the_tabs_eta_are_the_same_figure():
    """A resumed render (a window of 4 steps done on disk, one to go, at 3 s a step): the
    WebUI's ETA (A1111's elapsed/progress - elapsed over the bridge's pinned clock) and the
    tab's Progress box (events.reduce's eta) say the same seconds at every step; neither says
    anything before a step time is measured."""
    from deforum_wan import events
    from deforum_wan.webui.progress_text import eta_text, progress_text

    clock = Clock()
    state, progress, bridge = _wired(clock)
    bridge.task_queued("task(r)")
    bridge.task_jobs("task(r)", ["r1"])
    run = [{"event": "job_running", "job": "r1"},
           {"event": "started", "job": "r1", "windows": 2, "frames": 240, "resume_from_window": 1,
            "frames_written": 120, "window_steps": [4, 4]}]
    bridge(run[0])
    bridge.before_job({"id": "r1"})
    for step in range(1, 5):
        clock.now += 3.0
        run.append({"event": "step", "job": "r1", "window": 1, "step": step, "steps": 4, "time": clock.now})
    seen = []
    for event in run[1:]:
        bridge(event)
        folded = events.fold(run[:run.index(event) + 1])
        box = progress_text({"id": "r1" * 6, "name": "r", "status": "running",
                             "progress": {**folded, "eta": events.eta(folded)}}, [])
        seen.append((progress.progressapi("task(r)")["eta"], events.eta(folded), box))
    assert [(webui, tab) for webui, tab, _ in seen[:2]] == [(None, None), (None, None)]  # started, step 1
    for webui, tab, box in seen[2:]:
        assert webui == pytest.approx(tab) and eta_text(tab) in box, (webui, tab, box)
    assert [tab for _, tab, _ in seen[2:]] == [6.0, 3.0, 0.0]  # steps left x 3 s
    bridge({"event": "job_done", "job": "r1", "status": "done"})
    bridge.after_job({"id": "r1"})
    assert bridge.wait_idle(5)


def test_a_batch_is_one_task_until_its_last_job_and_a_failed_submit_ends_its_task():
    state, progress, bridge = _wired()
    bridge.task_queued("task(b)")
    bridge.task_jobs("task(b)", ["j1", "j2"])
    for job in ("j1", "j2"):
        bridge.before_job({"id": job})
        assert progress.current_task == "task(b)"
        bridge({"event": "job_done", "job": job, "status": "done"})
        bridge.after_job({"id": job})
        assert (progress.current_task is None) == (job == "j2")  # on between the two jobs
    assert progress.finished_tasks == ["task(b)"]
    bridge.task_queued("task(c)")
    bridge.task_jobs("task(c)", [])  # the submit was refused: the page's bar goes away
    assert progress.progressapi("task(c)")["completed"] and not progress.pending_tasks
    assert bridge.wait_idle(5)


def test_a_job_claimed_before_its_task_was_handed_over_still_starts_it():
    state, progress, bridge = _wired()
    bridge.task_queued("task(d)")
    bridge.before_job({"id": "j1"})  # the dispatcher took the job before submit() returned
    assert progress.current_task is None
    bridge.task_jobs("task(d)", ["j1"])
    assert progress.current_task == "task(d)"
    bridge({"event": "job_error", "job": "j1", "message": "boom"})
    assert progress.progressapi("task(d)")["completed"]
    bridge.after_job({"id": "j1"})
    assert bridge.wait_idle(5)


def _load_image(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


@pytest.mark.slow
def test_a_real_render_and_its_interrupt_as_the_page_sees_them(tiny_models_dir, tmp_path):
    """A real JobManager and worker on the tiny models, wired as scripts/wan_tab.py wires them,
    the page's poll (progressapi) every 50 ms: pending -> active -> completed, the progress only
    grows, the ETA is never negative and shows once steps were measured; an interrupted job
    finishes its task too."""
    state, lock = State(), threading.Lock()
    progress = Progress(state)
    bridge = ProgressBridge(None, state, lock=lock, progress=progress, poll_seconds=0.05, load_image=_load_image)
    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(tiny_models_dir),
                         env=worker_env(), before_job=bridge.before_job, after_job=bridge.after_job)
    bridge.manager = manager
    manager.subscribe(bridge)
    try:
        for task, interrupt in (("task(real)", False), ("task(stop)", True)):
            bridge.task_queued(task)
            assert progress.progressapi(task)["queued"]
            job = manager.submit(settings(LONG), name="progress")
            bridge.task_jobs(task, [job])
            answers, deadline = [], time.time() + 240
            while time.time() < deadline:
                answer = progress.progressapi(task)
                answers.append(answer)
                if answer["completed"]:
                    break
                if interrupt and answer.get("progress", 0) > 0.3:
                    manager.interrupt()
                time.sleep(0.05)
            status = wait_until(lambda: manager.get(job)["status"] not in ("queued", "running") and
                                manager.get(job)["status"], 60, "the job's end")
            assert status == ("interrupted" if interrupt else "done"), manager.get(job)
            assert answers[-1]["completed"] and not answers[-1]["active"]
            active = [a for a in answers if a["active"]]
            assert active, answers[:5]
            values = [a["progress"] for a in active]
            assert values == sorted(values) and all(0 <= v <= 1 for v in values), values
            assert len(set(values)) > 3  # it moved
            etas = [a["eta"] for a in active if a["eta"] is not None]
            assert etas and all(e >= 0 for e in etas), etas
            assert any(e > 0 for e in etas)
            if not interrupt:
                assert values[-1] > 0.9 and state.id_live_preview > 0  # the windows' frames as the live preview
    finally:
        manager.shutdown()


def test_the_tabs_generate_and_resume_hand_their_task_to_the_host(tmp_path):
    """Generate/Resume with the page's task id (TASK_JS): queued in the host's task list with
    its jobs; a refused submit or resume ends it at once; standalone (no id) nothing is asked."""
    from test_ui import FakeManager, example_values

    from deforum_wan.webui.tab_handlers import WanTab

    manager = FakeManager(tmp_path / "out")
    state, progress, bridge = _wired()
    tab = WanTab(manager, tasks=bridge)
    values, base = example_values(tab)
    assert tab.generate_task("task(g)", *values, base, []) == "queued job job1"
    assert progress.progressapi("task(g)")["queued"]
    bridge.before_job({"id": "job1"})  # the job holds the lock: the page's bar turns active
    assert progress.progressapi("task(g)")["active"]
    bridge({"event": "job_done", "job": "job1", "status": "done"})
    bridge.after_job({"id": "job1"})
    assert progress.progressapi("task(g)")["completed"]
    bad, base = example_values(tab, steps=0)
    assert tab.generate_task("task(bad)", *bad, base, []).startswith("error:")
    assert progress.progressapi("task(bad)") == {"active": False, "queued": False, "completed": True}
    assert tab.resume_task("task(r)", "gone").startswith("error:")
    assert progress.progressapi("task(r)")["completed"]
    assert tab.generate_task("", *values, base, []) == "queued job job2"  # standalone: no task id
    assert list(progress.pending_tasks) == [] and progress.finished_tasks == ["task(g)", "task(bad)", "task(r)"]
    assert bridge.wait_idle(5)
