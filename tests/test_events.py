"""events.py is the protocol: every event the code emits is named there, with its fields."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import EXAMPLE

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
