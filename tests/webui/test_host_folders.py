"""Forge Neo's own model folders: in Neo (told by its version or its flags), models/Stable-diffusion,
models/text_encoder and models/VAE and their flags' folders become extra model folders, so a Wan
single file there is listed by the tab and renders with its text encoder and VAE from Neo's
folders; the SD, SDXL and Flux files beside them are left out without a word."""
from __future__ import annotations

import os
import shutil
import types

import numpy as np
import pytest
from helpers import to_original_name, write_gguf_header, write_safetensors_header

from deforum_wan.models.file_models import resolve_model
from deforum_wan.models.footprint import model_parts
from deforum_wan.models.places import EXTRA_DIRS_ENV
from deforum_wan.webui.fields import FIELDS, model_choices, model_id
from deforum_wan.webui.host_folders import add_extra_dirs, is_neo, neo_dirs
from deforum_wan.webui.tab_handlers import WanTab

T2V = "Wan2.1_T2V_tiny_bf16.safetensors"  # capitals: the name is kept as it is spelled
HIGH, LOW = "wan2.2_t2v_tiny_high_noise_bf16.safetensors", "wan2.2_t2v_tiny_low_noise_bf16.safetensors"
I2V = "wan2.1_i2v_tiny_bf16.safetensors"
# Other models' files as Neo keeps them beside Wan's (headers only: names and shapes are what is read).
OTHERS = {
    "Stable-diffusion/sd15_pruned.safetensors": {
        "model.diffusion_model.input_blocks.0.0.weight": ("F16", (320, 4, 3, 3)),
        "first_stage_model.decoder.conv_in.weight": ("F16", (512, 4, 3, 3))},
    "Stable-diffusion/flux1-dev-fp8.safetensors": {
        "model.diffusion_model.double_blocks.0.img_attn.qkv.weight": ("F8_E4M3", (9216, 3072))},
    "text_encoder/clip_l.safetensors": {"text_model.embeddings.token_embedding.weight": ("F16", (49408, 768))},
    # An SD VAE with the tiny Wan VAE's 4 latent channels, sorted before it: 2D, so not Wan's.
    "VAE/sdxl_vae.safetensors": {"decoder.conv_in.weight": ("F16", (512, 4, 3, 3)),
                                 "post_quant_conv.weight": ("F16", (4, 4, 1, 1))},
}


