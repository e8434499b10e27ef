"""Warped-path camera guidance in the real diffusers Wan pipelines (tiny models, CPU)."""
import numpy as np
import pytest
import torch

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.camera_guide import PathGuidance, PathGuide, guide_steps, latent_mask
from deforum_wan.backends.chain import load_backend
from deforum_wan.errors import Interrupted, WanError
from deforum_wan.models.registry import get_model

SIZE, FRAMES, STEPS = 32, 9, 10


def path(frames=FRAMES, size=SIZE, seed=0):
    """A pan right by one pixel a frame: column j of the anchor moves to j + t; the first t
    columns are new (not covered)."""
    anchor = np.random.default_rng(seed).random((size, size, 3), dtype=np.float32)
    video = np.stack([np.roll(anchor, t, axis=1) for t in range(frames)])
    cover = np.ones((frames, size, size), np.float32)
    for t in range(frames):
        cover[t, :, :t] = 0
    return video, cover


def request(mode="t2v", free=0.2, lock=0.5, **kw):
    video, cover = path()
    base = dict(mode=mode, prompt="a red fox in the snow", negative_prompt="blurry", num_frames=FRAMES,
                width=SIZE, height=SIZE, seed=3, guidance_scale=1.0, steps=STEPS,
                path_guide=PathGuide(video, cover, free, lock))
    if mode == "i2v":
        base["image"] = video[0]
    base.update(kw)
    return GenerateRequest(**base)


def backend_for(model_id, tiny_models_dir):
    backend, _ = load_backend(get_model(model_id), "diffusers", BackendOptions(models_dir=str(tiny_models_dir)))
    return backend


class Calls:
    """Each transformer call's timestep, expert and input latents (forward pre-hook)."""

    def __init__(self, pipe, channels):
        self.records, self.handles = [], []
        for name in ("transformer", "transformer_2"):
            module = getattr(pipe, name, None)
            if module is not None:
                self.handles.append(module.register_forward_pre_hook(self._hook(name), with_kwargs=True))
        self.channels = channels

    def _hook(self, name):
        def hook(module, args, kwargs):
            latents = kwargs["hidden_states"][:, : self.channels].detach().float().clone()
            self.records.append((name, float(kwargs["timestep"].flatten()[0]), latents))
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def run(backend, req, **kw):
    calls = Calls(backend._pipeline_for(req.mode), backend.pipe.vae.config.z_dim)
    try:
        frames = backend.generate(req, **kw)
    finally:
        calls.close()
    return frames, calls.records


def test_guide_steps_round_the_fractions():
    assert guide_steps(0.04, 0.10, 50) == (2, 5)  # the method's camera setting
    assert guide_steps(0.04, 0.10, 4) == (0, 1)  # a lock above zero holds at least one step
    assert guide_steps(0.3, 0.1, 10) == (3, 3)  # never a lock before the start
    assert guide_steps(1.0, 1.0, 7) == (7, 7)


@pytest.mark.parametrize("model_id,mode", [("tiny-random", "t2v"), ("tiny-random-i2v", "i2v"),
                                           ("tiny-random-vace", "t2v"), ("tiny-random-ti2v", "i2v")])
def test_the_transformer_runs_only_the_steps_after_free(tiny_models_dir, model_id, mode):
    with backend_for(model_id, tiny_models_dir) as backend:
        plain, calls = run(backend, request(mode, path_guide=None))
        assert len(calls) == STEPS
        guided, calls = run(backend, request(mode))
        assert len(calls) == STEPS - 2  # free 0.2 of 10 steps
        assert guided.shape == plain.shape and np.isfinite(guided).all()
        again, _ = run(backend, request(mode))
        np.testing.assert_array_equal(guided, again)  # deterministic


@pytest.mark.parametrize("model_id,mode", [("tiny-random", "t2v"), ("tiny-random-i2v", "i2v"),
                                           ("tiny-random-vace", "i2v")])
