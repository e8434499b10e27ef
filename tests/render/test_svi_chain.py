"""wan_svi in the render loop: each continuation window is handed Stable Video Infinity's
input (the frames from its conditioning frame on, the anchor), on the real tiny models."""
from __future__ import annotations

import numpy as np
from PIL import Image

from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.pixels import to_uint8
from deforum_wan.render.loop import Renderer

BASE = {"W": 64, "H": 64, "fps": 16, "max_frames": 30, "seed": 5, "prompts": {"0": "a lighthouse"},
        "wan_model": "tiny-random", "animation_mode": "None", "wan_retime": "native", "wan_clip_duration": 0.5,
        "wan_color_match": "off", "color_coherence": "None"}


class _Recorded:
    """A real backend whose requests are kept."""

    def __init__(self, backend, requests, outputs):
        self._backend, self._requests, self._outputs = backend, requests, outputs

    def generate(self, req, **kw):
        self._requests.append(req)
        self._outputs.append(self._backend.generate(req, **kw))
        return self._outputs[-1]

    def __getattr__(self, name):
        return getattr(self._backend, name)


class RecordingRenderer(Renderer):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.requests: list = []
        self.outputs: list = []

    def _load(self, model_id, window=0):
        return _Recorded(super()._load(model_id, window), self.requests, self.outputs)


def _render(tmp_path, tiny_models_dir, name, **keys):
    settings = load_settings({**BASE, **keys})
    warnings: list[str] = []
    renderer = RecordingRenderer(settings, tmp_path / name, models_dir=str(tiny_models_dir),
                                 on_event=lambda e: warnings.append(e["message"]) if e["event"] == "warning" else None)
    return renderer.run(), renderer, make_plan(settings), warnings


def _png(result, i):
    return np.asarray(Image.open(result.run_dir / f"{result.timestring}_{i:09}.png").convert("RGB"))


def test_shot_hands_each_window_its_last_frame_and_the_videos_first(tmp_path, tiny_models_dir):
    off, _, plan, _ = _render(tmp_path, tiny_models_dir, "off")
    shot, renderer, plan, warnings = _render(tmp_path, tiny_models_dir, "shot", wan_svi="shot")
    assert len(plan.windows) >= 3 and not warnings
    reqs = renderer.requests
    assert reqs[0].svi is None  # the first window has nothing before it
    for w in plan.windows[1:]:
        svi = reqs[w.index].svi
        assert svi.pad == "anchor" and len(svi.motion) == 1
        np.testing.assert_array_equal(svi.motion[0], reqs[w.index].image)  # the conditioning frame
        np.testing.assert_array_equal(to_uint8(svi.anchor), _png(shot, 0))  # the video's first frame
    np.testing.assert_array_equal(_png(off, 0), _png(shot, 0))  # window 0 is Wan's own
    # SVI's input reaches the pipeline (the tiny random model follows it only slightly)
    last = plan.windows[-1].end_frame - 1
    assert not np.array_equal(_png(off, last), _png(shot, last))


def test_film_hands_on_the_overlap_and_says_when_it_is_short(tmp_path, tiny_models_dir):
    film, renderer, plan, warnings = _render(tmp_path, tiny_models_dir, "film", wan_svi="film", wan_overlap=2)
    w = plan.windows[1]
    svi = renderer.requests[1].svi
    assert svi.pad == "zeros" and len(svi.motion) == w.overlap + 1 == 3
    # the conditioning frame and the overlap after it: the last 3 frames window 0 kept
    kept = plan.windows[0].new_frames
    np.testing.assert_array_equal(svi.motion, renderer.outputs[0][kept - 3:kept])
    np.testing.assert_array_equal(to_uint8(svi.motion[0]), _png(film, w.start_frame - w.overlap - 1))
    assert any("wan_svi film takes 5 motion frames; wan_overlap 2 hands on 3" in m for m in warnings)


def test_a_resumed_shot_reads_its_anchor_back_and_gives_the_same_frames(tmp_path, tiny_models_dir):
    from deforum_wan.errors import Interrupted

    whole, _, plan, _ = _render(tmp_path, tiny_models_dir, "whole", wan_svi="shot")
    settings = load_settings({**BASE, "wan_svi": "shot"})
    first: list = []
    stopper = RecordingRenderer(settings, tmp_path / "resumed", models_dir=str(tiny_models_dir),
                                on_event=first.append, should_stop=lambda: any(
                                    e["event"] == "window_done" and e["window"] >= 1 for e in first))
    try:
        stopper.run()
    except Interrupted:
        pass
    ts = next(e["timestring"] for e in first if e["event"] == "started")
    resumed = RecordingRenderer(settings, tmp_path / "resumed", models_dir=str(tiny_models_dir), resume=ts)
    result = resumed.run()
    assert resumed.requests and resumed.requests[0].svi is not None  # it resumed after window 0
    np.testing.assert_array_equal(to_uint8(resumed.requests[0].svi.anchor), _png(result, 0))
    for i in range(plan.max_frames):
        np.testing.assert_array_equal(_png(result, i), _png(whole, i))
