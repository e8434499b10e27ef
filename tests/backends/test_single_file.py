"""Single weight files on the CPU: the tiny models written as ComfyUI-style files (original key
layout, bf16 and scaled fp8) in a ComfyUI-layout folder, rendered like the diffusers folder."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import to_original_name

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.backends.single_file import load_transformer
from deforum_wan.errors import WanError
from deforum_wan.models.detect import detect
from deforum_wan.models.file_models import resolve_model
from deforum_wan.models.places import EXTRA_DIRS_ENV
from deforum_wan.models.registry import get_model
from deforum_wan.models.st_header import read_header
from deforum_wan.models.wan_files import fp8_state

FP8_TOLERANCE = 0.05  # mean absolute difference of the frames (0..1) against the folder's render


def _request(seed=3):
    return GenerateRequest(mode="t2v", prompt="a red fox in the snow", negative_prompt="blurry", num_frames=5,
                           width=32, height=32, seed=seed, guidance_scale=5.0, steps=2)


def _fp8_scaled(state: dict) -> dict:
    """ComfyUI's scaled fp8: each matrix as fp8 e4m3fn over a per-tensor scale, the rest bf16."""
    import torch

    out = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for name, tensor in state.items():
        if name.endswith(".weight") and tensor.dim() == 2:
            scale = tensor.abs().max().float() / 448.0
            out[name] = (tensor.float() / scale).to(torch.float8_e4m3fn)
            out[name[:-len(".weight")] + ".scale_weight"] = scale.reshape(())
        else:
            out[name] = tensor.to(torch.bfloat16)
    return out


