"""Tiny Wan pipelines with random weights, built locally in about a second each.

They are real diffusers pipelines (same classes, same loader, same call) so tests,
the demo and offline smoke runs exercise exactly the code that runs the real
models; only the sizes are small. Saved files are bound to the diffusers and
transformers versions that wrote them, so a marker file records those versions and
``ensure_tiny_model`` rebuilds when they change.

Shapes follow diffusers' own pipeline tests (tests/pipelines/wan/): Wan2.1 T2V,
Wan2.1 I2V (CLIP image encoder, transformer in_channels 2*z+4), Wan2.1 FLF2V (the
same with a position table over both end images), Wan2.2 TI2V-5B (residual VAE with
patch 2 and spatial factor 16, ``expand_timesteps``), Wan2.1 VACE and Wan2.2
A14B-style two-expert T2V and I2V (``transformer_2``, ``boundary_ratio``; the I2V one
without a CLIP image encoder, as Wan2.2 I2V-A14B).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import WanError

MARKER = "deforum_wan_tiny.json"
# Bump when a builder below changes, so stale folders are rebuilt.
# 3: every tiny Wan2.1 model shares one UMT5 encoder and VAE (same seed, built first);
# 4: the VAEs' latents mean and std are no longer 0 and 1.
BUILD_FORMAT = 4

Z_DIM = 4
TI2V_Z_DIM = 8
TEXT_DIM = 16
CLIP_DIM = 8


def tiny_model_ids() -> list[str]:
    from .registry import MODELS

    return [m.id for m in MODELS.values() if m.tiny]


def _versions() -> dict:
    import diffusers
    import transformers

    return {"diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "format": BUILD_FORMAT}


def _tokenizer():
    """Character-level WordLevel tokenizer: any prompt maps to distinct ids, no files needed."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127) if not chr(c).isupper()]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(chars)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    # UMT5 appends </s> to every sequence; keep that so prompt lengths behave alike.
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def _text_encoder(vocab_size: int):
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=8, d_ff=32, num_layers=1,
                        num_heads=2, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                        relative_attention_num_buckets=8, relative_attention_max_distance=32)
    # eval(): a freshly built model is in training mode and its dropout would make runs differ.
    return UMT5EncoderModel(config).eval()


def latent_statistics(z_dim: int) -> tuple[list[float], list[float]]:
    """Per-channel latents mean and std of a tiny VAE: distinct in each channel and away from
    0 and 1 like the real VAEs' own, so latents normalised the wrong way round show."""
    mean = [round(0.2 * (c - (z_dim - 1) / 2), 2) for c in range(z_dim)]
    std = [round(0.6 + 0.3 * c, 2) for c in range(z_dim)]
    return mean, std


def _vae(z_dim: int = Z_DIM, **extra):
    from diffusers import AutoencoderKLWan

    mean, std = latent_statistics(z_dim)
    return AutoencoderKLWan(base_dim=4, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=mean, latents_std=std,
                            **extra)


def _transformer(in_channels: int, out_channels: int = Z_DIM, cls=None, num_layers: int = 1, **extra):
    from diffusers import WanTransformer3DModel

    cls = cls or WanTransformer3DModel
    # rope_max_seq_len bounds latent frames and patches per side: 64 covers 121 frames and 512 px.
    return cls(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
               in_channels=in_channels, out_channels=out_channels, text_dim=TEXT_DIM, freq_dim=16,
               ffn_dim=32, num_layers=num_layers, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", rope_max_seq_len=64, **extra)


def _scheduler(shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                   flow_shift=shift, num_train_timesteps=1000)


def _common(shift: float = 5.0) -> dict:
    """Tokenizer, UMT5 encoder, Wan2.1 VAE, scheduler: built first from the same seed in every
    tiny model, so they are the same weights in each, as in the real Wan2.1 family."""
    tokenizer = _tokenizer()
    return {"tokenizer": tokenizer, "text_encoder": _text_encoder(len(tokenizer)), "vae": _vae(),
            "scheduler": _scheduler(shift)}


def _build_t2v(layers: int = 1):
    from diffusers import WanPipeline

    parts = _common()
    return WanPipeline(transformer=_transformer(Z_DIM, num_layers=layers), **parts)


CLIP_IMAGE = 32
CLIP_PATCH = 8
CLIP_TOKENS = (CLIP_IMAGE // CLIP_PATCH) ** 2 + 1  # patches + class token


def _build_i2v(two_images: bool = False):
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    parts = _common()
    # CLIPVisionModel, as in the real Wan2.1 I2V repos (the pipeline reads hidden_states[-2]).
    clip = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=CLIP_DIM, projection_dim=CLIP_DIM, num_hidden_layers=2, num_attention_heads=2,
        image_size=CLIP_IMAGE, intermediate_size=16, patch_size=CLIP_PATCH)).eval()
    processor = CLIPImageProcessor(crop_size=CLIP_IMAGE, size=CLIP_IMAGE)
    # Wan2.1 I2V input: noise latents + condition latents + 4 mask channels. FLF2V embeds
    # both end images with a learned position table over the two token sequences.
    extra = {"pos_embed_seq_len": 2 * CLIP_TOKENS} if two_images else {}
    transformer = _transformer(2 * Z_DIM + 4, image_dim=CLIP_DIM, **extra)
    return WanImageToVideoPipeline(transformer=transformer, image_encoder=clip,
                                   image_processor=processor, **parts)


def _build_flf2v():
    return _build_i2v(two_images=True)


