"""A Wan transformer written as the single files users have: Wan's original key layout (its repo's,
ComfyUI's), fp8 e4m3fn safetensors, and GGUF as ComfyUI-GGUF's converter writes it (F32 vectors,
matrices in one ggml type where their rows are whole blocks of it). For the tests' files and
``bench --formats``; GGUF needs the ``gguf`` package.
"""
from __future__ import annotations

from pathlib import Path

# Elements per block of the ggml types written here: a matrix whose rows are not whole blocks stays F32.
BLOCK = {"F16": 1, "Q8_0": 32, "Q4_0": 32, "Q4_K": 256}


# Whole names outside the blocks, then parts inside a block: the inverse of diffusers'
# convert_wan_transformer_to_diffusers (the tests run that converter on the result to prove it).
_TOP_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"),
    ("scale_shift_table", "head.modulation"),
    ("proj_out.", "head.head."),
]
_BLOCK_TO_ORIGINAL = [
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    ("scale_shift_table", "modulation"), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
    ("proj_in", "before_proj"), ("proj_out", "after_proj"),
]


def to_original_name(name: str) -> str:
    """A diffusers WanTransformer3DModel parameter name in Wan's original key layout."""
    if name.startswith(("blocks.", "vace_blocks.")):
        for old, new in _BLOCK_TO_ORIGINAL:
            name = name.replace(old, new)
        return name
    for old, new in _TOP_TO_ORIGINAL:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def quantize_q4_k(rows):
    """Rows (a float32 array whose last side is a multiple of 256) as ggml Q4_K blocks (144 bytes
    per 256 values): gguf-py dequantises K-quants but cannot make them. Per 32 values a 6-bit
    scale and min under the block's fp16 ``d`` and ``dmin``, packed as ggml's get_scale_min_k4 reads."""
    import numpy as np

    blocks = np.asarray(rows, dtype=np.float32).reshape(-1, 8, 32)
    low = np.minimum(blocks.min(axis=2), 0)  # ggml's mins are >= 0 and subtracted
    scale = (blocks.max(axis=2) - low) / 15
    d = (scale.max(axis=1) / 63).astype(np.float16)
    dmin = (-low.min(axis=1) / 63).astype(np.float16)
    dd = np.where(d == 0, 1, d.astype(np.float32))[:, None]
    dm = np.where(dmin == 0, 1, dmin.astype(np.float32))[:, None]
    sc = np.clip(np.round(scale / dd), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(-low / dm), 0, 63).astype(np.uint8)
    eff_scale = (d.astype(np.float32)[:, None] * sc)[:, :, None]
    eff_min = (dmin.astype(np.float32)[:, None] * mn)[:, :, None]
    q = np.clip(np.round((blocks + eff_min) / np.where(eff_scale == 0, 1, eff_scale)), 0, 15).astype(np.uint8)
    packed = np.zeros((len(blocks), 12), dtype=np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    q = q.reshape(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    out = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qs], axis=1)
    shape = np.asarray(rows).shape
    return out.reshape(*shape[:-1], shape[-1] // 256 * 144)


def write_gguf(path: Path, state: dict, pick, file_type: int | None = None) -> Path:
    """``state`` (name -> torch tensor) as a GGUF file the way ComfyUI-GGUF's converter writes
    one: architecture "wan", each tensor in the ggml type ``pick(name, array)`` names (F32, F16,
    Q8_0, Q4_0 by gguf-py, Q4_K here), ``general.file_type`` when given."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if file_type is not None:
        writer.add_file_type(file_type)
    for name, tensor in state.items():
        array = tensor.detach().float().numpy()
        qtype = getattr(gguf.GGMLQuantizationType, pick(name, array))
        data = quantize_q4_k(array) if qtype == gguf.GGMLQuantizationType.Q4_K else \
            gguf.quants.quantize(array, qtype)
        writer.add_tensor(name, np.ascontiguousarray(data), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path




def comfy_pick(qtype: str):
    """ComfyUI-GGUF's choice of type per tensor: vectors and small tensors F32, matrices in
    ``qtype`` when their rows are whole blocks of it (else F32, as real writers fall back)."""
    def pick(name, array):
        if array.ndim != 2 or array.size <= 1024:
            return "F32"
        return qtype if array.shape[-1] % BLOCK[qtype] == 0 else "F32"
    return pick


def fp8_state(state: dict) -> dict:
    """A plain fp8 e4m3fn file's tensors (ComfyUI's): each matrix rounded to float8, the rest bf16."""
    import torch

    return {name: tensor.to(torch.float8_e4m3fn) if name.endswith(".weight") and tensor.dim() == 2
            else tensor.to(torch.bfloat16) for name, tensor in state.items()}