@pytest.fixture(scope="module")
def comfy(tiny_models_dir, tmp_path_factory):
    """ComfyUI/models with the tiny T2V transformer (bf16 and scaled fp8, original names with
    ComfyUI's prefix), its UMT5 encoder (bf16) and its VAE (fp32), as single files."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    folder = tiny_models_dir / "tiny-random"
    root = tmp_path_factory.mktemp("ComfyUI") / "models"
    for sub in ("diffusion_models", "text_encoders", "vae"):
        (root / sub).mkdir(parents=True)
    transformer = WanTransformer3DModel.from_pretrained(folder / "transformer").state_dict()
    original = {"model.diffusion_model." + to_original_name(k): v.to(torch.bfloat16) for k, v in transformer.items()}
    save_file(original, root / "diffusion_models" / "wan_tiny_bf16.safetensors")
    scaled = _fp8_scaled(original)
    save_file(scaled, root / "diffusion_models" / "wan_tiny_fp8_scaled.safetensors")
    # What loading it converted to before: each matrix fp8 times its scale in float32, then bf16.
    save_file({k: (v.float() * scaled[k[:-len(".weight")] + ".scale_weight"]).to(torch.bfloat16)
               if k[:-len(".weight")] + ".scale_weight" in scaled else v.to(torch.bfloat16)
               for k, v in scaled.items() if not k.endswith(".scale_weight") and k != "scaled_fp8"},
              root / "diffusion_models" / "wan_tiny_fp8_scaled_as_bf16.safetensors")
    fp8 = fp8_state(original)
    save_file(fp8, root / "diffusion_models" / "wan_tiny_fp8.safetensors")
    # What loading it converted to before: the same fp8 values upcast (exactly) to bf16.
    save_file({k: v.to(torch.bfloat16) for k, v in fp8.items()},
              root / "diffusion_models" / "wan_tiny_fp8_as_bf16.safetensors")
    text = UMT5EncoderModel.from_pretrained(folder / "text_encoder").state_dict()
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in text.items() if k != "encoder.embed_tokens.weight"},
              root / "text_encoders" / "umt5_tiny_bf16.safetensors")
    vae = AutoencoderKLWan.from_pretrained(folder / "vae").state_dict()
    save_file({k: v.contiguous() for k, v in vae.items()}, root / "vae" / "wan_tiny_vae.safetensors")
    # The same weights as a diffusers folder: the tiny model with its transformer and encoder in bf16.
    same = root.parent / "tiny-random-bf16"
    shutil.copytree(folder, same)
    for part, cls in (("transformer", WanTransformer3DModel), ("text_encoder", UMT5EncoderModel)):
        cls.from_pretrained(folder / part).to(torch.bfloat16).save_pretrained(same / part)
    return root


@pytest.fixture
def extra(comfy, monkeypatch):
    monkeypatch.setenv(EXTRA_DIRS_ENV, str(comfy))
    return comfy


def _render(spec, tiny_models_dir):
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu")
    backend, report = load_backend(spec, "diffusers", options)
    try:
        return backend.generate(_request()), backend, report
    finally:
        backend.close()


def test_bf16_file_renders_bit_identical_to_the_folder_and_fp8_within_tolerance(tiny_models_dir, extra,
                                                                                 monkeypatch):
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    folder, _, _ = _render(resolve_model(str(extra.parent / "tiny-random-bf16")), tiny_models_dir)
    assert not np.array_equal(folder, _render(get_model("tiny-random"), tiny_models_dir)[0])  # fp32 weights differ
    spec = resolve_model("wan_tiny_bf16.safetensors")
    assert spec.kind == "t2v" and spec.weights == str(extra / "diffusion_models" / "wan_tiny_bf16.safetensors")
    single, _, report = _render(spec, tiny_models_dir)
    assert np.array_equal(single, folder)
    assert any(str(extra) in line for _, line in report)  # its weights: the file
    fp8, _, _ = _render(resolve_model("wan_tiny_fp8_scaled.safetensors"), tiny_models_dir)
    difference = float(np.abs(fp8 - folder).mean())
    assert 0 < difference < FP8_TOLERANCE


FP8_STORAGE_TOLERANCE = 0.02  # mean absolute frame difference: float8 storage against the same values in bf16


def test_an_fp8_file_stays_float8_in_memory_and_renders_like_its_bf16_upcast(tiny_models_dir, extra, monkeypatch):
    import torch

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    converted, _, _ = _render(resolve_model("wan_tiny_fp8_as_bf16.safetensors"), tiny_models_dir)
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu")
    backend, report = load_backend(resolve_model("wan_tiny_fp8.safetensors"), "diffusers", options)
    try:
        linears = [m for name, m in backend.pipe.transformer.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.startswith("blocks.")]
        assert linears and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
        frames = backend.generate(_request())
        assert all(m.weight.dtype == torch.float8_e4m3fn for m in linears)  # stored again after each layer
    finally:
        backend.close()
    difference = float(np.abs(frames - converted).mean())
    assert 0 < difference < FP8_STORAGE_TOLERANCE, difference
    assert any("kept in float8" in line for _, line in report)


def test_float8_storage_asked_for_on_an_fp8_file_keeps_its_layers(tiny_models_dir, extra, monkeypatch):
    import torch

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu", layerwise_fp8=True)
    backend, report = load_backend(resolve_model("wan_tiny_fp8.safetensors"), "diffusers", options)
    try:
        frames = backend.generate(_request())
        weights = {m.weight.dtype for name, m in backend.pipe.transformer.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.startswith("blocks.")}
    finally:
        backend.close()
    # its hooks are not added a second time (that fails, and would leave a note saying so)
    assert np.isfinite(frames).all() and not any("failed" in line for _, line in report)
    assert weights == {torch.float8_e4m3fn}


def test_a_lora_on_an_fp8_file_dequantises_it_and_says_so(tiny_models_dir, extra, tiny_lora, monkeypatch):
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    spec = resolve_model("wan_tiny_fp8.safetensors")
    frames, reports = {}, {}
    for weight in (0.0, 1.0):
        options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu",
                                 loras=[(str(tiny_lora), weight, "both")])
        backend, reports[weight] = load_backend(spec, "diffusers", options)
        try:
            frames[weight] = backend.generate(_request())
        finally:
            backend.close()
    assert np.isfinite(frames[1.0]).all() and not np.array_equal(frames[0.0], frames[1.0])
    # at weight 0 it renders as the same values in bf16 did before float8 storage
    converted, _, _ = _render(resolve_model("wan_tiny_fp8_as_bf16.safetensors"), tiny_models_dir)
    assert np.array_equal(frames[0.0], converted)
    assert any("dequantised to bfloat16 (LoRAs" in line for _, line in reports[1.0])


SCALED_TOLERANCE = 0.01  # mean absolute frame difference: scales applied per layer against dequantised on load


def test_a_scaled_fp8_file_stays_float8_and_renders_like_its_dequantised_weights(tiny_models_dir, extra,
                                                                                  monkeypatch):
    import torch

    from deforum_wan.backends.scaled_fp8 import ScaledFp8Linear

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    upcast, _, _ = _render(resolve_model("wan_tiny_fp8_scaled_as_bf16.safetensors"), tiny_models_dir)
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu")
    backend, report = load_backend(resolve_model("wan_tiny_fp8_scaled.safetensors"), "diffusers", options)
    try:
        linears = [m for name, m in backend.pipe.transformer.named_modules()
                   if isinstance(m, torch.nn.Linear) and name.startswith("blocks.")]
        assert linears and all(m.weight.dtype == torch.float8_e4m3fn for m in linears)
        assert all(isinstance(m, ScaledFp8Linear) and m.weight_scale != 1.0 for m in linears)
        frames = backend.generate(_request())
        assert all(m.weight.dtype == torch.float8_e4m3fn for m in linears)  # stored again after each layer
    finally:
        backend.close()
    difference = float(np.abs(frames - upcast).mean())
    assert difference < SCALED_TOLERANCE, difference
    assert any("fp8 e4m3fn scaled weights kept in float8 (times its per-tensor scales)" in line for _, line in report)
    # each part's format, size from its header and place, in the load report
    assert any(line.startswith("transformer: safetensors file fp8 e4m3fn scaled from ") and
               "float8 matrices, computed in bf16" in line and line.endswith("in memory, on CPU") for _, line in report)
    assert any(line.startswith("vae: safetensors file fp32 from ") for _, line in report)


def test_a_scaled_fp8_layer_computes_its_weight_times_its_scale(tiny_models_dir, extra):
    """Without its scale a layer's output would be off by the scale (about 1/448 of the weights)."""
    import torch

    path = extra / "diffusion_models" / "wan_tiny_fp8_scaled.safetensors"
    kept = load_transformer(path, detect(read_header(path)), torch.bfloat16, tiny_models_dir / "tiny-random")
    path = extra / "diffusion_models" / "wan_tiny_fp8_scaled_as_bf16.safetensors"
    upcast = load_transformer(path, detect(read_header(path)), torch.bfloat16, tiny_models_dir / "tiny-random")
    layer, reference = kept.blocks[0].attn1.to_q, upcast.blocks[0].attn1.to_q
    assert layer.weight.dtype == torch.float8_e4m3fn and reference.weight.dtype == torch.bfloat16
    # the weight it computes with is the dequantised one, to the bit
    assert torch.equal(layer.weight.to(torch.bfloat16) * layer.weight_scale, reference.weight)
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.no_grad():
        out, expected = layer(x).float(), reference(x).float()
    # the bias is rounded to float8 in a float8 layer (diffusers' layerwise casting does so): close, not equal
    assert torch.allclose(out, expected, atol=0.05, rtol=0.05)
    assert layer.weight.dtype == torch.float8_e4m3fn  # stored again after its forward


