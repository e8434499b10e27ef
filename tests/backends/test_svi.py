"""svi.py: Stable Video Infinity's conditioning against what SVI's own code builds (the fixture,
tests/fixtures/svi), and on the tiny I2V pipeline against diffusers' own conditioning."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import ROOT

from deforum_wan.backends.svi import SviInput, condition, condition_mask, condition_pixels, conditioned

REF = np.load(ROOT / "tests" / "fixtures" / "svi" / "svi_conditioning.npz")
FRAMES = REF["film_vae_input"].shape[1]


@pytest.mark.parametrize("name,motion,pad", [("film", 5, "zeros"), ("shot", 1, "anchor")])
def test_the_vae_input_and_mask_are_svis_element_by_element(name, motion, pad):
    svi = SviInput(REF["motion"][:motion] / 255.0, REF["anchor"] / 255.0, pad)
    pixels = condition_pixels(svi, FRAMES)
    np.testing.assert_allclose(pixels, REF[f"{name}_vae_input"], rtol=0, atol=1e-6)
    _, t, h, w = REF[f"{name}_mask"].shape
    np.testing.assert_array_equal(condition_mask(FRAMES, h, w), REF[f"{name}_mask"])
    # the CLIP image is the first motion frame
    np.testing.assert_allclose(pixels[:, 0], REF[f"{name}_clip_image"][0], atol=1e-6)


def test_svis_layouts_differ_where_they_should():
    film, shot = REF["film_vae_input"], REF["shot_vae_input"]
    assert np.all(film[:, 5:] == 0) and not np.allclose(film[:, 1:5], 0)  # 5 motion frames, zero padding
    np.testing.assert_allclose(shot[:, 1:], np.repeat(shot[:, -1:], FRAMES - 1, axis=1))  # the anchor after
    assert not np.allclose(shot[:, 1], film[:, 1])


@pytest.fixture(scope="module")
def i2v(tiny_models_dir):
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline.from_pretrained(str(tiny_models_dir / "tiny-random-i2v"))


def test_one_frame_and_zeros_is_diffusers_own_i2v_conditioning(i2v):
    """SVI with one motion frame and zero padding is Wan's own I2V input: the same tensor."""
    import torch

    frame = np.random.default_rng(3).random((32, 32, 3), dtype=np.float32)
    image = torch.from_numpy(frame * 2 - 1).permute(2, 0, 1)[None]
    _, own = i2v.prepare_latents(image, 1, 16, 32, 32, 9, torch.float32, "cpu", torch.Generator().manual_seed(0))
    ours = condition(i2v, SviInput(frame[None], None, "zeros"), 9, 32, 32, "cpu", torch.float32)
    assert ours.shape == own.shape
    torch.testing.assert_close(ours, own, rtol=1e-5, atol=1e-5)


def test_the_pipeline_is_handed_svis_condition_and_the_same_noise(i2v):
    import torch

    rng = np.random.default_rng(4)
    svi = SviInput(rng.random((5, 32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32),
                   "anchor")
    args = (None, 1, 16, 32, 32, 9, torch.float32, "cpu")
    with conditioned(i2v, svi):
        latents, cond = i2v.prepare_latents(*args, torch.Generator().manual_seed(5))
    expected = condition(i2v, svi, 9, 32, 32, "cpu", torch.float32)
    torch.testing.assert_close(cond, expected)
    image = torch.zeros(1, 3, 32, 32)
    own_latents, own = i2v.prepare_latents(image, *args[1:], torch.Generator().manual_seed(5))
    torch.testing.assert_close(latents, own_latents)  # the same noise as the pipeline's own
    assert not torch.allclose(cond[:, 4:], own[:, 4:])  # but not its condition
    assert "prepare_latents" not in vars(i2v)  # the pipeline's own method is back
