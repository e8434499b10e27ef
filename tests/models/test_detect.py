"""Single weight files told by their tensors: every registry model's published architecture
(built on the meta device: shapes only), in the original and diffusers layouts and renamed;
bad files refused in one line from the header alone."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import to_original_name, write_safetensors_header

from deforum_wan.errors import WanError
from deforum_wan.models.detect import detect
from deforum_wan.models.random_full import published_config
from deforum_wan.models.registry import MODELS
from deforum_wan.models.st_header import Header, Tensor, read_header


def _full_transformer_config(model_id: str) -> tuple[str, dict]:
    """The published transformer config of a registry model (diffusers' convert_wan_to_diffusers)."""
    i2v = published_config("transformer-i2v-14b")
    t2v14 = dict(i2v, in_channels=16, image_dim=None, added_kv_proj_dim=None)
    table = {
        "wan2.1-t2v-1.3b": ("WanTransformer3DModel", published_config("transformer-t2v-1.3b")),
        "wan2.1-vace-1.3b": ("WanVACETransformer3DModel", published_config("transformer-vace-1.3b")),
        "wan2.2-ti2v-5b": ("WanTransformer3DModel", published_config("transformer-ti2v-5b")),
        "wan2.1-i2v-14b-480p": ("WanTransformer3DModel", i2v),
        "wan2.1-i2v-14b-720p": ("WanTransformer3DModel", i2v),
        "wan2.1-flf2v-14b-720p": ("WanTransformer3DModel", dict(i2v, pos_embed_seq_len=2 * 257)),
        "wan2.1-t2v-14b": ("WanTransformer3DModel", t2v14),
        "wan2.2-t2v-a14b": ("WanTransformer3DModel", t2v14),
        "wan2.2-i2v-a14b": ("WanTransformer3DModel", dict(i2v, image_dim=None, added_kv_proj_dim=None)),
        "wan2.1-vace-14b": ("WanVACETransformer3DModel", dict(t2v14, vace_layers=list(range(0, 40, 5)),
                                                              vace_in_channels=96)),
    }
    return table[model_id]


FULL = [m.id for m in MODELS.values() if not m.tiny]


def _meta_shapes(model_id: str, dtype: str = "BF16") -> tuple[dict[str, Tensor], dict]:
    import diffusers
    import torch

    cls, cfg = _full_transformer_config(model_id)
    with torch.device("meta"):
        model = getattr(diffusers, cls).from_config(cfg)
    return {k: Tensor(dtype, tuple(v.shape)) for k, v in model.state_dict().items()}, cfg


def _header(tensors: dict[str, Tensor], name: str = "file.safetensors") -> Header:
    return Header(Path(name), 0, tensors, {})


@pytest.mark.parametrize("model_id", FULL)
def test_every_registry_transformer_is_detected_in_both_layouts(model_id):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    spec = MODELS[model_id]
    diffusers_names, cfg = _meta_shapes(model_id)
    original = {to_original_name(k): v for k, v in diffusers_names.items()}
    # diffusers' own converter takes the original names back (proves the inverse mapping); it has
    # no rename for FLF2V's position table, which the loader renames itself.
    back = convert_wan_transformer_to_diffusers({k: k for k in original})
    assert {v: k for k, v in back.items() if "emb_pos" not in v} == \
        {to_original_name(k): k for k in diffusers_names if "pos_embed" not in k}
    size = {"1.3b": "1.3B", "5b": "5B", "14b": "14B", "a14b": "14B"}[model_id.split("-")[2]]
    for tensors, layout in ((original, "original"), (diffusers_names, "diffusers")):
        found = detect(_header(tensors))
        assert (found.kind, found.layout, found.variant, found.size) == ("transformer", layout, spec.kind, size)
        assert found.family in (spec.family, None)
        for key in ("in_channels", "out_channels", "num_layers", "ffn_dim", "text_dim", "image_dim",
                    "added_kv_proj_dim", "pos_embed_seq_len", "vace_layers", "vace_in_channels",
                    "num_attention_heads", "attention_head_dim"):
            assert found.config.get(key) == cfg.get(key), (model_id, layout, key)


def test_comfy_prefix_fp8_scaled_and_a_misleading_name_detect_the_same():
    tensors, _ = _meta_shapes("wan2.1-t2v-14b", "F8_E4M3")
    original = {"model.diffusion_model." + to_original_name(k): v for k, v in tensors.items()}
    scaled = dict(original, scaled_fp8=Tensor("F8_E4M3", (0,)),
                  **{k.replace(".weight", ".scale_weight"): Tensor("F32", ()) for k in original
                     if k.endswith(".weight") and len(original[k].shape) == 2})
    plain = detect(_header(original, "wan2.1_t2v_14B_fp8_e4m3fn.safetensors"))
    renamed = detect(_header(scaled, "my_favourite_vae.safetensors"))  # the name says nothing
    assert (plain.quant, renamed.quant) == ("fp8 e4m3fn", "fp8 e4m3fn scaled")
    assert plain.prefix == renamed.prefix == "model.diffusion_model."
    assert (renamed.kind, renamed.variant, renamed.size, renamed.config) == \
        (plain.kind, plain.variant, plain.size, plain.config)


def test_tiny_transformer_reports_unknown_size(tiny_models_dir):
    found = detect(read_header(tiny_models_dir / "tiny-random" / "transformer" /
                               "diffusion_pytorch_model.safetensors"))
    assert (found.kind, found.variant, found.size) == ("transformer", "t2v", None)
    assert "unknown size (dim 16, 1 layer)" in found.summary
    assert found.config["num_attention_heads"] is None  # 16 wide: not Wan's 128-wide heads


def test_text_encoder_vae_and_clip_from_their_shapes(tiny_models_dir):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        umt5 = UMT5EncoderModel(UMT5Config(**published_config("umt5-xxl")))
        clip = CLIPVisionModel(CLIPVisionConfig(**published_config("clip-vit-h-14")))
    text = detect(_header({k: Tensor("F8_E4M3", tuple(v.shape)) for k, v in umt5.state_dict().items()}))
    assert (text.kind, text.size, text.config["d_model"], text.config["num_layers"]) == \
        ("text_encoder", "UMT5-XXL", 4096, 24)
    vision = detect(_header({k: Tensor("F16", tuple(v.shape)) for k, v in clip.state_dict().items()}))
    assert (vision.kind, vision.size, vision.config["image_size"]) == ("clip_vision", "CLIP ViT-H/14", 224)
    tiny = tiny_models_dir / "tiny-random"
    vae = detect(read_header(tiny / "vae" / "diffusion_pytorch_model.safetensors"))
    assert (vae.kind, vae.layout, vae.config["z_dim"]) == ("vae", "diffusers", 4)
    ti2v_vae = detect(read_header(tiny_models_dir / "tiny-random-ti2v" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert ti2v_vae.config["z_dim"] == 8
    for z, family in ((16, "wan2.1"), (48, "wan2.2")):
        import diffusers

        with torch.device("meta"):
            full = diffusers.AutoencoderKLWan.from_config(published_config(f"vae-{family}"))
        found = detect(_header({k: Tensor("F32", tuple(v.shape)) for k, v in full.state_dict().items()}))
        assert (found.kind, found.family, found.config["z_dim"]) == ("vae", family, z)


def test_bad_files_are_one_line_each(tmp_path):
    good = write_safetensors_header(tmp_path / "good.safetensors", {"patch_embedding.weight": ("BF16", (4, 2))})
    assert read_header(good).tensors["patch_embedding.weight"].shape == (4, 2)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:20])
    lying = write_safetensors_header(tmp_path / "lying.safetensors", {"w": ("BF16", (4, 2))}, data_bytes=4)
    absurd = write_safetensors_header(tmp_path / "absurd.safetensors", {"w": ("BF16", (1 << 40, 1))}, data_bytes=0)
    huge = tmp_path / "huge_header.safetensors"
    huge.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    for path, words in ((truncated, "truncated"), (lying, "lies about sizes"), (absurd, "absurd dimensions"),
                        (huge, "truncated or not safetensors")):
        with pytest.raises(WanError) as err:
            read_header(path)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(WanError, match="patch_embedding has shape"):
        detect(read_header(good))


def test_other_models_encoders_and_vaes_beside_wans_are_refused(tmp_path):
    """A host's folders hold Flux's T5-XXL (as wide as UMT5-XXL) and SD's image VAEs: not Wan's."""
    import diffusers
    import torch
    from helpers import write_gguf_header
    from transformers import T5Config, T5EncoderModel

    from deforum_wan.models.headers import read_header as read_any_header

    with torch.device("meta"):
        sd_vae = diffusers.AutoencoderKL(latent_channels=4, block_out_channels=(128, 256, 512, 512),
                                         down_block_types=("DownEncoderBlock2D",) * 4,
                                         up_block_types=("UpDecoderBlock2D",) * 4)
        t5 = T5EncoderModel(T5Config(d_model=4096, num_layers=24, num_heads=64, d_kv=64, d_ff=10240,
                                     feed_forward_proj="gated-gelu"))
    with pytest.raises(WanError, match="image VAE"):
        detect(_header({k: Tensor("F16", tuple(v.shape)) for k, v in sd_vae.state_dict().items()}))
    with pytest.raises(WanError, match="not UMT5"):
        detect(_header({k: Tensor("F16", tuple(v.shape)) for k, v in t5.state_dict().items()}))
    names = {"token_embd.weight": (1, (32128, 4096)), "enc.blk.0.attn_rel_b.weight": (0, (32, 64))}
    names.update({f"enc.blk.{i}.attn_q.weight": (1, (4096, 4096)) for i in range(24)})
    with pytest.raises(WanError, match="not UMT5"):
        detect(read_any_header(write_gguf_header(tmp_path / "t5-v1_1-xxl-encoder-f16.gguf", names)))
