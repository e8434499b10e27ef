"""Stable Video Infinity's image-to-video conditioning, built as its own code builds it
(vita-epfl/Stable-Video-Infinity, diffsynth/pipelines/svi_video.py,
``SVIVideoPipeline.encode_images_adaptive``; the modes from scripts/test/svi_film.sh and
svi_shot.sh): the window's leading frames are the previous window's last ``motion`` frames
(not one frame), the rest of the VAE input is zeros (``film``) or the shot's anchor image
repeated (``shot``) instead of zeros, and the mask marks the first frame alone as given, as
SVI's does. The CLIP image is the first motion frame. SVI's LoRAs are trained on exactly this
input; Wan's own I2V conditioning is the ``film`` layout with one frame.

SVI 2.0 Pro, for Wan 2.2 I2V-A14B (its high/low LoRA pair), conditions in latent space instead
(millord237/Stable-Video-Infinity, branch svi_wan22, diffsynth/pipelines/wan_video_svi_pro.py,
``WanVideoUnit_ImageEmbedderVAE``; docs/svi/svi_2.0_pro.md): the anchor image encoded alone,
then the previous window's last latent as it came out of the denoiser (never re-encoded from
decoded frames), then zero latents; the first window has no motion latent and its own image as
the anchor. The mask is the same first-frame mask.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import numpy as np

# mode -> (motion frames, padding after them); SVI's test scripts: svi_film.sh
# (--num_motion_frames 5 --ref_pad_num 0), svi_shot.sh (--num_motion_frames 1 --ref_pad_num -1);
# pro: latents (its README's command: --num_motion_latent 1), the frame only for the pipeline's image
MODES = {"film": (5, "zeros"), "shot": (1, "anchor"), "pro": (1, "latent")}


@dataclass
class SviInput:
    motion: np.ndarray  # (N, H, W, 3) float32 in [0, 1]: the previous window's last frames
    anchor: np.ndarray | None  # (H, W, 3): the shot's reference image (``anchor`` padding)
    pad: str  # "zeros" | "anchor" | "latent" (SVI 2.0 Pro)
    # (z, n, h, w): the previous window's last latents, normalised as the denoiser sees them
    # (``latent`` padding; None: the first window of a chain)
    latent: np.ndarray | None = None


def condition_pixels(svi: SviInput, num_frames: int) -> np.ndarray:
    """The VAE input (3, F, H, W) in [-1, 1]: the motion frames, then the padding."""
    motion = np.asarray(svi.motion, dtype=np.float32)[:num_frames]
    rest = num_frames - len(motion)
    if svi.pad == "anchor":
        if svi.anchor is None:
            raise ValueError("SVI anchor padding needs an anchor image")
        pad = np.repeat(np.asarray(svi.anchor, dtype=np.float32)[None], rest, axis=0)
    else:
        pad = np.full((rest, *motion.shape[1:]), 0.5, dtype=np.float32)  # 0.5 is 0 in [-1, 1]
    frames = np.concatenate([motion, pad]) * 2.0 - 1.0
    return np.ascontiguousarray(frames.transpose(3, 0, 1, 2))


def condition_mask(num_frames: int, latent_height: int, latent_width: int, temporal: int = 4) -> np.ndarray:
    """(temporal, latent frames, h, w): the first frame alone is given (SVI's ``msk[:, 1:] = 0``)."""
    mask = np.zeros((num_frames, latent_height, latent_width), dtype=np.float32)
    mask[0] = 1
    mask = np.concatenate([np.repeat(mask[:1], temporal, axis=0), mask[1:]])
    return np.ascontiguousarray(mask.reshape(-1, temporal, latent_height, latent_width).transpose(1, 0, 2, 3))


def _encode(pipe, pixels: np.ndarray, device, dtype):
    """(1, z, t, h, w): the VAE latents of ``pixels`` (3, F, H, W) in [-1, 1], normalised as
    diffusers' WanImageToVideoPipeline normalises its own."""
    import torch
    from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

    vae = pipe.vae
    pixels = torch.from_numpy(pixels)[None].to(device=next(vae.parameters()).device, dtype=vae.dtype)
    latent = retrieve_latents(vae.encode(pixels), sample_mode="argmax").to(device=device, dtype=dtype)
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(device, dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(device, dtype)
    return (latent - mean) * inv_std


def pro_latents(pipe, svi: SviInput, num_frames: int, device, dtype):
    """SVI 2.0 Pro's ``y`` after the mask (1, z, T, h, w): the anchor's latent, the previous
    window's last latent (none in a first window), zero latents."""
    import torch

    if svi.anchor is None:
        raise ValueError("SVI 2.0 Pro needs an anchor image")
    anchor = np.asarray(svi.anchor, dtype=np.float32)[None] * 2.0 - 1.0  # one frame (1, H, W, 3)
    first = _encode(pipe, np.ascontiguousarray(anchor.transpose(3, 0, 1, 2)), device, dtype)
    parts = [first]
    if svi.latent is not None:
        parts.append(torch.from_numpy(np.asarray(svi.latent))[None, :, -1:].to(device, dtype))
    total = (num_frames - 1) // pipe.vae_scale_factor_temporal + 1
    used = sum(p.shape[2] for p in parts)
    parts.append(torch.zeros((1, first.shape[1], total - used, *first.shape[3:]), device=device, dtype=dtype))
    return torch.cat(parts, dim=2)


def condition(pipe, svi: SviInput, num_frames: int, height: int, width: int, device, dtype):
    """The I2V pipeline's ``condition`` (1, 4 + z, T, h, w): the mask, then the VAE latents of
    ``condition_pixels`` (SVI 2.0 Pro: ``pro_latents``)."""
    import torch

    if svi.pad == "latent":
        latent = pro_latents(pipe, svi, num_frames, device, dtype)
    else:
        latent = _encode(pipe, condition_pixels(svi, num_frames), device, dtype)
    mask = condition_mask(num_frames, latent.shape[-2], latent.shape[-1], pipe.vae_scale_factor_temporal)
    return torch.cat([torch.from_numpy(mask)[None].to(latent.device, latent.dtype), latent], dim=1)


@contextlib.contextmanager
def conditioned(pipe, svi: SviInput):
    """``pipe`` (a WanImageToVideoPipeline) builds SVI's condition for the calls inside: its
    ``prepare_latents`` draws the same noise as its own, and hands on SVI's condition."""
    from diffusers.utils.torch_utils import randn_tensor

    if getattr(pipe.config, "expand_timesteps", False):
        raise ValueError("Stable Video Infinity's conditioning is for the Wan 2.1 / 2.2 A14B I2V pipelines")
    own = pipe.prepare_latents
    signature = inspect.signature(own)

    def prepare_latents(*args, **kwargs):
        a = signature.bind(*args, **kwargs)
        a.apply_defaults()
        p = a.arguments
        t = (p["num_frames"] - 1) // pipe.vae_scale_factor_temporal + 1
        shape = (p["batch_size"], p["num_channels_latents"], t, p["height"] // pipe.vae_scale_factor_spatial,
                 p["width"] // pipe.vae_scale_factor_spatial)
        latents = p["latents"]
        latents = (randn_tensor(shape, generator=p["generator"], device=p["device"], dtype=p["dtype"])
                   if latents is None else latents.to(device=p["device"], dtype=p["dtype"]))
        cond = condition(pipe, svi, p["num_frames"], p["height"], p["width"], latents.device, latents.dtype)
        return latents, cond.repeat(p["batch_size"], 1, 1, 1, 1)

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        del pipe.prepare_latents  # the class's own again