def test_parts_come_from_the_files_beside_it(tiny_models_dir, extra):
    import torch

    from deforum_wan.backends.single_file import load_file_pipeline

    spec = resolve_model("wan_tiny_bf16.safetensors", models_dir=tiny_models_dir)
    pipe = load_file_pipeline(spec, "WanPipeline", {"default": torch.bfloat16, "vae": torch.float32},
                              tiny_models_dir)
    assert pipe.text_encoder.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32
    from transformers import UMT5EncoderModel

    folder_text = UMT5EncoderModel.from_pretrained(tiny_models_dir / "tiny-random" / "text_encoder")
    for name, tensor in folder_text.state_dict().items():
        assert torch.equal(pipe.text_encoder.state_dict()[name], tensor.to(torch.bfloat16)), name


def test_a_merge_loads_as_the_average(tiny_models_dir, tmp_path):
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file

    a = WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random-a14b" / "transformer").state_dict()
    b = WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random-a14b" / "transformer_2").state_dict()
    merged = {to_original_name(k): (a[k] + b[k]) / 2 for k in a}
    path = save_file(merged, tmp_path / "merge.safetensors") or tmp_path / "merge.safetensors"
    found = detect(read_header(path))
    assert (found.kind, found.variant, found.layout) == ("transformer", "t2v", "original")
    model = load_transformer(path, found, torch.float32, tiny_models_dir / "tiny-random")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, (a[name] + b[name]) / 2), name


