"""SVI 2.0 Pro's conditioning (svi.py, ``latent`` padding) on the tiny Wan2.2 I2V-A14B pipeline,
element by element against what SVI's own code builds (tests/fixtures/svi/make_pro_fixture.py)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT

from deforum_wan.backends.svi import SviInput, condition, conditioned

REF = np.load(ROOT / "tests" / "fixtures" / "svi" / "svi_pro_conditioning.npz")
FRAMES = 9
H, W = REF["anchor"].shape[:2]


@pytest.fixture(scope="module")
def a14b_i2v(tiny_models_dir):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline.from_pretrained(str(tiny_models_dir / "tiny-random-a14b-i2v"))


def _own_latent(pipe, pixels: np.ndarray) -> np.ndarray:
    """The tiny VAE's normalised latent of ``pixels`` (3, F, H, W), computed here directly."""
    import torch

    with torch.no_grad():
        dist = pipe.vae.encode(torch.from_numpy(pixels)[None]).latent_dist
    mean = np.asarray(pipe.vae.config.latents_mean, np.float32).reshape(1, -1, 1, 1, 1)
    std = np.asarray(pipe.vae.config.latents_std, np.float32).reshape(1, -1, 1, 1, 1)
    return (dist.mode().numpy() - mean) / std


@pytest.mark.parametrize("name,anchor,previous", [("first", "frame", None), ("next", "anchor", "previous_latents")])
def test_the_condition_is_svi_pros_element_by_element(a14b_i2v, name, anchor, previous):
    """SVI's first window anchors on its own image; a continuation on the shot's anchor, then
    the previous window's last latent; zero latents after; the mask marks the first frame."""
    import torch

    seen = []
    own_encode = a14b_i2v.vae.encode

    def record(x, *a, **k):  # the VAE runs for real; its input is kept for the comparison
        seen.append(x.detach().clone())
        return own_encode(x, *a, **k)

    a14b_i2v.vae.encode = record
    try:
        svi = SviInput(REF["frame"][None] / 255.0, REF[anchor] / 255.0, "latent",
                       REF[previous] if previous else None)
        with torch.no_grad():  # as inside the pipeline's call
            ours = condition(a14b_i2v, svi, FRAMES, H, W, "cpu", torch.float32)[0].numpy()
    finally:
        del a14b_i2v.vae.encode
    ref = REF[f"{name}_y"]
    assert ours.shape == ref.shape
    assert len(seen) == 1  # the anchor alone is encoded: no decoded frame is encoded again
    np.testing.assert_allclose(seen[0][0].numpy(), REF[f"{name}_vae_input"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours[:4], ref[:4])  # the mask
    np.testing.assert_array_equal(ref[4:, :1], REF["anchor_latent"])  # SVI's slot of its VAE's latent
    np.testing.assert_allclose(ours[4:, :1], _own_latent(a14b_i2v, REF[f"{name}_vae_input"])[0], atol=1e-6)
    np.testing.assert_array_equal(ours[4:, 1:], ref[4:, 1:])  # the carried latent, then zeros
    if previous:
        np.testing.assert_array_equal(ours[4:, 1], REF[previous][:, -1])
        assert np.all(ours[4:, 2:] == 0)


def test_the_a14b_pipeline_is_handed_the_pro_condition(a14b_i2v):
    import torch

    rng = np.random.default_rng(6)
    svi = SviInput(rng.random((1, 32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32),
                   "latent", rng.standard_normal((4, 3, 4, 4)).astype(np.float32))
    args = (None, 1, 16, 32, 32, 9, torch.float32, "cpu")
    with conditioned(a14b_i2v, svi), torch.no_grad():
        latents, cond = a14b_i2v.prepare_latents(*args, torch.Generator().manual_seed(5))
        expected = condition(a14b_i2v, svi, 9, 32, 32, "cpu", torch.float32)
    with torch.no_grad():
        image = torch.zeros(1, 3, 32, 32)
        own_latents, own = a14b_i2v.prepare_latents(image, *args[1:], torch.Generator().manual_seed(5))
    torch.testing.assert_close(cond, expected)
    torch.testing.assert_close(latents, own_latents)
    assert not torch.allclose(cond[:, 4:], own[:, 4:])  # not Wan's own condition
    assert "prepare_latents" not in vars(a14b_i2v)