def test_covered_cells_sit_on_the_noised_path_until_the_lock(tiny_models_dir, model_id, mode):
    req = request(mode)
    with backend_for(model_id, tiny_models_dir) as backend:
        _, calls = run(backend, req)
        pipe = backend.pipe
        ref = PathGuidance(pipe, req.path_guide, STEPS, req.seed, backend.device)
        with ref.schedule(pipe.scheduler):
            pipe.scheduler.set_timesteps(STEPS)
        mask = ref.mask.expand_as(ref.clean) > 0.5
        assert 0 < mask.float().mean() < 1
        free, lock = ref.free, ref.lock
        torch.testing.assert_close(calls[0][2], ref.noised(ref.sigmas[0]), rtol=0, atol=1e-6)
        for k in range(1, len(calls)):
            latents, target = calls[k][2], ref.noised(ref.sigmas[k])
            if free + k <= lock:  # the step before was locked: covered cells are the path
                torch.testing.assert_close(latents[mask], target[mask], rtol=0, atol=1e-6)
            else:
                assert (latents[mask] - target[mask]).abs().max() > 1e-3  # free now

        # Outside the mask the latents are the sampler's own: equal to a run that never locks.
        _, unlocked = run(backend, request(mode, lock=0.2))
        torch.testing.assert_close(calls[1][2][~mask], unlocked[1][2][~mask], rtol=0, atol=1e-6)
        assert (calls[1][2][mask] - unlocked[1][2][mask]).abs().max() > 1e-3


@pytest.mark.parametrize("model_id", ["tiny-random", "tiny-random-vace"])
def test_free_after_every_step_returns_the_path_through_the_vae(tiny_models_dir, model_id):
    """Every step skipped: the window is its camera path, in order, encoded and decoded by the
    VAE alone (the latents normalised for the pipeline and back again cancel out)."""
    req = request(free=1.0, lock=1.0)
    with backend_for(model_id, tiny_models_dir) as backend:
        frames, calls = run(backend, req)
        assert calls == []
        vae = backend.pipe.vae
        assert min(vae.config.latents_std) != max(vae.config.latents_std)  # a wrong normalisation shows
        pixels = torch.from_numpy(req.path_guide.frames).permute(3, 0, 1, 2)[None] * 2 - 1
        with torch.no_grad():
            video = vae.decode(vae.encode(pixels).latent_dist.mode()).sample
        expected = (video[0].permute(1, 2, 3, 0).numpy() / 2 + 0.5).clip(0, 1)
        np.testing.assert_allclose(frames, expected, atol=1e-5)


def test_two_experts_switch_at_the_same_timesteps(tiny_models_dir):
    with backend_for("tiny-random-a14b", tiny_models_dir) as backend:
        _, plain = run(backend, request(path_guide=None, guidance_scale=4.0, guidance_scale_2=3.0))
        _, guided = run(backend, request(guidance_scale=4.0, guidance_scale_2=3.0))
    plain_experts = [(name, t) for name, t, _ in plain]
    assert {name for name, _ in plain_experts} == {"transformer", "transformer_2"}
    # CFG calls each expert twice a step; the guided run is the plain one's last steps
    assert [(name, t) for name, t, _ in guided] == plain_experts[2 * 2:]


def test_stopping_mid_guidance_interrupts(tiny_models_dir):
    with backend_for("tiny-random", tiny_models_dir) as backend:
        seen = []
        with pytest.raises(Interrupted, match="after step 1"):
            backend.generate(request(), on_step=lambda d, n: seen.append((d, n)),
                             should_stop=lambda: bool(seen))
        assert seen == [(1, STEPS - 2)]  # progress counts the steps that run
        frames = backend.generate(request())  # the scheduler is the class's own again
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
        assert "set_timesteps" not in vars(backend.pipe.scheduler)


def test_latent_mask_is_covered_only_where_every_pixel_is():
    cover = np.ones((9, 16, 16), np.float32)
    cover[5, 0, 0] = 0.5  # one pixel of latent frame 2, cell (0, 0)
    cover[0, 15, 15] = 0.0  # frame 0 is latent frame 0 alone
    mask = latent_mask(cover, 4, 8, "cpu")
    assert mask.shape == (1, 1, 3, 2, 2)
    assert mask[0, 0, 2, 0, 0] == 0 and mask[0, 0, 0, 1, 1] == 0
    assert mask.sum() == 12 - 2


def test_a_path_of_the_wrong_shape_is_refused(tiny_models_dir):
    video, cover = path()
    with backend_for("tiny-random", tiny_models_dir) as backend:
        with pytest.raises(WanError, match="camera path must be 9 frames of 32x32"):
            backend.generate(request(path_guide=PathGuide(video[:5], cover[:5], 0.1, 0.2)))
        with pytest.raises(WanError, match="free <= lock"):
            backend.generate(request(path_guide=PathGuide(video, cover, 0.3, 0.2)))