def test_wrong_kind_and_missing_parts_are_one_line(tiny_models_dir, extra, tmp_path, monkeypatch):
    with pytest.raises(WanError, match="not a Wan transformer") as err:
        resolve_model("wan_tiny_vae.safetensors")
    assert "\n" not in str(err.value)
    # a transformer alone in a folder, no components anywhere: every missing part named
    alone = tmp_path / "alone"
    (alone / "diffusion_models").mkdir(parents=True)
    (alone / "diffusion_models" / "t.safetensors").write_bytes(
        (extra / "diffusion_models" / "wan_tiny_bf16.safetensors").read_bytes())
    import dataclasses

    monkeypatch.delenv(EXTRA_DIRS_ENV)
    spec = dataclasses.replace(resolve_model("t.safetensors", models_dir=alone), components=str(tmp_path / "none"))
    (tmp_path / "none").mkdir()
    with pytest.raises(WanError) as err:
        load_backend(spec, "diffusers", BackendOptions(models_dir=str(alone), dtype="float32", device="cpu"))
    assert "text_encoder" in str(err.value) and "vae" in str(err.value) and "download t.safetensors" in str(err.value)


def test_settings_take_a_file_name_as_wan_model(extra):
    from helpers import QUICK, settings

    from deforum_wan.config.settings import load_settings

    loaded = load_settings(settings({**QUICK, "wan_model": "wan_tiny_bf16.safetensors",
                                     "wan_components": "tiny-random"}))
    assert loaded.model.weights.endswith("wan_tiny_bf16.safetensors") and loaded.components == "tiny-random"
    assert get_model(loaded.model.id) is loaded.model  # the renderer finds it again by its id
    with pytest.raises(WanError, match="not in the model folders"):
        load_settings(settings({**QUICK, "wan_model": "WAN_TINY_BF16.safetensors"}))  # names keep their case


