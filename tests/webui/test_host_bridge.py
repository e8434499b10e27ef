"""Job events -> a WebUI's progress state (a stand-in for modules.shared.state), the WebUI's
Interrupt and Skip -> the manager, and the generation lock held while Wan renders: taken, and
the SD checkpoint unloaded, before the worker starts loading (a real JobManager and worker)."""
from __future__ import annotations

import threading
import time

import pytest
from helpers import SINGLE, settings, worker_env
from helpers import wait_for as wait_until

from deforum_wan.service.jobs import JobManager
from deforum_wan.webui.host_bridge import ProgressBridge


class State:
    """The attributes of A1111's shared.state that the bridge uses."""

    def __init__(self):
        self.job = ""
        self.job_count = self.job_no = self.sampling_step = self.sampling_steps = 0
        self.textinfo = None
        self.interrupted = self.skipped = False
        self.images = []
        self.log = []

    def begin(self, job="(unknown)"):
        self.job, self.job_count, self.interrupted, self.skipped = job, -1, False, False
        self.log.append("begin")

    def end(self):
        self.job, self.job_count = "", 0
        self.log.append("end")

    def assign_current_image(self, image):
        self.images.append(image)


class Manager:
    def __init__(self):
        self.current = "j1"
        self.queued = 0
        self.calls = []

    def state(self):
        return {"current": self.current, "queued": self.queued, "paused": False}

    def interrupt(self):
        self.calls.append("interrupt")
        self.current = None
        return True

    def skip(self):
        self.calls.append("skip")
        return True


