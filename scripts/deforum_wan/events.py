"""Every event a render, the worker, the job queue and a batch emit, with its fields.

Events are plain dicts ``{"event": NAME, "time": seconds, **fields}``: JSON lines on the
worker's pipe and from ``render --events``, callbacks in-process. This table is the
protocol: ``make`` refuses a name it does not hold, and a test checks that every
event the code emits is named here.
"""
from __future__ import annotations

import time

# name -> fields (every one present in the event; values may be null where noted)
EVENTS: dict[str, tuple[str, ...]] = {
    # one render (render.loop.Renderer)
    "started": ("run_dir", "timestring", "windows", "frames", "resume_from_window", "warnings",
                "window_steps", "frames_written"),  # frames_written: a resume's frames on disk
    "loading": ("model",),
    "loaded": ("model", "backend", "report", "notes", "warm"),
    "step": ("window", "step", "steps"),
    "window_done": ("window", "windows", "start_frame", "end_frame", "frames_written", "preview"),
    "warning": ("message",),
    # video: null if skipped; drift_chart: render.drift's chart, null when none was drawn
    "done": ("run_dir", "timestring", "frames", "video", "settings", "drift_chart"),
    "interrupted": ("run_dir", "timestring", "frames", "video", "settings"),
    "error": ("settings", "message"),  # render --events: one file of several failed
    # the worker process (service.worker), each job event with "job"
    "ready": ("pid", "keep_warm", "protocol"),
    "bye": (),
    "protocol_error": ("message",),
    "job_started": ("job",),
    "job_done": ("job", "status"),  # status: done | interrupted | cancelled
    "job_error": ("job", "message"),
    # the job queue (service.jobs)
    "job_queued": ("job",),
    "job_running": ("job",),
    "job_cancelled": ("job",),
    "queue_paused": (),
    # a batch (service.batch): a job's windows before it runs, and notes for the person
    "planned": ("window_steps",),
    "note": ("message",),
}
# What a render's consumer sees of its progress (a batch's actors forward these).
PROGRESS = ("started", "loading", "loaded", "step", "window_done", "warning")


def make(name: str, **fields) -> dict:
    """One event; a name outside the table is a bug, caught here rather than by a consumer."""
    if name not in EVENTS:
        raise KeyError(f"unknown event {name!r}")
    return {"event": name, "time": round(time.time(), 3), **fields}


# --- progress: every consumer's view of a render, folded from its events -------------------

def initial() -> dict:
    """The progress of a render no event has told anything about yet."""
    return {"status": "queued", "phase": "", "attempt": 0, "run_dir": None, "timestring": None,
            "window": 0, "windows": 0, "step": 0, "steps": 0, "window_steps": (), "done_windows": (),
            "sampled": False, "steps_done": 0, "steps_total": 0, "frames": 0, "frames_written": 0,
            "preview": None, "model": None, "message": "",
            # seconds per step, from the events' own times: the mean interval between two steps
            # of the same count (a window's decode and writing included, a model load not)
            "step_seconds": None, "step_time": None, "steps_timed": 0, "timed_steps": 0, "timed_seconds": 0.0}


def reduce(state: dict | None, event: dict) -> dict:
    """``state`` (None: nothing yet) after ``event``: a new dict, ``state`` is left as it was.

    Pure (no clock, no files): the CLI's bar, the job queue, the WebUI's bridge and a batch
    fold the same events into the same state, so they agree on where a render is. ``window``
    is the running window, or the next one once a window is done; ``steps_done`` counts the
    done windows' steps (a resume's kept ones included) and the running window's step, out of
    ``steps_total``, the sum of ``window_steps``. A ``started`` event begins a new attempt.
    """
    s = dict(initial() if state is None else state)  # the caller's state stays as it was
    rule = _RULES.get(event.get("event"))
    if rule is not None:
        rule(s, event)
    if s["status"] == "done":  # every window's steps are done, whatever reached us
        s.update(done_windows=tuple(range(len(s["window_steps"]))), window=s["windows"], step=0)
    if s["windows"]:  # a window told before their count (events out of order) stays within it
        s["window"] = min(s["window"], s["windows"])
    return _count(s)


# Each rule updates ``s``, reduce's own copy of the state, for one kind of event.

def _planned(s: dict, event: dict) -> None:
    if not s["window_steps"]:
        s["window_steps"] = _ints(event.get("window_steps"))
        s["windows"] = s["windows"] or len(s["window_steps"])