def _build_ti2v():
    from diffusers import WanPipeline

    parts = _common()
    # Wan2.2 VAE: pixels patchified 2x2 before encoding (12 channels), residual blocks,
    # 16x spatial compression; so sizes are multiples of 32 with the transformer's 2x2 patch.
    parts["vae"] = _vae(TI2V_Z_DIM, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
               scale_factor_spatial=16, scale_factor_temporal=4)
    return WanPipeline(transformer=_transformer(TI2V_Z_DIM, TI2V_Z_DIM), transformer_2=None,
                       boundary_ratio=None, expand_timesteps=True, **parts)


def _build_vace():
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    parts = _common()
    # VACE context: inactive + reactive latents (2*z) + the mask folded to 8*8 channels.
    transformer = _transformer(Z_DIM, cls=WanVACETransformer3DModel, num_layers=2,
                               vace_layers=[0], vace_in_channels=2 * Z_DIM + 64)
    return WanVACEPipeline(transformer=transformer, **parts)


def _build_two_expert():
    import torch
    from diffusers import WanPipeline

    parts = _common()
    high = _transformer(Z_DIM)
    torch.manual_seed(1)  # the second expert gets its own weights
    low = _transformer(Z_DIM)
    return WanPipeline(transformer=high, transformer_2=low, boundary_ratio=0.875, **parts)


def _build_two_expert_i2v():
    import torch
    from diffusers import WanImageToVideoPipeline

    parts = _common()
    # Wan2.2 I2V-A14B: the I2V transformer input, no image encoder, boundary 0.9 (its model_index).
    high = _transformer(2 * Z_DIM + 4)
    torch.manual_seed(1)
    low = _transformer(2 * Z_DIM + 4)
    return WanImageToVideoPipeline(transformer=high, transformer_2=low, boundary_ratio=0.9,
                                   image_encoder=None, image_processor=None, **parts)


_BUILDERS = {
    "t2v": _build_t2v,
    "i2v": _build_i2v,
    "ti2v": _build_ti2v,
    "vace": _build_vace,
    "flf2v": _build_flf2v,
}


def _builder(model_id: str):
    from .registry import get_model

    spec = get_model(model_id)
    if not spec.tiny:
        raise WanError(f"{spec.id} is not a tiny model; tiny models: {', '.join(tiny_model_ids())}")
    if spec.guidance_2 is not None:
        return _build_two_expert_i2v if spec.kind == "i2v" else _build_two_expert
    return _BUILDERS[spec.kind]


def read_marker(folder: Path, marker_name: str = MARKER) -> dict | None:
    """A built folder's marker as written (any library versions), or None."""
    try:
        marker = json.loads((Path(folder) / marker_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _marker_ok(folder: Path, marker_name: str = MARKER) -> bool:
    return (read_marker(folder, marker_name) or {}).get("versions") == _versions()


def build_tiny_model(model_id: str, folder: Path, layers: int | None = None) -> Path:
    """Build one tiny pipeline into ``folder`` (replaced atomically), seeded for reproducibility.

    ``layers``: transformer blocks of a single-transformer T2V model (default 1; block
    caches need 2 or more), recorded in the marker.
    """
    import functools

    import torch

    build = _builder(model_id)
    if layers is not None:
        if build is not _build_t2v:
            raise WanError(f"only the T2V tiny model takes a layer count, not {model_id}")
        build = functools.partial(_build_t2v, layers)
    def write(tmp: Path) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            pipe = build()
        with _quiet_saving():
            pipe.save_pretrained(tmp, safe_serialization=True)

    return _build_atomically(Path(folder), {"model": model_id, **({"layers": layers} if layers else {})}, write)


def _build_atomically(folder: Path, marker: dict, write, marker_name: str = MARKER) -> Path:
    """``write(tmp)`` into a sibling temp folder, then rename it to ``folder``: a crash or a
    parallel build never leaves a half-written model that looks complete."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        write(tmp)
        (tmp / marker_name).write_text(json.dumps({**marker, "versions": _versions()}, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and _marker_ok(folder, marker_name):  # a parallel build finished first
            return folder
        raise
    return folder


@contextlib.contextmanager
def _quiet_saving():
    """No per-file 'Writing model shards' bars for kilobyte files; restores the setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def ensure_tiny_model(model_id: str, cache_dir: str | os.PathLike) -> Path:
    """The folder of a tiny model under ``cache_dir``, built if missing or built by other versions."""
    from .registry import get_model

    spec = get_model(model_id)
    folder = Path(cache_dir).expanduser() / spec.id
    if _marker_ok(folder):
        return folder
    return build_tiny_model(spec.id, folder)


def build_tiny_models(dest_dir: str | os.PathLike, models: list[str] | None = None,
                      force: bool = False) -> dict[str, Path]:
    """Build every tiny model (or ``models``) under ``dest_dir``; returns id -> folder."""
    dest = Path(dest_dir).expanduser()
    out = {}
    for model_id in models or tiny_model_ids():
        if force:
            out[model_id] = build_tiny_model(model_id, dest / model_id)
        else:
            out[model_id] = ensure_tiny_model(model_id, dest)
    return out


# --- a tiny depth model (DPT, random weights) for 3D depth warping on the CPU ------------------

def build_tiny_depth(folder: Path) -> Path:
    """A DPT depth model with random weights (~30 k parameters), loaded like the real ones."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    def write(tmp: Path) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            config = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                               image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                               neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8, reassemble_factors=[4, 2, 1, 0.5])
            model = DPTForDepthEstimation(config).eval()
        with _quiet_saving():
            model.save_pretrained(tmp, safe_serialization=True)
        DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(tmp)

    return _build_atomically(Path(folder), {"model": "tiny-depth"}, write)


def ensure_tiny_depth(cache_dir: str | os.PathLike) -> Path:
    folder = Path(cache_dir) / "tiny-depth"
    return folder if _marker_ok(folder) else build_tiny_depth(folder)
