"""Stable Video Infinity's image-to-video conditioning, built as its own code builds it
(vita-epfl/Stable-Video-Infinity, diffsynth/pipelines/svi_video.py,
``SVIVideoPipeline.encode_images_adaptive``; the modes from scripts/test/svi_film.sh and
svi_shot.sh): the window's leading frames are the previous window's last ``motion`` frames
(not one frame), the rest of the VAE input is zeros (``film``) or the shot's anchor image
repeated (``shot``) instead of zeros, and the mask marks the first frame alone as given, as
SVI's does. The CLIP image is the first motion frame. SVI's LoRAs are trained on exactly this
input; Wan's own I2V conditioning is the ``film`` layout with one frame.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import numpy as np

# mode -> (motion frames, padding after them); SVI's test scripts: svi_film.sh
# (--num_motion_frames 5 --ref_pad_num 0), svi_shot.sh (--num_motion_frames 1 --ref_pad_num -1)
MODES = {"film": (5, "zeros"), "shot": (1, "anchor")}


@dataclass
class SviInput:
    motion: np.ndarray  # (N, H, W, 3) float32 in [0, 1]: the previous window's last frames
    anchor: np.ndarray | None  # (H, W, 3): the shot's reference image (``anchor`` padding)
    pad: str  # "zeros" | "anchor"


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


def condition(pipe, svi: SviInput, num_frames: int, height: int, width: int, device, dtype):
    """The I2V pipeline's ``condition`` (1, 4 + z, T, h, w): the mask, then the VAE latents of
    ``condition_pixels`` normalised as diffusers' WanImageToVideoPipeline normalises its own."""
    import torch
    from diffusers.pipelines.wan.pipeline_wan_i2v import retrieve_latents

    vae = pipe.vae
    pixels = torch.from_numpy(condition_pixels(svi, num_frames))[None]
    pixels = pixels.to(device=next(vae.parameters()).device, dtype=vae.dtype)
    latent = retrieve_latents(vae.encode(pixels), sample_mode="argmax").to(device=device, dtype=dtype)
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(device, dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(device, dtype)
    latent = (latent - mean) * inv_std
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
