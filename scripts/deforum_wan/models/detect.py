"""What a single weight file holds, told by its tensors (names, shapes, dtypes), never its name.

A Wan transformer in the original key layout (Wan's repo, ComfyUI: ``blocks.N.self_attn.q``) or
in diffusers' (``blocks.N.attn1.to_q``), its variant (T2V, I2V, FLF2V, VACE, TI2V) and size; a
UMT5 text encoder; a Wan 2.1 or 2.2 VAE; a CLIP vision encoder; a LoRA. The transformer's
diffusers config is derived from the same shapes, so a file loads by its layout even at a size
the table below does not know (the tiny test models). Pure Python, headers only: no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import WanError
from .st_header import Header

# Published Wan transformers: hidden width -> (name, layers).
SIZES = {1536: ("1.3B", 30), 3072: ("5B", 30), 5120: ("14B", 40)}
HEAD_DIM = 128  # every published Wan transformer
COMFY_PREFIX = "model.diffusion_model."
SCALE_SUFFIXES = (".scale_weight", ".weight_scale")  # ComfyUI's scaled fp8: weight = fp8 * scale
DROPPED = (".scale_input", ".input_scale")  # activation scales: not used when weights are dequantised
MARKERS = ("scaled_fp8",)  # an empty tensor ComfyUI writes in a scaled fp8 file


class OtherModelFile(WanError):
    """A file of another model (an SD, SDXL or Flux checkpoint, a CLIP or T5 encoder, an image
    VAE): lists put these aside in one line rather than each as unusable."""


@dataclass(frozen=True)
class Detected:
    kind: str  # transformer | text_encoder | vae | clip_vision | lora
    layout: str  # original | diffusers | transformers
    quant: str  # bf16 | fp16 | fp32 | fp8 e4m3fn | fp8 e4m3fn scaled | ...
    summary: str  # one line for the models list
    variant: str | None = None  # transformer: t2v | i2v | flf2v | vace | ti2v
    size: str | None = None  # "14B", or None when the width is not a published one
    family: str | None = None  # wan2.1 | wan2.2 | None (the architecture is in both)
    config: dict = field(default_factory=dict)  # derived diffusers/transformers config values
    prefix: str = ""  # stripped from every name when loading
    width: int = 0  # transformer: hidden width (heads x head dim)


def stored_quant(header: Header) -> str:
    """The quantisation a file stores its matrices in (bf16, fp8 e4m3fn scaled, Q4_K_M, ...)."""
    if header.quant:
        return header.quant
    names = [n for n in header.tensors if not n.endswith(SCALE_SUFFIXES + DROPPED) and n not in MARKERS]
    big = [header.tensors[n].dtype for n in names if len(header.tensors[n].shape) >= 2] or \
        [header.tensors[n].dtype for n in names]
    if not big:
        return "empty"
    dtype = max(set(big), key=big.count)
    scaled = any(n.endswith(SCALE_SUFFIXES) for n in header.tensors) or any(m in header.tensors for m in MARKERS)
    label = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8 e4m3fn", "F8_E5M2": "fp8 e5m2"}.get(
        dtype, dtype.lower())
    return f"{label} scaled" if scaled and label.startswith("fp8") else label


def _prefix(header: Header) -> str:
    return COMFY_PREFIX if any(n.startswith(COMFY_PREFIX) for n in header.tensors) else ""


def detect(header: Header) -> Detected:
    """The kind of ``header``'s file, or WanError with the reason in one line."""
    names = header.tensors
    quant = stored_quant(header)
    prefix = _prefix(header)
    shape = lambda name: header.shape(prefix + name)  # noqa: E731
    if any(".lora_A." in n or ".lora_down." in n or ".lora_B." in n for n in names):
        return Detected("lora", "lora", quant, f"LoRA ({sum(1 for n in names if 'lora_' in n) // 2} layers)")
    if shape("patch_embedding.weight") is not None:
        return _transformer(header, prefix, quant)
    if "shared.weight" in names or "encoder.embed_tokens.weight" in names:
        if "encoder.block.0.layer.0.SelfAttention.q.weight" in names:
            return _text_encoder(header, quant)
    if "enc.blk.0.attn_q.weight" in names and "token_embd.weight" in names:
        return _gguf_text_encoder(header, quant)
    if "token_embedding.weight" in names and "blocks.0.attn.q.weight" in names:
        raise WanError(f"{header.path.name}: a T5 encoder in Wan's own key layout; use a UMT5 file in"
                       " transformers' layout (ComfyUI's umt5_xxl_*.safetensors) or the diffusers folder")
    for layout, name in (("original", "conv2.weight"), ("diffusers", "post_quant_conv.weight")):
        if name in names and any(n.startswith("decoder.") for n in names):
            return _vae(header, layout, name, quant)
    for clip_prefix in ("vision_model.", ""):  # transformers 4 names / 5's CLIPVisionModel
        if clip_prefix + "embeddings.patch_embedding.weight" in names and \
                clip_prefix + "encoder.layers.0.mlp.fc1.weight" in names:
            return _clip_vision(header, clip_prefix, quant)
    if any(n.startswith("visual.") for n in names):
        raise WanError(f"{header.path.name}: a CLIP vision encoder in open_clip's layout; use ComfyUI's"
                       " clip_vision_h.safetensors (transformers' layout) or the diffusers folder")
    sample = ", ".join(list(names)[:3]) or "no tensors"
    raise OtherModelFile(f"{header.path.name}: not a Wan transformer, UMT5, Wan VAE or CLIP vision file ({sample})")