def _started(s: dict, event: dict) -> None:
    steps = _ints(event.get("window_steps")) or s["window_steps"]
    windows = _int(event.get("windows")) or len(steps)
    resume = min(_int(event.get("resume_from_window")), windows)
    warnings = [str(w) for w in event.get("warnings") or []]
    s.update(initial(), attempt=s["attempt"] + 1, status="running", phase="starting",
             run_dir=event.get("run_dir"), timestring=event.get("timestring"), window_steps=steps,
             windows=windows, window=resume, done_windows=tuple(range(resume)),
             frames=_int(event.get("frames")), message=warnings[-1] if warnings else s["message"],
             frames_written=_int(event.get("frames_written")) if resume else 0)


def _load(s: dict, event: dict) -> None:
    # a load after any sampling is the chain going on, not a restart (the continuation
    # model loads after window 0's steps, before its window_done)
    s["model"] = event.get("model", s["model"])
    s["step_time"] = None  # a model load is not sampling time
    s["phase"] = ("rendering" if event["event"] == "loaded" else
                  "loading the continuation model" if s["sampled"] else "loading the model")


def _step(s: dict, event: dict) -> None:
    window = _window(s, _int(event.get("window")), last=s["windows"] - 1)
    if window in s["done_windows"]:
        return  # a late step of a finished window says nothing new
    steps, step = _int(event.get("steps")), _int(event.get("step"))
    plan = list(s["window_steps"])
    if steps and window < len(plan) and plan[window] != steps:
        plan[window] = steps  # a backend that runs its own step count (a distilled LoRA)
    if window == s["window"]:
        step = max(step, s["step"])  # a window's steps only go on
    s.update(window=window, step=min(step, steps) if steps else step, steps=steps,
             window_steps=tuple(plan), phase="rendering", sampled=True)
    _time_step(s, event, steps)


def _time_step(s: dict, event: dict, steps: int) -> None:
    at = event.get("time")
    if not isinstance(at, (int, float)):
        return
    if s["step_time"] is not None and steps == s["steps_timed"] and at >= s["step_time"]:
        s["timed_steps"] += 1
        s["timed_seconds"] += at - s["step_time"]
        s["step_seconds"] = s["timed_seconds"] / s["timed_steps"]
    s["step_time"], s["steps_timed"] = at, steps


def _window_done(s: dict, event: dict) -> None:
    window = _window(s, _int(event.get("window")), last=s["windows"] - 1)
    s["windows"] = s["windows"] or _int(event.get("windows"))
    s.update(done_windows=tuple(sorted({*s["done_windows"], window})), step=0,
             window=_window(s, window + 1, last=s["windows"]),
             frames_written=_int(event.get("frames_written")), preview=event.get("preview"))


def _message(s: dict, event: dict) -> None:
    s["message"] = str(event.get("message") or "")
    if event["event"] in ("error", "job_error"):
        s["status"] = "failed"


def _ended(s: dict, event: dict) -> None:
    s.update(status=event["event"], frames_written=_int(event.get("frames")),
             run_dir=event.get("run_dir", s["run_dir"]))


def _job_done(s: dict, event: dict) -> None:
    status = event.get("status")
    s["status"] = status if status in ("done", "interrupted", "cancelled") else "failed"
    s["message"] = str(event.get("message") or s["message"])


def _status(status: str):
    def rule(s: dict, event: dict) -> None:
        s["status"] = status
    return rule


_RULES = {"planned": _planned, "started": _started, "loading": _load, "loaded": _load, "step": _step,
          "window_done": _window_done, "warning": _message, "note": _message, "error": _message,
          "job_error": _message, "done": _ended, "interrupted": _ended, "job_done": _job_done,
          "job_started": _status("running"), "job_running": _status("running"),
          "job_cancelled": _status("cancelled")}


def eta(state: dict) -> float | None:
    """Seconds left: the steps left times the seconds per step measured so far (None until
    two steps measured one). The tab and the WebUI's own bar both show this."""
    per = state.get("step_seconds")
    if per is None or state.get("status") != "running":
        return None
    return max(0, state.get("steps_total", 0) - state.get("steps_done", 0)) * per


def fold(events_: list[dict], state: dict | None = None) -> dict:
    """``reduce`` over ``events_``, from ``state``."""
    for event in events_:
        state = reduce(state, event)
    return state if state is not None else initial()


def _count(s: dict) -> dict:
    plan = s["window_steps"]
    done = sum(plan[w] for w in s["done_windows"] if w < len(plan))
    if s["window"] not in s["done_windows"] and s["window"] < len(plan):
        done += min(s["step"], plan[s["window"]])
    s["steps_total"] = sum(plan)
    s["steps_done"] = min(done, s["steps_total"])
    return s


def _window(s: dict, window: int, last: int) -> int:
    """``window`` within the render's windows where their count is known."""
    return max(0, min(window, last)) if s["windows"] else max(0, window)


def _int(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _ints(values) -> tuple[int, ...]:
    return tuple(_int(v) for v in values or ())
