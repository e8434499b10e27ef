"""The carry stream from a window's float frames to the PNGs on disk (real PNG writer)."""
import numpy as np
import pytest
from PIL import Image

from deforum_wan.backends.base import GenerateRequest
from deforum_wan.backends.diffusers_backend import vace_inputs
from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import WanError
from deforum_wan.render.frame_writer import FrameWriter
from deforum_wan.render.names import frame_path
from deforum_wan.render.stream import CarryStream

SIZE = 32
TS = "20240101000000"
BASE = {"W": SIZE, "H": SIZE, "fps": 16, "max_frames": 20, "seed": 3, "prompts": {"0": "a lighthouse"},
        "wan_model": "tiny-random", "wan_clip_duration": 0.6, "wan_overlap": 2, "wan_retime": "native",
        "color_coherence": "None", "skip_video_creation": True, "animation_mode": "None"}


def stream_to_pngs(tmp_path, plan, windows):
    """Each window's frames through a CarryStream as the render loop hands them over; the
    PNGs written, as uint8."""
    with FrameWriter(tmp_path, TS, sync=True, fsync=False) as writer:
        stream = CarryStream(plan, writer, lambda i, frame: None)
        for w, frames in zip(plan.windows, windows):
            nxt = plan.windows[w.index + 1].overlap if w.index + 1 < len(plan.windows) else 0
            stream.add(list(frames), w.overlap, nxt)
    return [np.asarray(Image.open(frame_path(tmp_path, TS, i))) for i in range(stream.written)]


def test_the_shared_frames_of_two_windows_are_crossfaded(tmp_path):
    """The N frames two windows share step evenly from the earlier window's to the later
    one's: frame i of the overlap is old + (i+1)/(N+1) (new - old)."""
    plan = make_plan(load_settings(BASE))
    assert len(plan.windows) >= 3 and all(w.overlap == 2 and not w.cut for w in plan.windows[1:])
    rng = np.random.default_rng(0)
    windows = [rng.random((w.overlap + w.new_frames, SIZE, SIZE, 3), dtype=np.float32) for w in plan.windows]

    video: list[np.ndarray] = []  # the native frames, written out
    for w, frames in zip(plan.windows, windows):
        n = w.overlap
        for i in range(n):
            weight = (i + 1) / (n + 1)
            video[len(video) - n + i] = (1 - weight) * video[len(video) - n + i] + weight * frames[i]
        video.extend(frames[n:])
    pngs = stream_to_pngs(tmp_path, plan, windows)
    assert len(pngs) == len(video) == plan.max_frames  # native retime: one output frame each
    for png, frame in zip(pngs, video):
        assert np.abs(png / 255 - frame).max() <= 0.5 / 255 + 1e-6


def test_vace_context_and_written_png_round_exact_halves_alike(tmp_path):
    """A float frame becomes the same 8-bit pixels in the PNG written and in the VACE context
    handed to the pipeline, exact halves (k + 0.5) / 255 included."""
    levels = np.arange(255)
    halves = ((levels + 0.5) / 255).astype(np.float32)
    halves = halves[halves * np.float32(255) == levels + 0.5]  # exactly k + 0.5 once scaled
    assert len(halves) > 100 and (np.floor(halves * 255) % 2 == 0).any() and (np.floor(halves * 255) % 2 == 1).any()
    frame = np.resize(halves, (SIZE, SIZE, 3)).astype(np.float32)

    plan = make_plan(load_settings({**BASE, "max_frames": 7}))
    assert len(plan.windows) == 1
    png = stream_to_pngs(tmp_path, plan, [np.stack([frame] * plan.windows[0].new_frames)])[0]

    req = GenerateRequest(mode="i2v", prompt="p", negative_prompt="", num_frames=9, width=SIZE, height=SIZE,
                          seed=1, guidance_scale=5.0, steps=1, context=np.stack([frame, frame]))
    video, _ = vace_inputs(req)
    np.testing.assert_array_equal(np.asarray(video[0]), png)
    np.testing.assert_array_equal(np.asarray(video[1]), png)


def test_the_carry_keeps_the_svi_latent_and_refuses_a_broken_one(tmp_path):
    """wan_svi pro's latent goes into the carry file and comes back as it was; one that is not a
    (z, n, h, w) float array makes the carry unusable (the resume starts over)."""
    plan = make_plan(load_settings(BASE))
    w = plan.windows[0]
    with FrameWriter(tmp_path, TS, sync=True, fsync=False) as writer:
        stream = CarryStream(plan, writer, lambda i, frame: None)
        stream.add([np.full((SIZE, SIZE, 3), 0.5, np.float32)] * w.new_frames, 0, plan.windows[1].overlap)
        latent = np.random.default_rng(1).standard_normal((4, 1, 4, 4)).astype(np.float32)
        stream.svi_latent = latent
        good = stream.carry_bytes(1)
        stream.svi_latent = latent[0, 0]  # two dimensions
        broken = stream.carry_bytes(1)
        stream.svi_latent = None
        without = stream.carry_bytes(1)
    for name, data in (("good", good), ("broken", broken), ("without", without)):
        (tmp_path / name).write_bytes(data)
    back = CarryStream(plan, None, lambda i, frame: None)
    assert back.load(tmp_path / "good", 1) == 1
    np.testing.assert_array_equal(back.svi_latent, latent)
    assert back.load(tmp_path / "without", 1) == 1 and back.svi_latent is None
    with pytest.raises(WanError, match="broken SVI latent"):
        back.load(tmp_path / "broken", 1)