def wait_for(predicate, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_events_fill_the_webui_state_and_the_lock_is_held_until_idle():
    manager, state, lock = Manager(), State(), threading.Lock()
    order = []
    bridge = ProgressBridge(manager, state, lock=lock, before=lambda: order.append("unload"),
                            after=lambda: order.append("reload"), load_image=lambda p: f"img:{p}",
                            poll_seconds=0.01)
    bridge({"event": "job_running", "job": "j1"})
    bridge.before_job({"id": "j1"})  # returns with the lock held and the checkpoint unloaded
    assert state.log == ["begin"] and lock.locked() and order == ["unload"]
    bridge({"event": "started", "job": "j1", "windows": 3, "frames": 48})
    bridge({"event": "step", "job": "j1", "window": 1, "step": 1, "steps": 4, "time": 100.0})
    # one step measures no time per step: A1111 gets no progress (and so shows no ETA) yet
    assert (state.job_count, state.job_no, state.sampling_step, state.sampling_steps) == (3, 0, 0, 4)
    bridge({"event": "step", "job": "j1", "window": 1, "step": 2, "steps": 4, "time": 102.0})
    assert (state.job, state.job_count, state.job_no, state.sampling_step, state.sampling_steps) == ("wan", 3, 1, 2, 4)
    assert state.textinfo == "Wan: window 2/3, step 2/4, frames 0/48"
    bridge({"event": "window_done", "job": "j1", "window": 1, "frames_written": 30, "preview": "f.png"})
    assert state.job_no == 2 and state.images == ["img:f.png"] and "frames 30/48" in state.textinfo
    time.sleep(0.1)
    assert lock.locked() and order == ["unload"]  # held while the job runs
    bridge.after_job({"id": "j1"})
    manager.current = None  # the queue ran dry
    assert bridge.wait_idle(5) and state.log == ["begin", "end"] and not lock.locked()
    assert order == ["unload", "reload"]


def test_the_webuis_interrupt_and_skip_reach_the_manager():
    manager, state = Manager(), State()
    bridge = ProgressBridge(manager, state, poll_seconds=0.01)
    bridge.before_job({"id": "j1"})
    assert state.log == ["begin"]
    state.skipped = True
    assert wait_for(lambda: manager.calls == ["skip"]) and state.skipped is False
    state.interrupted = True
    assert wait_for(lambda: "interrupt" in manager.calls)
    bridge.after_job({"id": "j1"})
    assert bridge.wait_idle(5)
    assert manager.calls == ["skip", "interrupt"]  # once, although the flag stays set


def test_the_tabs_interrupt_shows_in_the_webui():
    state = State()
    ProgressBridge(Manager(), state)({"event": "queue_paused"})
    assert state.interrupted is True


def test_a_failing_unload_does_not_stop_the_render(capsys):
    manager, state = Manager(), State()

    def unload():
        raise RuntimeError("no model")

    bridge = ProgressBridge(manager, state, before=unload, poll_seconds=0.01)
    bridge.before_job({"id": "j1"})  # returns although the unload failed
    bridge.after_job({"id": "j1"})
    manager.current = None
    assert bridge.wait_idle(5) and state.log == ["begin", "end"]
    assert "deforum-wan: RuntimeError: no model" in capsys.readouterr().err


# --- a real JobManager and worker on the tiny models ---------------------------------------

class WebUI:
    """The WebUI side: its generation lock, its progress state, and the checkpoint calls."""

    def __init__(self):
        self.lock, self.state, self.order = threading.Lock(), State(), []
        self.guard = threading.Lock()

    def note(self, what: str) -> None:
        with self.guard:
            self.order.append(what)

    def unload(self):
        assert self.lock.locked()  # under the lock: no SD generation can start in between
        self.note("unload")

    def reload(self):
        self.note("reload")


@pytest.mark.slow
def test_the_lock_is_taken_and_sd_unloaded_before_the_worker_loads(tiny_models_dir, tmp_path):
    webui = WebUI()
    # Wired as scripts/wan_tab.py wires it: the bridge first, its hooks into the manager.
    bridge = ProgressBridge(None, webui.state, lock=webui.lock, before=webui.unload, after=webui.reload,
                            poll_seconds=0.05)
    manager = JobManager(tmp_path / "jobs.db", tmp_path / "out", models_dir=str(tiny_models_dir),
                         env=worker_env(), before_job=bridge.before_job, after_job=bridge.after_job)
    bridge.manager = manager
    events = []

    def listen(event):
        bridge(event)
        if event.get("event") in ("loading", "started", "job_done"):
            events.append(event["event"])
            webui.note(f"{event['event']} (lock held: {webui.lock.locked()})")

    manager.subscribe(listen)
    generating = False
    try:
        webui.lock.acquire()  # an SD generation is running when Generate is pressed in the Wan tab
        generating = True
        first, second = manager.submit_batch([("first", settings(SINGLE)), ("second", settings(SINGLE))])
        wait_until(lambda: manager.get(first)["status"] == "running", 30, "the first job to be claimed")
        time.sleep(1.5)
        job = manager.get(first)
        assert job["progress"]["phase"] == "waiting for the host"
        assert manager.worker_pid is None and events == [] and webui.order == []  # nothing loads yet
        assert webui.state.log == []
        webui.lock.release()  # the SD generation ends
        generating = False

        for job_id in (first, second):
            wait_until(lambda: manager.get(job_id)["status"] not in ("queued", "running"), 120, "the Wan jobs")
            assert manager.get(job_id)["status"] == "done", manager.get(job_id)
        assert bridge.wait_idle(10) and not webui.lock.locked()
        # Unloaded once before anything loaded, kept unloaded across the hand-over, then reloaded.
        assert webui.order[0] == "unload" and webui.order[-1] == "reload"
        assert webui.order.count("unload") == webui.order.count("reload") == 1
        middle = webui.order[1:-1]
        assert middle[0].startswith("started") and middle.count("job_done (lock held: True)") == 2
        assert all(m.endswith("(lock held: True)") for m in middle), middle
        assert webui.state.log == ["begin", "end"]
    finally:
        if generating:
            webui.lock.release()  # an assertion failed while "generating": let the dispatcher go on
        manager.shutdown()


def test_the_webui_bar_and_the_tabs_progress_box_agree_on_window_and_frames():
    """One resumed render's events, folded by the job queue (the tab's Progress box reads its
    record) and by the bridge (the WebUI's bar): at every event they name the same window,
    step and frames, a resume's frames on disk included."""
    from deforum_wan import events
    from deforum_wan.service.jobstore import PROGRESS_KEYS
    from deforum_wan.webui.progress_text import progress_text

    state = State()
    bridge = ProgressBridge(Manager(), state, poll_seconds=0.01)
    run = [{"event": "job_running", "job": "j1"},
           {"event": "started", "job": "j1", "windows": 2, "frames": 240, "resume_from_window": 1,
            "frames_written": 43, "window_steps": [4, 4]},
           {"event": "loading", "job": "j1", "model": "m"},
           {"event": "loaded", "job": "j1", "model": "m"},
           {"event": "step", "job": "j1", "window": 1, "step": 1, "steps": 4},
           {"event": "step", "job": "j1", "window": 1, "step": 3, "steps": 4},
           {"event": "window_done", "job": "j1", "window": 1, "windows": 2, "frames_written": 240,
            "preview": None}]
    folded = None
    checked, boxes = 0, []
    for event in run:
        bridge(event)
        folded = events.reduce(None if event["event"] == "job_running" else folded, event)
        record = {"phase": folded["phase"], **{k: folded[k] for k in PROGRESS_KEYS}}  # the queue's _live
        box = progress_text({"id": "j1" * 6, "name": "run", "status": "running", "progress": record}, [])
        boxes.append(box)
        if state.textinfo and event["event"] != "job_running":
            bar_where = state.textinfo.split(", ", 1)[1] if state.textinfo.startswith("Wan: loading") else \
                state.textinfo.removeprefix("Wan: ")
            assert box.endswith(" - " + bar_where), (event["event"], box, state.textinfo)
            checked += 1
    assert checked >= 4 and box.endswith("frames 240/240")
    assert "window 2/2, step 3/4, frames 43/240" in boxes[5]  # the resume's frames on disk, not 0/240
