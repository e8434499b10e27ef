"""LoRAs per expert of a two-expert model (Wan 2.2 A14B): a LoRA in ComfyUI's format (Wan's
original names under ``diffusion_model.``, lora_down/lora_up/alpha) goes into the high-noise
expert, the low-noise one, or both, and the other expert is left bit-identical."""
from __future__ import annotations

import pytest

from deforum_wan.backends.base import BackendOptions
from deforum_wan.backends.chain import load_backend
from deforum_wan.models.registry import get_model

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def comfy_lora(tiny_models_dir, tmp_path_factory):
    """Rank-2 LoRA on the self-attention of block 0, random down and up, alpha 2."""
    import torch
    from safetensors.torch import save_file

    from deforum_wan.models.headers import read_header

    header = read_header(tiny_models_dir / "tiny-random-a14b" / "transformer" / "diffusion_pytorch_model.safetensors")
    dim = header.shape("blocks.0.attn1.to_q.weight")[0]
    generator = torch.Generator().manual_seed(7)
    state = {}
    for part in ("q", "k", "v", "o"):
        name = f"diffusion_model.blocks.0.self_attn.{part}"
        state[f"{name}.lora_down.weight"] = torch.randn(2, dim, generator=generator)
        state[f"{name}.lora_up.weight"] = torch.randn(dim, 2, generator=generator)
        state[f"{name}.alpha"] = torch.tensor(2.0)
    path = tmp_path_factory.mktemp("loras") / "comfy_style_lora.safetensors"
    save_file(state, path)
    return path


def _experts(models_dir, loras):
    backend, _ = load_backend(get_model("tiny-random-a14b"), "diffusers",
                              BackendOptions(models_dir=str(models_dir), device="cpu", loras=loras))
    try:
        return {part: {k: v.clone() for k, v in getattr(backend.pipe, part).state_dict().items()}
                for part in ("transformer", "transformer_2")}, backend.notes
    finally:
        backend.close()


def _lora_keys(state: dict) -> set:
    return {k for k in state if "lora_" in k}


@pytest.mark.parametrize("expert, into", [("high", {"transformer"}), ("low", {"transformer_2"}),
                                          ("both", {"transformer", "transformer_2"})])
def test_a_lora_goes_into_its_expert_only(tiny_models_dir, comfy_lora, expert, into):
    import torch

    plain, _ = _experts(tiny_models_dir, [])
    loaded, _ = _experts(tiny_models_dir, [(str(comfy_lora), 0.8, expert)])
    for part in ("transformer", "transformer_2"):
        added = _lora_keys(loaded[part])
        if part in into:
            # the four projections got their LoRA, with the file's non-zero weights
            assert len(added) == 8 and all(loaded[part][k].abs().sum() > 0 for k in added), part
        else:  # untouched: the same tensors, bit for bit, and nothing added
            assert not added and loaded[part].keys() == plain[part].keys(), part
            assert all(torch.equal(loaded[part][k], plain[part][k]) for k in plain[part]), part


def test_one_expert_lora_on_a_one_transformer_model_goes_there(tiny_models_dir, comfy_lora):
    backend, _ = load_backend(get_model("tiny-random"), "diffusers",
                              BackendOptions(models_dir=str(tiny_models_dir), device="cpu",
                                             loras=[(str(comfy_lora), 1.0, "low")]))
    try:
        assert _lora_keys(backend.pipe.transformer.state_dict())
        assert any("one transformer" in note for note in backend.notes)
    finally:
        backend.close()
