"""events.py is the protocol: every event the code emits is named there, with its fields."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import EXAMPLE
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan import events
from deforum_wan.config.settings import load_settings

PACKAGE = Path(events.__file__).resolve().parent
# emit("name", ...), make("name", ...) and {"event": "name", ...} anywhere in the package
EMITTED = re.compile(r"""(?:emit|make)\(\s*["'](\w+)["']|["']event["']:\s*["'](\w+)["']""")


def test_every_event_the_code_emits_is_in_the_table():
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for match in EMITTED.finditer(path.read_text(encoding="utf-8")):
            found.add(match.group(1) or match.group(2))
    assert found, "the scan found no event at all"
    assert found - set(events.EVENTS) == set(), "events emitted but not in events.EVENTS"


def test_make_refuses_an_unknown_name():
    assert events.make("step", window=0, step=1, steps=2)["event"] == "step"
    with pytest.raises(KeyError):
        events.make("stpe")


@pytest.mark.slow
def test_a_render_emits_each_event_with_its_fields(tiny_models_dir, tmp_path):
    from deforum_wan.render.loop import Renderer

    data = dict(json.loads(EXAMPLE.read_text()), max_frames=12, wan_write_srt=False,
                prompts={"0": "a lighthouse", "6": "the lighthouse at night"})
    seen: list[dict] = []
    Renderer(load_settings(data), tmp_path, models_dir=str(tiny_models_dir), on_event=seen.append).run()
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert {"loading", "loaded", "step", "window_done"} <= set(kinds)
    for event in seen:
        missing = set(events.EVENTS[event["event"]]) - set(event)
        assert not missing, f"{event['event']} lacks {missing}"
    started = seen[0]
    assert len(started["window_steps"]) == started["windows"]
    # the continuation model reuses the first one's encoder and VAE, and the load report says so
    loaded = [e for e in seen if e["event"] == "loaded"]
    assert [e["model"] for e in loaded] == ["tiny-random", "tiny-random-i2v"]
    assert any(note.startswith("shares") and "text_encoder" in note and "vae" in note for note in loaded[1]["notes"])


# --- events.reduce: the one progress state every consumer draws -----------------------------


@st.composite
def attempt(draw, window_steps: list[int], resume: int) -> list[dict]:
    """One render as the renderer emits it: started, loads, the steps of each window (a few
    may be skipped, a backend may run its own count), window_done, then done or a stop."""
    windows = len(window_steps)
    out = [events.make("started", run_dir="r", timestring="t", windows=windows, frames=4 * windows,
                       resume_from_window=resume, warnings=draw(st.lists(st.text(max_size=3), max_size=1)),
                       window_steps=list(window_steps), frames_written=4 * resume)]
    stop = draw(st.integers(resume, windows))  # windows == stop: the render ends
    for window in range(resume, min(stop + 1, windows)):
        if window == resume or draw(st.booleans()):
            out += [events.make("loading", model=f"m{window}"), events.make("loaded", model=f"m{window}",
                                                                            backend="b", report=[], notes=[], warm=False)]
        steps = draw(st.sampled_from([window_steps[window], 1]))
        shown = draw(st.lists(st.integers(1, steps), unique=True, max_size=steps)) if window < stop else [
            *range(1, steps + 1)]
        out += [events.make("step", window=window, step=k, steps=steps) for k in sorted(shown)]
        if draw(st.booleans()):
            out.append(events.make(draw(st.sampled_from(["warning", "note"])), message="m"))
        if window < stop:
            out.append(events.make("window_done", window=window, windows=windows, start_frame=4 * window,
                                   end_frame=4 * window + 4, frames_written=4 * window + 4, preview=f"p{window}"))
    end = "done" if stop == windows else "interrupted"
    return out + [events.make(end, run_dir="r", timestring="t", frames=4 * stop, video=None, settings="s")]


@st.composite
def renders(draw) -> list[dict]:
    """A plan, then one attempt or more, each resuming where the last one's windows ended."""
    window_steps = draw(st.lists(st.integers(1, 5), min_size=1, max_size=5))
    out = [events.make("planned", window_steps=list(window_steps))]
    resume = 0
    for _ in range(draw(st.integers(1, 3))):
        run = draw(attempt(window_steps, resume))
        out += run
        resume = sum(e["event"] == "window_done" for e in run) + resume
        if run[-1]["event"] == "done":
            break
    return out


def _states(sequence: list[dict]) -> list[dict]:
    states, state = [], None
    for event in sequence:
        state = events.reduce(state, event)
        states.append(state)
    return states


@given(renders())
def test_progress_only_grows_within_an_attempt_and_stays_within_the_plan(sequence):
    states = _states(sequence)
    for before, after in zip(states, states[1:]):
        if after["attempt"] == before["attempt"]:
            assert after["steps_done"] >= before["steps_done"], (before, after)
    for state in states:
        assert 0 <= state["steps_done"] <= state["steps_total"]
        assert 0 <= state["window"] <= state["windows"]
        assert state["step"] <= max(state["steps"], 0) or not state["steps"]
    last = states[-1]
    assert last["status"] == sequence[-1]["event"] and last["frames_written"] == sequence[-1]["frames"]
    if last["status"] == "done":
        assert last["steps_done"] == last["steps_total"] and last["window"] == last["windows"]
    # every step event counted: the last attempt's steps done are its kept windows' and its own
    starts = [i for i, e in enumerate(sequence) if e["event"] == "started"]
    own = sequence[starts[-1]:]
    done = [e["window"] for e in own if e["event"] == "window_done"]
    plan = list(last["window_steps"])
    running = [e for e in own if e["event"] == "step" and e["window"] not in done]
    expected = sum(plan[: own[0]["resume_from_window"]]) + sum(plan[w] for w in done)
    expected += running[-1]["step"] if running and last["status"] != "done" else 0
    assert last["steps_done"] == (last["steps_total"] if last["status"] == "done" else expected)


@given(renders(), st.data())
def test_reduce_is_a_fold_whatever_the_split_and_leaves_its_input_alone(sequence, data):
    cut = data.draw(st.integers(0, len(sequence)))
    whole = events.fold(sequence)
    head = events.fold(sequence[:cut])
    frozen = dict(head)
    assert events.fold(sequence[cut:], head) == whole
    assert head == frozen  # reduce made new states, it changed none


ANY_EVENT = st.fixed_dictionaries({
    "event": st.sampled_from(sorted(events.EVENTS)),
    "window": st.integers(-2, 8), "windows": st.integers(0, 6), "step": st.integers(-1, 9),
    "steps": st.integers(0, 6), "resume_from_window": st.integers(0, 8),
    "window_steps": st.lists(st.integers(0, 6), max_size=6), "frames": st.integers(0, 50),
    "frames_written": st.integers(0, 50), "status": st.sampled_from(["done", "interrupted", "cancelled", "x"]),
})


@given(st.lists(ANY_EVENT, max_size=40))
def test_any_events_in_any_order_keep_the_counts_in_bounds(sequence):
    for state in _states(sequence):
        assert 0 <= state["steps_done"] <= state["steps_total"] == sum(state["window_steps"])
        assert state["window"] <= state["windows"] or not state["windows"]


def test_the_phase_names_a_load_after_sampling_the_continuation_model():
    state = events.fold([events.make("started", run_dir="r", timestring="t", windows=2, frames=8,
                                     resume_from_window=0, warnings=[], window_steps=[2, 2], frames_written=0),
                         events.make("loading", model="t2v")])
    assert (state["phase"], state["model"]) == ("loading the model", "t2v")
    state = events.fold([events.make("step", window=0, step=2, steps=2), events.make("loading", model="i2v")],
                        state)
    assert state["phase"] == "loading the continuation model" and state["steps_done"] == 2
    resumed = events.reduce(state, events.make("started", run_dir="r", timestring="t", windows=2, frames=8,
                                               resume_from_window=1, warnings=[], window_steps=[2, 2],
                                               frames_written=5))
    assert (resumed["attempt"], resumed["steps_done"], resumed["frames_written"]) == (2, 2, 5)
    assert events.reduce(resumed, events.make("loading", model="i2v"))["phase"] == "loading the model"
