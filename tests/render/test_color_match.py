"""wan_color_match: the Lab transfer against a reference written here, and the render loop
correcting a chain that drifts (a real tiny pipeline whose windows the test tints and blurs
a little more each time) before its frames seed the next window."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.pixels import to_uint8
from deforum_wan.render.color_match import LabMatcher
from deforum_wan.render.drift import frame_stats
from deforum_wan.render.loop import Renderer

BASE = {"W": 64, "H": 64, "fps": 16, "max_frames": 30, "seed": 5, "prompts": {"0": "a lighthouse"},
        "wan_model": "tiny-random", "wan_clip_duration": 0.6, "wan_overlap": 2, "wan_retime": "native",
        "color_coherence": "LAB", "skip_video_creation": True,
        "animation_mode": "None"}  # a still camera: only the made-up drift moves the colours
BOUND = 0.05  # |chroma shift| of the last window against the shot's first, lab at strength 1


def _image(seed=0, h=32, w=48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / 64.0
    return np.clip(np.stack([x, y, 0.5 * (x + y)], -1) + rng.uniform(0, 0.3, (h, w, 3)), 0, 1).astype(np.float32)


def test_lab_transfer_moves_each_channels_mean_and_spread_onto_the_reference():
    skcolor = pytest.importorskip("skimage.color")
    ref, frame = _image(0), _image(1) * [0.6, 0.9, 1.0]
    out = LabMatcher(ref)(frame.astype(np.float32))
    got, want = skcolor.rgb2lab(out).reshape(-1, 3), skcolor.rgb2lab(ref).reshape(-1, 3)
    np.testing.assert_allclose(got.mean(0), want.mean(0), atol=0.6)
    np.testing.assert_allclose(got.std(0), want.std(0), rtol=0.03)  # the gamut clip trims a little
    before = skcolor.rgb2lab(frame).reshape(-1, 3)
    assert np.abs(before.mean(0) - want.mean(0)).max() > 5  # there was something to correct


class _Drifting:
    """A loaded backend whose k-th window comes out tinted red, more contrasted and blurred by k;
    a cut (a text-to-video window after the first) turns the rest blue."""

    def __init__(self, backend, requests: list):
        self._backend, self.requests = backend, requests
        self.blue = 0.0

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def generate(self, req, **kw):
        frames = self._backend.generate(req, **kw)
        k = len(self.requests)
        if req.mode == "t2v" and k:
            self.blue = 0.25
        self.requests.append(req)
        tint = np.array([0.06 * k, 0.0, self.blue - 0.04 * k], np.float32)
        out = []
        for f in frames:
            f = np.asarray(f, np.float32)
            if k:
                f = cv2.GaussianBlur(f, (0, 0), 0.25 * k)
            out.append(np.clip((f - 0.5) * (1 + 0.05 * k) + 0.5 + tint, 0, 1).astype(np.float32))
        return out


class DriftingRenderer(Renderer):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.requests: list = []

    def _load(self, model_id, window=0):
        return _Drifting(super()._load(model_id, window), self.requests)


def _render(tmp_path, tiny_models_dir, name, **keys):
    settings = load_settings({**BASE, **keys})
    notes = []
    renderer = DriftingRenderer(settings, tmp_path / name, models_dir=str(tiny_models_dir),
                                on_event=lambda e: notes.append(e.get("message", "")) if e["event"] == "note" else None)
    result = renderer.run()
    return result, renderer, make_plan(settings), notes


def _png(result, i):
    return np.asarray(Image.open(result.run_dir / f"{result.timestring}_{i:09}.png").convert("RGB"))


def _chroma_shift(result, window) -> float:
    """The last window's mean Lab chroma against the reference frame (frame 0), relative."""
    first = frame_stats(_png(result, 0))["chroma"]
    return float(np.mean([frame_stats(_png(result, i))["chroma"] for i in range(window.start_frame, window.end_frame)])
                 / first - 1)