def test_models_lists_every_file_with_its_kind_or_why_not(comfy, tmp_path, capsys, monkeypatch):
    from deforum_wan.cli.main import main

    folder = tmp_path / "ComfyUI" / "models"
    shutil.copytree(comfy, folder)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((comfy / "vae" / "wan_tiny_vae.safetensors").read_bytes())
    (folder / "vae" / "link_out.safetensors").symlink_to(outside)
    (folder / "vae" / "truncated.safetensors").write_bytes((comfy / "vae" / "wan_tiny_vae.safetensors").read_bytes()[:100])
    monkeypatch.delenv(EXTRA_DIRS_ENV, raising=False)
    assert main(["models", "--models-dir", str(tmp_path / "empty"), "--extra-models-dir", str(folder)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  /")}
    by_name = {k.rsplit("/", 1)[-1]: v for k, v in lines.items()}
    assert "Wan transformer T2V unknown size (dim 16, 1 layer)" in by_name["wan_tiny_fp8_scaled.safetensors"]
    assert "fp8 e4m3fn scaled" in by_name["wan_tiny_fp8_scaled.safetensors"]
    assert "bf16" in by_name["wan_tiny_bf16.safetensors"] and "original layout" in by_name["wan_tiny_bf16.safetensors"]
    assert "text encoder UMT5" in by_name["umt5_tiny_bf16.safetensors"]
    assert "VAE" in by_name["wan_tiny_vae.safetensors"]
    assert "unusable" in by_name["link_out.safetensors"] and "links out of" in by_name["link_out.safetensors"]
    assert "unusable" in by_name["truncated.safetensors"]


def _held(module) -> int:
    """Bytes of a module's parameters, a storage two of them share (tied embeddings) once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in module.parameters()}
    return sum(storages.values())


@pytest.mark.parametrize("name", ["wan_tiny_bf16", "wan_tiny_fp8", "wan_tiny_fp8_scaled"])
def test_the_header_sizes_are_the_bytes_each_part_holds_once_loaded(tiny_models_dir, extra, monkeypatch, name):
    """model_parts reads headers only; what it says each part takes is what the loaded part holds."""
    import torch

    from deforum_wan.backends.single_file import load_file_pipeline
    from deforum_wan.models.footprint import model_parts

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    spec = resolve_model(f"{name}.safetensors", models_dir=tiny_models_dir)
    parts = {p.part: p for p in model_parts(spec, tiny_models_dir, dtype="bfloat16", place="GPU")}
    assert set(parts) == {"transformer", "text_encoder", "vae"}
    assert parts["transformer"].source == spec.weights and parts["vae"].format == "safetensors file"
    assert parts["vae"].source.endswith("wan_tiny_vae.safetensors") and parts["text_encoder"].quant == "bf16"
    pipe = load_file_pipeline(spec, "WanPipeline", {"default": torch.bfloat16, "vae": torch.float32}, tiny_models_dir)
    for part in ("transformer", "text_encoder", "vae"):
        assert parts[part].bytes == _held(getattr(pipe, part)), part
    float8 = sum(t.numel() for t in pipe.transformer.parameters() if t.dtype == torch.float8_e4m3fn)
    assert (float8 > 0) == ("fp8" in name) and ("float8" in parts["transformer"].held) == ("fp8" in name)


@pytest.mark.parametrize("float8", [False, True])
def test_a_folders_header_sizes_are_what_it_holds_loaded_with_or_without_float8_storage(tiny_models_dir, float8):
    from deforum_wan.models.footprint import model_parts

    spec = get_model("tiny-random")
    parts = {p.part: p for p in model_parts(spec, tiny_models_dir, dtype="bfloat16", float8=float8, place="CPU")}
    assert set(parts) == {"transformer", "text_encoder", "vae"} and parts["vae"].format == "diffusers folder"
    assert parts["transformer"].quant == "fp32" and parts["transformer"].place == "CPU"
    options = BackendOptions(models_dir=str(tiny_models_dir), dtype="bfloat16", device="cpu", layerwise_fp8=float8)
    backend, _ = load_backend(spec, "diffusers", options)
    try:
        for part in ("transformer", "text_encoder", "vae"):
            assert parts[part].bytes == _held(getattr(backend.pipe, part)), part
    finally:
        backend.close()


def test_plan_says_each_parts_format_size_and_place(tiny_models_dir, extra, tmp_path, capsys, monkeypatch):
    import json

    from helpers import QUICK, settings

    from deforum_wan.cli.main import main

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    path = tmp_path / "s.json"
    path.write_text(json.dumps(settings({**QUICK, "wan_model": "wan_tiny_fp8_scaled.safetensors"})))
    assert main(["plan", str(path), "--json", "--set", "wan_dtype=bfloat16"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]["wan_tiny_fp8_scaled.safetensors"]
    parts = {p["part"]: p for p in memory}
    assert parts["transformer"]["quant"] == "fp8 e4m3fn scaled" and parts["transformer"]["format"] == "safetensors file"
    assert parts["vae"]["source"].endswith("wan_tiny_vae.safetensors") and parts["vae"]["held"] == "fp32"
    header = read_header(extra / "diffusion_models" / "wan_tiny_fp8_scaled.safetensors")
    # smaller than the file (its float8 matrices stay float8; scales are plain numbers), never zero
    assert 0 < parts["transformer"]["bytes"] < header.size
    assert all(p["place"].startswith("GPU") for p in memory)
    assert main(["plan", str(path), "--set", "wan_preset=low-vram"]) == 0
    text = capsys.readouterr().out
    assert "memory of wan_tiny_fp8_scaled.safetensors" in text and "(group offload)" in text
    assert "transformer: safetensors file fp8 e4m3fn scaled" in text