def _count(names, pattern: str) -> int:
    found = {int(m.group(1)) for n in names if (m := re.match(pattern, n))}
    return max(found) + 1 if found else 0


def _transformer(header: Header, prefix: str, quant: str) -> Detected:
    names = [n[len(prefix):] for n in header.tensors if n.startswith(prefix)]
    shape = lambda name: header.shape(prefix + name)  # noqa: E731
    diffusers = any(".attn1." in n for n in names)
    layout = "diffusers" if diffusers else "original"
    pick = (lambda orig, diff: shape(diff if diffusers else orig))
    patch = shape("patch_embedding.weight")
    if len(patch) != 5:
        raise WanError(f"{header.path.name}: patch_embedding has shape {list(patch)}, not a Wan 3D patch")
    dim, in_channels, patch_size = patch[0], patch[1], list(patch[2:])
    layers = _count(names, r"blocks\.(\d+)\.")
    head = pick("head.head.weight", "proj_out.weight")
    text = pick("text_embedding.0.weight", "condition_embedder.text_embedder.linear_1.weight")
    time = pick("time_embedding.0.weight", "condition_embedder.time_embedder.linear_1.weight")
    ffn = pick("blocks.0.ffn.0.weight", "blocks.0.ffn.net.0.proj.weight")
    if None in (head, text, time, ffn) or layers == 0:
        raise WanError(f"{header.path.name}: a Wan transformer with parts missing (head, embeddings or blocks)")
    cells = patch_size[0] * patch_size[1] * patch_size[2]
    out_channels = head[0] // cells
    image = pick("img_emb.proj.0.weight", "condition_embedder.image_embedder.norm1.weight")
    pos = pick("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed")
    added = pick("blocks.0.cross_attn.k_img.weight", "blocks.0.attn2.add_k_proj.weight")
    vace_patch = shape("vace_patch_embedding.weight")
    vace_count = _count(names, r"vace_blocks\.(\d+)\.")
    cross_norm = pick("blocks.0.norm3.weight", "blocks.0.norm2.weight") is not None
    qk_norm = pick("blocks.0.self_attn.norm_q.weight", "blocks.0.attn1.norm_q.weight") is not None
    config = {"patch_size": patch_size, "num_attention_heads": dim // HEAD_DIM if dim % HEAD_DIM == 0 else None,
              "attention_head_dim": HEAD_DIM if dim % HEAD_DIM == 0 else None, "in_channels": in_channels,
              "out_channels": out_channels, "text_dim": text[1], "freq_dim": time[1], "ffn_dim": ffn[0],
              "num_layers": layers, "cross_attn_norm": cross_norm,
              "qk_norm": "rms_norm_across_heads" if qk_norm else None, "eps": 1e-6,
              "image_dim": image[0] if image else None, "added_kv_proj_dim": added[1] if added else None,
              "pos_embed_seq_len": pos[1] if pos else None}
    if vace_patch is not None:
        # Wan's VACE blocks sit evenly beside the transformer's from the first: every 2nd of 1.3B's
        # 30, every 5th of 14B's 40 (its configs' vace_layers).
        step = max(1, layers // max(1, vace_count))
        config.update(vace_layers=[i * step for i in range(vace_count)], vace_in_channels=vace_patch[1])
        variant = "vace"
    elif in_channels == out_channels == 48:
        variant = "ti2v"  # Wan 2.2 TI2V: its VAE's 48 latent channels, the image in the latents
    elif in_channels == 2 * out_channels + 4:  # noise + condition latents + 4 mask channels
        variant = "flf2v" if pos else "i2v"
    else:
        variant = "t2v"
    family = "wan2.2" if variant == "ti2v" or (variant == "i2v" and image is None) else \
        "wan2.1" if variant in ("i2v", "flf2v", "vace") else None
    known = SIZES.get(dim)
    size = known[0] if known and known[1] == layers else None
    size_text = size or f"unknown size (dim {dim}, {layers} layer{'s' if layers != 1 else ''})"
    family_text = family or "wan2.1/2.2"
    summary = f"Wan transformer {variant.upper()} {size_text}, {family_text}, {layout} layout"
    return Detected("transformer", layout, quant, summary, variant, size, family, config, prefix, dim)


def _text_encoder(header: Header, quant: str) -> Detected:
    names = header.tensors
    embed = header.shape("shared.weight") or header.shape("encoder.embed_tokens.weight")
    layers = _count(names, r"encoder\.block\.(\d+)\.")
    q = header.shape("encoder.block.0.layer.0.SelfAttention.q.weight")
    bias = header.shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    wi = header.shape("encoder.block.0.layer.1.DenseReluDense.wi_0.weight")
    umt5 = layers < 2 or "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in names
    if bias is None or wi is None or not umt5:
        raise WanError(f"{header.path.name}: a T5 encoder but not UMT5 (Wan's text encoder), or parts missing")
    d_model, heads = embed[1], bias[1]
    config = {"vocab_size": embed[0], "d_model": d_model, "num_heads": heads, "d_kv": q[0] // heads,
              "d_ff": wi[0], "num_layers": layers, "relative_attention_num_buckets": bias[0],
              "feed_forward_proj": "gated-gelu"}
    name = "UMT5-XXL" if d_model == 4096 and layers == 24 else f"UMT5 of unknown size (d_model {d_model})"
    return Detected("text_encoder", "transformers", quant, f"text encoder {name}", size=name, config=config)


def _gguf_text_encoder(header: Header, quant: str) -> Detected:
    """A T5/UMT5 encoder in llama.cpp's names (city96's umt5-xxl-encoder-*.gguf)."""
    embed = header.shape("token_embd.weight")
    layers = _count(header.tensors, r"enc\.blk\.(\d+)\.")
    umt5 = layers < 2 or "enc.blk.1.attn_rel_b.weight" in header.tensors
    if not umt5:  # Flux's T5-XXL (t5-v1_1-xxl-encoder-*.gguf): the same width as UMT5-XXL, another model
        raise OtherModelFile(f"{header.path.name}: a T5 encoder but not UMT5 (Wan's text encoder)")
    d_model = embed[1]
    name = "UMT5-XXL" if d_model == 4096 and layers == 24 else f"UMT5 of unknown size (d_model {d_model})"
    return Detected("text_encoder", "llama.cpp", quant, f"text encoder {name}, llama.cpp layout", size=name,
                    config={"d_model": d_model, "num_layers": layers, "vocab_size": embed[0]})


def _vae(header: Header, layout: str, post_quant: str, quant: str) -> Detected:
    if len(header.shape(post_quant)) != 5:  # an SD/SDXL image VAE: 2D convolutions, not Wan's 3D ones
        raise OtherModelFile(f"{header.path.name}: an image VAE (2D), not a Wan VAE")
    z = header.shape(post_quant)[0]
    version = {16: "Wan 2.1", 48: "Wan 2.2"}.get(z)
    family = {16: "wan2.1", 48: "wan2.2"}.get(z)
    stem = header.shape("encoder.conv1.weight" if layout == "original" else "encoder.conv_in.weight")
    config = {"z_dim": z, "base_dim": stem[0] if stem else None, "in_channels": stem[1] if stem else None}
    name = f"{version} VAE" if version else f"VAE of unknown kind (z_dim {z})"
    return Detected("vae", layout, quant, f"{name}, {layout} layout", family=family, config=config)


def _clip_vision(header: Header, prefix: str, quant: str) -> Detected:
    names = header.tensors
    patch = header.shape(prefix + "embeddings.patch_embedding.weight")
    positions = header.shape(prefix + "embeddings.position_embedding.weight")
    fc1 = header.shape(prefix + "encoder.layers.0.mlp.fc1.weight")
    layers = _count(names, re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
    hidden = patch[0]
    side = round((positions[0] - 1) ** 0.5) * patch[2] if positions else None
    config = {"hidden_size": hidden, "intermediate_size": fc1[0] if fc1 else None, "num_hidden_layers": layers,
              "patch_size": patch[2], "image_size": side}
    name = "CLIP ViT-H/14" if hidden == 1280 else f"CLIP vision of unknown size (hidden {hidden})"
    return Detected("clip_vision", "transformers", quant, f"{name} vision encoder", size=name, config=config,
                    prefix=prefix)