def _original(model) -> dict:
    import torch

    return {"model.diffusion_model." + to_original_name(k): v.to(torch.bfloat16).contiguous()
            for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def neo(tiny_models_dir, tmp_path_factory):
    """A Neo tree: the tiny Wan files in its models folders and a --ckpt-dirs folder, other
    models' files beside them; and the tiny T2V model in bf16 as a folder, to render against."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    root = tmp_path_factory.mktemp("neo")
    models, more = root / "models", root / "more-checkpoints"
    for folder in (models / "Stable-diffusion", models / "text_encoder", models / "VAE", more):
        folder.mkdir(parents=True)
    tiny = tiny_models_dir / "tiny-random"
    save_file(_original(WanTransformer3DModel.from_pretrained(tiny / "transformer")),
              models / "Stable-diffusion" / T2V)
    for name, part in ((HIGH, "transformer"), (LOW, "transformer_2")):
        save_file(_original(WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random-a14b" / part)),
                  models / "Stable-diffusion" / name)
    save_file(_original(WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random-i2v" / "transformer")),
              more / I2V)
    text = UMT5EncoderModel.from_pretrained(tiny / "text_encoder").state_dict()
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in text.items() if k != "encoder.embed_tokens.weight"},
              models / "text_encoder" / "umt5_tiny_bf16.safetensors")
    vae = AutoencoderKLWan.from_pretrained(tiny / "vae").state_dict()
    save_file({k: v.contiguous() for k, v in vae.items()}, models / "VAE" / "wan_2.1_vae_tiny.safetensors")
    for name, tensors in OTHERS.items():
        write_safetensors_header(models / name, tensors)
    # Flux's T5 as a GGUF, as wide as the tiny UMT5 and sorted before it: T5 (no bias past block 0), not UMT5.
    write_gguf_header(models / "text_encoder" / "t5-v1_1-xxl-encoder-Q8_0.gguf",
                      {"token_embd.weight": (1, (32128, 16)), "enc.blk.0.attn_q.weight": (1, (16, 16)),
                       "enc.blk.0.attn_rel_b.weight": (0, (32, 2)), "enc.blk.1.attn_q.weight": (1, (16, 16))})
    same = root / "tiny-random-bf16"
    shutil.copytree(tiny, same)
    for part, cls in (("transformer", WanTransformer3DModel), ("text_encoder", UMT5EncoderModel)):
        cls.from_pretrained(tiny / part).to(torch.bfloat16).save_pretrained(same / part)
    return root


@pytest.fixture
def in_neo(neo, monkeypatch):
    """What the extension does when it loads in Neo started with --ckpt-dirs more-checkpoints."""
    monkeypatch.setenv(EXTRA_DIRS_ENV, "")
    opts = types.SimpleNamespace(ckpt_dirs=[str(neo / "more-checkpoints")], text_encoder_dirs=[], vae_dirs=[])
    add_extra_dirs(neo_dirs(neo / "models", opts))
    return neo


def test_neo_is_told_by_its_version_or_its_own_flag():
    a1111 = types.SimpleNamespace(ckpt_dir=None, vae_dir=None)
    assert not is_neo(a1111, None)
    assert not is_neo(a1111, "2.0.1v1.10.1")  # Forge
    assert is_neo(a1111, "neo")
    assert is_neo(types.SimpleNamespace(ckpt_dirs=[], text_encoder_dirs=[], vae_dirs=[]), None)


def test_neos_folders_and_flags_join_the_users_extra_folders_once(tmp_path):
    opts = types.SimpleNamespace(ckpt_dirs=[str(tmp_path / "c")], text_encoder_dirs=[str(tmp_path / "t")],
                                 vae_dirs=[str(tmp_path / "models" / "VAE")])
    models = tmp_path / "models"
    dirs = neo_dirs(models, opts)
    assert dirs == [models / "Stable-diffusion", tmp_path / "c", models / "text_encoder", tmp_path / "t",
                    models / "VAE"]
    env = {EXTRA_DIRS_ENV: str(tmp_path / "mine")}
    assert add_extra_dirs(dirs, env) == dirs
    assert env[EXTRA_DIRS_ENV].split(os.pathsep) == [str(tmp_path / "mine"), *map(str, dirs)]
    assert add_extra_dirs(dirs, env) == []  # a UI reload loads the extension again
    assert env[EXTRA_DIRS_ENV].split(os.pathsep) == [str(tmp_path / "mine"), *map(str, dirs)]


def test_the_tab_lists_neos_wan_files_and_nothing_else(in_neo, tiny_models_dir, tmp_path):
    tab = WanTab(types.SimpleNamespace(outdir=tmp_path / "out", models_dir=str(tiny_models_dir)))
    files = [c for c in model_choices(tab.installed, tab.files) if "[file: " in c]
    assert sorted(model_id(c) for c in files) == sorted([T2V, HIGH, I2V])
    pair = next(c for c in files if c.startswith(HIGH))
    assert f"two experts, low noise: {LOW}" in pair
    assert "T2V" in next(c for c in files if c.startswith(T2V + " "))
    assert not any(name.split("/")[-1] in " ".join(files) for name in OTHERS)
    # the listed file as the dropdown hands it back: planned, with its parts from Neo's folders
    values = tab.field_values({"W": 32, "H": 32, "max_frames": 5, "steps": 2, "animation_mode": "None",
                               "prompts": {"0": "a fox"}, "wan_model": T2V})
    label = values[FIELDS.index("model")]
    assert label in files and model_id(label) == T2V
    # Download on it: the parts it lacks, read from its header (the tiny ones are built, none)
    assert tab.downloads.start(model_id(label)) == f"{T2V}: its components are on disk (or given by" \
        " wan_components); nothing to fetch"
    status = tab.plan(*values, None, [])[2]
    assert status.startswith("plan: 1 window"), status
    sources = {p.part: p.source for p in model_parts(resolve_model(T2V, models_dir=tiny_models_dir), tiny_models_dir)}
    assert sources["transformer"] == str(in_neo / "models" / "Stable-diffusion" / T2V)
    assert sources["text_encoder"] == str(in_neo / "models" / "text_encoder" / "umt5_tiny_bf16.safetensors")
    assert sources["vae"] == str(in_neo / "models" / "VAE" / "wan_2.1_vae_tiny.safetensors")


def test_outside_neo_its_folders_are_not_searched(neo, tiny_models_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(EXTRA_DIRS_ENV, raising=False)
    tab = WanTab(types.SimpleNamespace(outdir=tmp_path / "out", models_dir=str(tiny_models_dir)))
    assert tab.files == {}


@pytest.mark.slow
def test_a_wan_file_in_neos_checkpoint_folder_renders_like_the_same_weights_in_a_folder(in_neo, tiny_models_dir):
    from deforum_wan.backends.base import BackendOptions, GenerateRequest
    from deforum_wan.backends.chain import load_backend

    request = GenerateRequest(mode="t2v", prompt="a red fox in the snow", negative_prompt="blurry", num_frames=5,
                              width=32, height=32, seed=3, guidance_scale=5.0, steps=2)
    frames = []
    for spec in (resolve_model(T2V, models_dir=tiny_models_dir), resolve_model(str(in_neo / "tiny-random-bf16"))):
        backend, _ = load_backend(spec, "diffusers", BackendOptions(models_dir=str(tiny_models_dir),
                                                                    dtype="bfloat16", device="cpu"))
        try:
            frames.append(backend.generate(request))
        finally:
            backend.close()
    assert np.array_equal(frames[0], frames[1])


def test_models_puts_other_models_files_in_one_line(in_neo, tiny_models_dir, capsys):
    from deforum_wan.cli.main import main

    assert main(["models", "--models-dir", str(tiny_models_dir)]) == 0
    out = capsys.readouterr().out
    assert f"  {in_neo / 'models' / 'Stable-diffusion' / T2V}  " in out and "unusable" not in out
    others = [line for line in out.splitlines() if "other models' files" in line]
    assert len(others) == 1 and others[0].startswith("  other models' files, not Wan (5): "), others
    assert sorted(others[0].split(": ", 1)[1].split(", ")) == sorted(
        [name.split("/")[-1] for name in OTHERS] + ["t5-v1_1-xxl-encoder-Q8_0.gguf"])
