"""Wan 2.2 A14B as two files: the tiny two-expert model's experts written as ComfyUI-style bf16
files, paired by name or by ``wan_model_low``, rendered like the same weights in a folder."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import QUICK, settings, to_original_name

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import WanError
from deforum_wan.models.file_models import partner_name, resolve_model

HIGH, LOW = "wan2.2_tiny_t2v_high_noise_bf16.safetensors", "wan2.2_tiny_t2v_low_noise_bf16.safetensors"


def _original(model) -> dict:
    import torch

    return {"model.diffusion_model." + to_original_name(k): v.to(torch.bfloat16).contiguous()
            for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def pair(tiny_models_dir, tmp_path_factory):
    """models/diffusion_models with the two experts (and odd partners), and the same weights as a
    diffusers folder in bf16 (transformers and text encoder) for the components and the reference."""
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    folder = tiny_models_dir / "tiny-random-a14b"
    root = tmp_path_factory.mktemp("pair") / "models"
    files = root / "diffusion_models"
    files.mkdir(parents=True)
    high = WanTransformer3DModel.from_pretrained(folder / "transformer")
    low = WanTransformer3DModel.from_pretrained(folder / "transformer_2")
    save_file(_original(high), files / HIGH)
    save_file(_original(low), files / LOW)
    save_file(_original(low), files / "Other-LowNoise-bf16.safetensors")  # the low one, its high absent
    i2v = WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random-i2v" / "transformer")
    save_file(_original(i2v), files / "wan2.1_tiny_i2v_bf16.safetensors")
    same = root.parent / "tiny-random-a14b-bf16"
    shutil.copytree(folder, same)
    for part in ("transformer", "transformer_2"):
        WanTransformer3DModel.from_pretrained(folder / part).to(torch.bfloat16).save_pretrained(same / part)
    UMT5EncoderModel.from_pretrained(folder / "text_encoder").to(torch.bfloat16).save_pretrained(same / "text_encoder")
    return root, same


def _render(spec, models_dir):
    options = BackendOptions(models_dir=str(models_dir), dtype="bfloat16", device="cpu")
    backend, _ = load_backend(spec, "diffusers", options)
    try:
        pipe = backend.pipe
        request = GenerateRequest(mode="t2v", prompt="a red fox in the snow", negative_prompt="blurry",
                                  num_frames=5, width=32, height=32, seed=3, guidance_scale=4.0,
                                  guidance_scale_2=3.0, steps=4)
        return backend.generate(request), pipe
    finally:
        backend.close()


def test_two_expert_files_render_bit_identical_to_the_folder(pair, monkeypatch):
    root, same = pair
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(root))
    folder, folder_pipe = _render(resolve_model(str(same)), root)
    spec = resolve_model(HIGH, components=str(same))
    assert spec.weights.endswith(HIGH) and spec.weights_2.endswith(LOW) and spec.guidance_2 is not None
    frames, pipe = _render(spec, root)
    assert pipe.transformer_2 is not None and pipe.config.boundary_ratio == folder_pipe.config.boundary_ratio
    assert np.array_equal(frames, folder)
    # the high expert alone renders differently: the second one was used
    alone = resolve_model("Other-LowNoise-bf16.safetensors", components=str(same))
    assert not alone.weights_2
    assert not np.array_equal(_render(alone, root)[0], folder)


def test_the_pair_is_found_from_either_name_or_given_by_wan_model_low(pair, monkeypatch):
    root, same = pair
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(root))
    by_low = resolve_model(LOW)
    assert (by_low.weights, by_low.weights_2) == (str(root / "diffusion_models" / HIGH),
                                                str(root / "diffusion_models" / LOW))
    loaded = load_settings(settings({**QUICK, "wan_model": HIGH, "wan_model_low": LOW, "wan_components": str(same)}))
    assert loaded.model.weights_2.endswith(LOW) and loaded.model_low == LOW
    assert partner_name("Wan2.2-I2V-A14B-HighNoise-Q5_K_M.gguf") == ("Wan2.2-I2V-A14B-LowNoise-Q5_K_M.gguf", "high")
    assert partner_name("WAN_LOW_NOISE.safetensors") == ("WAN_HIGH_NOISE.safetensors", "low")
    assert partner_name("wan2.1_t2v_14B_bf16.safetensors") is None
    registry = load_settings(settings({**QUICK, "wan_model": "tiny-random", "wan_model_low": LOW}))
    assert not registry.model.weights_2 and any("wan_model_low" in w for w in registry.warnings)


@pytest.mark.parametrize("low, reason", [
    ("wan2.1_tiny_i2v_bf16.safetensors", "variant differ"),
    (HIGH, "both experts"),
])
def test_a_mixed_pair_is_one_line(pair, monkeypatch, low, reason):
    root, _ = pair
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(root))
    with pytest.raises(WanError, match=reason) as err:
        resolve_model(HIGH, low=low)
    assert "\n" not in str(err.value)


def test_both_experts_memory_from_their_headers_is_what_they_hold(pair, monkeypatch):
    import torch

    from deforum_wan.backends.single_file import load_file_pipeline
    from deforum_wan.models.footprint import model_parts

    root, same = pair
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(root))
    spec = resolve_model(HIGH, components=str(same))
    parts = {p.part: p for p in model_parts(spec, root, dtype="bfloat16", place="CPU")}
    assert parts["transformer"].source.endswith(HIGH) and parts["transformer_2"].source.endswith(LOW)
    assert parts["text_encoder"].format == "diffusers folder" and parts["text_encoder"].source.startswith(str(same))
    pipe = load_file_pipeline(spec, "WanPipeline", {"default": torch.bfloat16, "vae": torch.float32}, root)
    for name in ("transformer", "transformer_2", "text_encoder", "vae"):
        held = sum(t.numel() * t.element_size() for t in getattr(pipe, name).parameters())
        assert parts[name].bytes == held, name
