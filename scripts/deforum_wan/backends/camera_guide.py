"""Warped-path camera guidance for diffusers' Wan pipelines (training-free: Time-to-Move).

A window's camera path (its first frame warped along Deforum's camera, with the share of
each pixel the warp still covers) is encoded with the pipeline's own VAE. Denoising starts
``free`` steps into the schedule from the path noised to that level; until step ``lock`` the
latent cells the warp covers are put back onto the path, noised to the next step's level,
after every step; elsewhere, and after ``lock`` everywhere, Wan is free to add motion, light
and detail. One helper serves WanPipeline, WanImageToVideoPipeline (Wan 2.1 I2V, Wan 2.2
A14B's two experts, TI2V) and WanVACEPipeline: all of them call ``scheduler.set_timesteps``,
take ``latents`` and call ``callback_on_step_end`` after each scheduler step.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from ..errors import WanError

COVERED = 0.999  # a pixel counts as the camera's when the warp covers this much of it


@dataclass
class PathGuide:
    """What a window follows: (F, H, W, 3) frames in [0, 1] along the camera, (F, H, W) share
    of each pixel the warp covers, and the fractions of the steps to skip (``free``) and to
    hold the covered cells on the path (``lock``)."""
    frames: np.ndarray
    cover: np.ndarray
    free: float
    lock: float


def guide_steps(free: float, lock: float, steps: int) -> tuple[int, int]:
    """Whole steps for the fractions: the method's 2 and 5 of 50 from 0.04 and 0.10; a lock
    above zero holds at least one step (a 4-step distilled schedule still follows)."""
    first = min(steps, max(0, round(free * steps)))
    until = min(steps, max(first, math.ceil(lock * steps - 1e-9)))
    return first, until


def check_guide(guide: PathGuide, num_frames: int, height: int, width: int) -> None:
    frames, cover = np.asarray(guide.frames), np.asarray(guide.cover)
    if frames.shape != (num_frames, height, width, 3) or cover.shape != (num_frames, height, width):
        raise WanError(f"camera path must be {num_frames} frames of {width}x{height} with a cover mask each,"
                       f" not {frames.shape} and {cover.shape}")
    if not 0 <= guide.free <= 1 or not 0 <= guide.lock <= 1 or guide.lock < guide.free:
        raise WanError(f"camera free/lock must be fractions of the steps with free <= lock, not"
                       f" {guide.free:g}/{guide.lock:g}")


def flow_matching(scheduler) -> bool:
    """Wan's schedulers are flow matching (x_s = (1 - s) x0 + s noise); the noised path is
    only right for those."""
    config = scheduler.config
    return bool(config.get("use_flow_sigmas")) or type(scheduler).__name__.startswith("FlowMatch")


class PathGuidance:
    """One window's guidance: the encoded path and mask, the start latents, the sliced schedule
    and the step callback. Build it after the pipeline's scheduler is final (flow shift set)."""

    def __init__(self, pipe, guide: PathGuide, steps: int, seed: int, device):
        import torch

        if not flow_matching(pipe.scheduler):
            raise WanError(f"camera guidance needs a flow-matching scheduler, not {type(pipe.scheduler).__name__}")
        self.free, self.lock = guide_steps(guide.free, guide.lock, steps)
        self.steps = steps
        self.device = device
        self.clean = encode_path(pipe, guide.frames, device)
        self.mask = latent_mask(guide.cover, pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial,
                                device)
        generator = torch.Generator(device=device).manual_seed(int(seed) ^ 0x5EED)  # not the pipeline's noise
        self.noise = torch.randn(self.clean.shape, generator=generator, device=device, dtype=torch.float32)
        self.sigmas = None  # the sliced schedule's noise levels, set by ``schedule``

    def noised(self, sigma: float):
        return (1.0 - sigma) * self.clean + sigma * self.noise

    def start_latents(self, scheduler):
        """The path noised to the level of step ``free`` (the whole frame starts there)."""
        full = _sigmas_of(scheduler, self.steps)
        return self.noised(float(full[self.free]))

    @contextlib.contextmanager
    def schedule(self, scheduler):
        """While the pipeline runs, ``set_timesteps`` leaves out the first ``free`` steps
        (timesteps and sigmas alike; the multistep solvers restart at first order there)."""
        original = scheduler.set_timesteps

        def set_timesteps(*args, **kwargs):
            original(*args, **kwargs)
            scheduler.timesteps = scheduler.timesteps[self.free:]
            scheduler.sigmas = scheduler.sigmas[self.free:]
            scheduler.num_inference_steps = len(scheduler.timesteps)
            self.sigmas = [float(s) for s in scheduler.sigmas]

        scheduler.set_timesteps = set_timesteps
        try:
            yield
        finally:
            del scheduler.set_timesteps  # the class's own again

    def locked(self, i: int) -> bool:
        """Whether the latents after step ``i`` of the sliced schedule go back onto the path."""
        return self.free + i < self.lock

    def after_step(self, i: int, latents):
        """Covered cells onto the path at the next step's noise level; the rest untouched."""
        if not self.locked(i):
            return latents
        target = self.noised(self.sigmas[i + 1]).to(latents.dtype)
        mask = self.mask.to(latents.dtype)
        return latents * (1 - mask) + target * mask


def _sigmas_of(scheduler, steps: int) -> list[float]:
    """The full schedule's noise levels (steps + 1, the last one 0), from a copy of the
    scheduler so the pipeline's own is untouched."""
    copy = type(scheduler).from_config(scheduler.config)
    copy.set_timesteps(steps, device="cpu")
    return [float(s) for s in copy.sigmas]


def encode_path(pipe, frames: np.ndarray, device):
    """The path's latents, normalised as the pipelines normalise theirs (retrieve_latents'
    argmax: the distribution's mode)."""
    import torch

    vae = pipe.vae
    video = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(3, 0, 1, 2)[None]
    video = (video * 2 - 1).to(device=device, dtype=vae.dtype)
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mode().float()
    z = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device).view(1, z, 1, 1, 1)
    return (latents - mean) / std


def latent_mask(cover: np.ndarray, temporal: int, spatial: int, device):
    """(F, H, W) pixel cover -> (1, 1, T', H/s, W/s): a latent cell is the camera's only where
    every pixel it encodes is (latent frame 0 is frame 0, then ``temporal`` frames each)."""
    import torch
    import torch.nn.functional as F

    covered = torch.from_numpy((np.asarray(cover) >= COVERED).astype(np.float32))
    frames = covered.shape[0]
    if (frames - 1) % temporal:
        raise WanError(f"camera path of {frames} frames does not fit the VAE's {temporal}-frame stride")
    rest = covered[1:].reshape(-1, temporal, *covered.shape[1:]).amin(dim=1)
    grouped = torch.cat([covered[:1], rest])[:, None]  # (T', 1, H, W)
    cells = -F.max_pool2d(-grouped, spatial)  # min pool
    return cells.permute(1, 0, 2, 3)[None].to(device)