def test_a_drifting_chain_is_reported_and_lab_holds_it_where_off_does_not(tmp_path, tiny_models_dir):
    off, _, plan, notes = _render(tmp_path, tiny_models_dir, "off", wan_color_match="off")
    assert len(plan.windows) >= 4 and len({w.segment for w in plan.windows}) == 1
    rows = off.drift["windows"]
    chroma = [r["shift"]["chroma"] for r in rows]
    sharp = [r["shift"]["sharpness"] for r in rows]
    assert all(b > a for a, b in zip(chroma, chroma[1:])), chroma  # monotone: each window drifts further
    # and washes out (the tiny model's first window varies more than the slight first blur)
    assert all(b < a for a, b in zip(sharp[1:], sharp[2:])) and sharp[-1] < -0.5, sharp
    assert off.drift["shots"][0]["vde_colour"] > 0 and off.drift["shots"][0]["vde_clarity"] > 0
    assert any(n.startswith("drift: window") for n in notes)
    manifest = (off.run_dir / f"{off.timestring}_manifest.json").read_text()
    assert '"drift"' in manifest and (off.run_dir / off.drift["chart"]).is_file()
    assert _chroma_shift(off, plan.windows[-1]) > 6 * BOUND

    lab, renderer, plan, _ = _render(tmp_path, tiny_models_dir, "lab", wan_color_match="lab")
    assert abs(_chroma_shift(lab, plan.windows[-1])) < BOUND
    held = [r["shift"]["chroma"] for r in lab.drift["windows"]]
    # the report: off climbs from window 1 on, lab stays where its first corrected window is
    # (the shot's first window is left as it came, and the tiny VAE's frame 0 is unlike the rest)
    assert max(abs(x - held[1]) for x in held[1:]) < 0.02 < 0.2 < chroma[-1] - chroma[1]
    # the conditioning frame each window was handed is the corrected frame the video holds there
    # (native retime: output frame = native frame)
    for w in plan.windows[1:]:
        image = renderer.requests[w.index].image
        np.testing.assert_array_equal(to_uint8(image), _png(lab, w.start_frame - w.overlap - 1))
    # and is not what the drifting backend made there: the off render's frame at that place
    last = plan.windows[-1]
    assert np.abs(_png(off, last.start_frame - last.overlap - 1).astype(int)
                  - _png(lab, last.start_frame - last.overlap - 1).astype(int)).mean() > 5


def test_half_strength_corrects_about_half(tmp_path, tiny_models_dir):
    full, _, _, _ = _render(tmp_path, tiny_models_dir, "full", wan_color_match="lab")
    half, _, _, _ = _render(tmp_path, tiny_models_dir, "half", wan_color_match="lab", wan_color_match_strength=0.5)
    off, _, _, _ = _render(tmp_path, tiny_models_dir, "off", wan_color_match="off")
    last = make_plan(load_settings(BASE)).windows[-1]
    shift = [abs(_chroma_shift(r, last)) for r in (full, half, off)]
    assert shift[0] < shift[1] < shift[2], shift


def test_deforum_mode_restarts_its_reference_at_a_cut(tmp_path, tiny_models_dir):
    cut = {"animation_mode": "2D", "zoom": "0: (1)", "strength_schedule": "0: (0.65), 20: (0), 21: (0.65)",
           "wan_retime": "blend", "wan_camera": "off"}
    result, renderer, plan, _ = _render(tmp_path, tiny_models_dir, "cut", wan_color_match="deforum", **cut)
    at_cut = [w for w in plan.windows if w.cut]
    assert len(at_cut) == 1 and at_cut[0].index < len(plan.windows) - 1
    after = plan.windows[-1]

    def blue(i):
        return _png(result, i)[..., 2].astype(float).mean() - _png(result, i)[..., 0].astype(float).mean()

    # the shot after the cut is held to its own (blue) first frame, not pulled back to frame 0's colours
    assert abs(blue(after.end_frame - 1) - blue(at_cut[0].start_frame)) < 15
    assert abs(blue(after.end_frame - 1) - blue(0)) > 30
    shots = {r["shot"] for r in result.drift["windows"]}
    assert len(shots) == 2
