"""Job events -> a WebUI's progress state (a stand-in for modules.shared.state), the WebUI's
Interrupt and Skip -> the manager, and the generation lock held while Wan renders."""
from __future__ import annotations

import threading
import time

from deforum_wan.host_bridge import ProgressBridge


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
    assert wait_for(lambda: state.log == ["begin"]) and lock.locked()
    bridge({"event": "started", "job": "j1", "windows": 3, "frames": 48})
    bridge({"event": "step", "job": "j1", "window": 1, "step": 2, "steps": 4})
    assert (state.job, state.job_count, state.job_no, state.sampling_step, state.sampling_steps) == ("wan", 3, 1, 2, 4)
    assert state.textinfo == "Wan: window 2/3, step 2/4, frames 0/48"
    bridge({"event": "window_done", "job": "j1", "window": 1, "frames_written": 30, "preview": "f.png"})
    assert state.job_no == 2 and state.images == ["img:f.png"] and "frames 30/48" in state.textinfo
    manager.current = None  # the queue ran dry
    assert bridge.wait_idle(5) and state.log == ["begin", "end"] and not lock.locked()
    assert order == ["unload", "reload"]


def test_the_webuis_interrupt_and_skip_reach_the_manager():
    manager, state = Manager(), State()
    bridge = ProgressBridge(manager, state, poll_seconds=0.01)
    bridge({"event": "job_running", "job": "j1"})
    assert wait_for(lambda: state.log == ["begin"])
    state.skipped = True
    assert wait_for(lambda: manager.calls == ["skip"]) and state.skipped is False
    state.interrupted = True
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
    bridge({"event": "job_running", "job": "j1"})
    manager.current = None
    assert bridge.wait_idle(5) and state.log == ["begin", "end"]
    assert "deforum-wan: RuntimeError: no model" in capsys.readouterr().err
