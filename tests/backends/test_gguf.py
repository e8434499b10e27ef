"""GGUF transformers on the CPU: a tiny Wan transformer wide enough for every block size (256),
written as ComfyUI-GGUF writes one (original key layout, F16 and Q8_0/Q4_0/Q4_K matrices, the rest
F32), rendered against the diffusers folder of the same weights."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import to_original_name, write_gguf

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.backends.single_file import load_transformer, storage_note
from deforum_wan.models.detect import detect
from deforum_wan.models.file_models import resolve_model
from deforum_wan.models.headers import read_header
from deforum_wan.models.places import EXTRA_DIRS_ENV
from deforum_wan.models.wan_files import comfy_pick as _pick

# Mean absolute difference of the frames (0..1) against the folder's fp32 render, about 10x what
# was measured on this model (F16 1.0e-5, Q8_0 7.7e-5, Q4_0 4.9e-3, Q4_K 1.1e-3).
TOLERANCE = {"F16": 1e-4, "Q8_0": 1e-3, "Q4_0": 0.05, "Q4_K": 0.01}


def _request(seed=3):
    return GenerateRequest(mode="t2v", prompt="a red fox in the snow", negative_prompt="blurry", num_frames=5,
                           width=32, height=32, seed=seed, guidance_scale=5.0, steps=2)


@pytest.fixture(scope="module")
def wide(tiny_models_dir, tmp_path_factory):
    """A diffusers folder of the tiny T2V model with a 256-wide transformer (2 heads of 128), and
    ComfyUI/models/diffusion_models holding that transformer as GGUF in each type."""
    import torch
    from diffusers import WanTransformer3DModel

    base = tmp_path_factory.mktemp("gguf")
    folder = base / "tiny-wide"
    shutil.copytree(tiny_models_dir / "tiny-random", folder)
    config = {**WanTransformer3DModel.load_config(folder / "transformer"), "num_attention_heads": 2,
              "attention_head_dim": 128, "ffn_dim": 512, "rope_max_seq_len": 1024}
    torch.manual_seed(7)
    model = WanTransformer3DModel.from_config(config)
    shutil.rmtree(folder / "transformer")
    model.save_pretrained(folder / "transformer")
    state = {to_original_name(k): v for k, v in model.state_dict().items()}
    models = base / "ComfyUI" / "models" / "diffusion_models"
    models.mkdir(parents=True)
    for qtype in TOLERANCE:
        write_gguf(models / f"wan_wide_{qtype}.gguf", state, _pick(qtype))
    return folder, models.parent


def _render(spec, models_dir):
    options = BackendOptions(models_dir=str(models_dir), dtype="float32", device="cpu")
    backend, _ = load_backend(spec, "diffusers", options)
    try:
        return backend.generate(_request()), backend
    finally:
        backend.close()


def test_each_gguf_type_renders_like_the_folder_within_its_tolerance(tiny_models_dir, wide, monkeypatch):
    folder, comfy = wide
    monkeypatch.setenv(EXTRA_DIRS_ENV, str(comfy))
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    reference, _ = _render(resolve_model(str(folder)), tiny_models_dir)
    measured = {}
    for qtype, tolerance in TOLERANCE.items():
        spec = resolve_model(f"wan_wide_{qtype}.gguf")
        assert spec.kind == "t2v" and qtype in spec.notes
        frames, _ = _render(spec, tiny_models_dir)
        measured[qtype] = float(np.abs(frames - reference).mean())
    print("mean abs difference per type:", measured)
    for qtype, tolerance in TOLERANCE.items():
        assert 0 < measured[qtype] < tolerance, (qtype, measured)
    assert measured["F16"] < measured["Q8_0"] < measured["Q4_0"]


def test_quantised_matrices_stay_quantised_in_memory(tiny_models_dir, wide):
    import torch
    from diffusers import WanTransformer3DModel

    folder, comfy = wide
    path = comfy / "diffusion_models" / "wan_wide_Q4_K.gguf"
    found = detect(read_header(path))
    model = load_transformer(path, found, torch.float32, folder)
    q = model.blocks[0].attn1.to_q.weight
    assert q.quant_type.name == "Q4_K" and q.dtype == torch.uint8
    assert q.numel() == 256 * 256 // 256 * 144  # 144 bytes per 256 weights, not 4 per weight
    assert model.patch_embedding.weight.dtype == torch.float32  # F32 in the file: a plain tensor
    # dequantised as the layer runs: the same as the folder's layer within Q4_K's error
    dense = WanTransformer3DModel.from_pretrained(folder / "transformer").blocks[0].attn1.to_q
    x = torch.randn(3, 256)
    error = (model.blocks[0].attn1.to_q(x) - dense(x)).abs().mean() / dense(x).abs().mean()
    assert 0 < error < 0.1


def test_models_lists_gguf_files_with_their_quantisation(wide, tmp_path, capsys, monkeypatch):
    import gguf

    from deforum_wan.cli.main import main

    folder, comfy = wide
    from safetensors.torch import load_file

    weights = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    state = {to_original_name(k): v for k, v in weights.items()}
    models = tmp_path / "models" / "diffusion_models"
    models.mkdir(parents=True)
    write_gguf(models / "wan_wide-Q4_K_M.gguf", state, _pick("Q4_K"), file_type=gguf.LlamaFileType.MOSTLY_Q4_K_M)
    shutil.copy(comfy / "diffusion_models" / "wan_wide_Q8_0.gguf", models)  # no general.file_type
    (models / "cut.gguf").write_bytes((models / "wan_wide_Q8_0.gguf").read_bytes()[:5000])
    monkeypatch.delenv(EXTRA_DIRS_ENV, raising=False)
    assert main(["models", "--models-dir", str(tmp_path / "empty"), "--extra-models-dir", str(tmp_path / "models")]) == 0
    lines = {line.split()[0].rsplit("/", 1)[-1]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  /")}
    assert "Wan transformer T2V" in lines["wan_wide-Q4_K_M.gguf"] and lines["wan_wide-Q4_K_M.gguf"].endswith("Q4_K_M")
    assert lines["wan_wide_Q8_0.gguf"].endswith("Q8_0")
    assert "unusable" in lines["cut.gguf"] and "truncated" in lines["cut.gguf"]


ENCODER_TOLERANCE = 5e-3  # max absolute difference of the encoder's output, F16 matrices against fp32


def _write_umt5_gguf(path, model) -> None:
    """A UMT5 encoder as llama.cpp's converter writes one (architecture t5encoder, a name saying
    umt5, the T5 keys transformers reads): matrices F16, the rest F32."""
    import gguf
    import numpy as np

    c = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, c.num_layers)
    writer = gguf.GGUFWriter(str(path), "t5encoder")
    writer.add_name("umt5-tiny-encoder")
    writer.add_context_length(512)
    writer.add_embedding_length(c.d_model)
    writer.add_feed_forward_length(c.d_ff)
    writer.add_block_count(c.num_layers)
    writer.add_head_count(c.num_heads)
    writer.add_key_length(c.d_kv)
    writer.add_value_length(c.d_kv)
    writer.add_layer_norm_eps(c.layer_norm_epsilon)
    writer.add_relative_attn_buckets_count(c.relative_attention_num_buckets)
    writer.add_decoder_start_token_id(0)
    writer.add_vocab_size(c.vocab_size)
    for name, tensor in model.state_dict().items():
        if name == "encoder.embed_tokens.weight":  # tied to shared.weight
            continue
        array = tensor.float().numpy()
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)),
                          array.astype(np.float16) if array.ndim == 2 else array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_text_encoder_loads_beside_a_transformer_file(tiny_models_dir, tmp_path, monkeypatch):
    import torch
    from diffusers import WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    from deforum_wan.backends.single_file import load_file_pipeline

    folder = tiny_models_dir / "tiny-random"
    root = tmp_path / "ComfyUI" / "models"
    for sub in ("diffusion_models", "text_encoders"):
        (root / sub).mkdir(parents=True)
    state = WanTransformer3DModel.from_pretrained(folder / "transformer").state_dict()
    save_file({to_original_name(k): v for k, v in state.items()}, root / "diffusion_models" / "wan_tiny.safetensors")
    reference = UMT5EncoderModel.from_pretrained(folder / "text_encoder")
    _write_umt5_gguf(root / "text_encoders" / "umt5-tiny-encoder-F16.gguf", reference)
    found = detect(read_header(root / "text_encoders" / "umt5-tiny-encoder-F16.gguf"))
    assert found.kind == "text_encoder" and found.layout == "llama.cpp"
    monkeypatch.setenv(EXTRA_DIRS_ENV, str(root))
    spec = resolve_model("wan_tiny.safetensors", models_dir=tiny_models_dir)
    pipe = load_file_pipeline(spec, "WanPipeline", {"default": torch.float32, "vae": torch.float32}, tiny_models_dir)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        got, want = pipe.text_encoder(ids).last_hidden_state, reference(ids).last_hidden_state
    difference = float((got - want).abs().max())
    assert 0 < difference < ENCODER_TOLERANCE, difference  # F16 matrices: close, not the same tensors


@pytest.mark.parametrize("qtype", ["F16", "Q4_K"])
def test_a_gguf_transformers_header_size_is_what_it_holds_loaded(tiny_models_dir, wide, qtype):
    """Read from the header without loading: quantised matrices at their block bytes, the rest in
    the render dtype (the float32 modules in float32)."""
    import torch

    from deforum_wan.models.footprint import model_parts

    folder, comfy = wide
    spec = resolve_model(f"wan_wide_{qtype}.gguf", str(folder), models_dir=tiny_models_dir, extra=[comfy])
    part = model_parts(spec, tiny_models_dir, [comfy], dtype="bfloat16")[0]
    assert (part.part, part.format, part.quant) == ("transformer", "GGUF file", qtype)
    model = load_transformer(Path(spec.weights), detect(read_header(spec.weights)), torch.bfloat16, folder)
    assert part.bytes == sum(t.numel() * t.element_size() for t in model.parameters())
    assert ("kept quantised" in part.held) == (qtype != "F16")
    # the load report's note agrees: diffusers reads F16 tensors as plain ones, in the render dtype
    note = storage_note(Path(spec.weights), detect(read_header(spec.weights)), torch.bfloat16)
    assert ("kept quantised" in note) == (qtype != "F16")
