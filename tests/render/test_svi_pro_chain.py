"""wan_svi pro in the render loop, on the real tiny Wan2.2 I2V-A14B pipeline: each window is
handed SVI 2.0 Pro's input (the anchor; the last latent the window before left), and that latent
is carried through a resume in the run folder's carry."""
from __future__ import annotations

import numpy as np
from PIL import Image
from test_svi_chain import BASE, RecordingRenderer, _png

from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import Interrupted


class LatentRecorder(RecordingRenderer):
    """Keeps the latent each window's backend left, as it was when the window ended."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.latents: list = []

    def _generate(self, backend, w, plan, stream):
        frames = super()._generate(backend, w, plan, stream)
        self.latents.append(np.array(backend.last_latent))
        return frames


def _settings(tmp_path, **keys):
    init = tmp_path / "init.png"
    if not init.exists():
        Image.fromarray(np.random.default_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(init)
    return load_settings({**BASE, "wan_model": "tiny-random-a14b-i2v", "use_init": True, "init_image": str(init),
                          "wan_svi": "pro", "wan_overlap": 4, **keys})


def _render(tmp_path, tiny_models_dir, name, **keys):
    settings = _settings(tmp_path, **keys)
    warnings: list[str] = []
    renderer = LatentRecorder(settings, tmp_path / name, models_dir=str(tiny_models_dir),
                              on_event=lambda e: warnings.append(e["message"]) if e["event"] == "warning" else None)
    return renderer.run(), renderer, make_plan(settings), warnings


def test_each_window_gets_the_anchor_and_the_latent_the_window_before_left(tmp_path, tiny_models_dir):
    off, _, _, _ = _render(tmp_path, tiny_models_dir, "off", wan_svi="off")
    pro, renderer, plan, warnings = _render(tmp_path, tiny_models_dir, "pro")
    assert len(plan.windows) >= 3
    assert warnings == ["wan_svi pro is SVI 2.0 Pro's input for its high/low LoRA pair; wan_loras has no pair"
                        " (path:weight:high and path:weight:low)"]
    reqs = renderer.requests
    first = reqs[0].svi  # SVI's first clip: its own image as the anchor, no motion latent
    assert first.pad == "latent" and first.latent is None
    np.testing.assert_array_equal(first.anchor, reqs[0].image)
    for w in plan.windows[1:]:
        svi = reqs[w.index].svi
        assert svi.pad == "latent" and svi.latent.shape == (4, 1, 8, 8)
        np.testing.assert_array_equal(svi.latent, renderer.latents[w.index - 1])
        np.testing.assert_array_equal(svi.anchor, first.anchor)  # the init image the video started from
    assert not np.array_equal(renderer.latents[0], renderer.latents[1])
    last = plan.windows[-1].end_frame - 1
    assert not np.array_equal(_png(off, last), _png(pro, last))  # the condition reaches the pipeline


def test_an_overlap_other_than_one_latent_is_named(tmp_path, tiny_models_dir, tiny_lora):
    pair = [{"path": str(tiny_lora), "weight": 1.0, "expert": "high"},
            {"path": str(tiny_lora), "weight": 1.0, "expert": "low"}]
    _, _, _, warnings = _render(tmp_path, tiny_models_dir, "short", wan_overlap=2, wan_loras=pair)
    assert len(warnings) == 1  # the LoRA pair is there
    assert "wan_svi pro carries the previous window's last latent" in warnings[0] and "wan_overlap 2" in warnings[0]


def test_a_resume_carries_the_latent_and_gives_the_same_frames(tmp_path, tiny_models_dir):
    whole, full, plan, _ = _render(tmp_path, tiny_models_dir, "whole")
    settings = _settings(tmp_path)
    first: list = []
    stopper = LatentRecorder(settings, tmp_path / "resumed", models_dir=str(tiny_models_dir), on_event=first.append,
                             should_stop=lambda: any(e["event"] == "window_done" and e["window"] >= 1 for e in first))
    try:
        stopper.run()
    except Interrupted:
        pass
    ts = next(e["timestring"] for e in first if e["event"] == "started")
    resumed = LatentRecorder(settings, tmp_path / "resumed", models_dir=str(tiny_models_dir), resume=ts)
    result = resumed.run()
    start = len(plan.windows) - len(resumed.requests)
    assert 0 < start < len(plan.windows)  # it resumed after a window
    np.testing.assert_array_equal(resumed.requests[0].svi.latent, full.latents[start - 1])
    np.testing.assert_array_equal(resumed.requests[0].svi.anchor, full.requests[0].svi.anchor)
    for i in range(plan.max_frames):
        np.testing.assert_array_equal(_png(result, i), _png(whole, i))
