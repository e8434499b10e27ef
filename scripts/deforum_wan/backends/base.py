"""What every backend takes and returns; request checks shared by all of them.

Frames cross this boundary as numpy float32 in [0, 1], (F, H, W, 3) for videos and
(H, W, 3) for images, so the render loop never sees a backend's tensor conventions.
Importing this module does not import torch.
"""
from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..errors import WanError
from ..models.registry import ModelSpec
from ..pixels import to_uint8
from .camera_guide import PathGuide, check_guide
from .svi import SviInput

StepCallback = Callable[[int, int], None]  # (steps done, steps total)
StopCheck = Callable[[], bool]

MODES = ("t2v", "i2v", "v2v")
DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


@dataclass
class GenerateRequest:
    mode: str  # "t2v" | "i2v" | "v2v" (restyle ``video``: a text-to-video model only)
    prompt: str
    negative_prompt: str
    num_frames: int  # 4n+1; the result has exactly this many frames
    width: int
    height: int
    seed: int
    guidance_scale: float  # two-expert models: the high-noise expert
    steps: int
    image: Optional[np.ndarray] = None  # (H, W, 3) float32 in [0, 1]: the first frame (i2v)
    guidance_scale_2: Optional[float] = None  # low-noise expert; None: the model's default
    shift: Optional[float] = None  # flow shift; None: the model's default
    last_image: Optional[np.ndarray] = None  # (H, W, 3): the last frame (FLF2V, VACE)
    # (N, H, W, 3): leading frames kept as they are (VACE only): the overlap of the previous
    # window as real conditioning. When set it replaces ``image``.
    context: Optional[np.ndarray] = None
    # (F, H, W, 3) and (F, H, W): the camera-warped frames after the context, and
    # the share of each pixel to keep from it (VACE's strict camera look; kept where
    # ``camera_kept``, generated elsewhere). Only backends with ``takes_camera_frames`` take them.
    vace_frames: Optional[np.ndarray] = None
    vace_keep: Optional[np.ndarray] = None
    # Warped-path guidance (camera_guide.py): every frame along the camera, followed early in
    # the schedule. Only backends with ``takes_path_guide`` take it.
    path_guide: Optional[PathGuide] = None
    # Stable Video Infinity's conditioning (svi.py) in place of ``image``'s. Only backends with
    # ``takes_svi`` take it.
    svi: Optional[SviInput] = None
    # v2v: the (num_frames, H, W, 3) video to restyle, and the share of the steps that denoise
    # it (diffusers' WanVideoToVideoPipeline strength: 1 regenerates, near 0 keeps it).
    video: Optional[np.ndarray] = None
    strength: Optional[float] = None

    def leading_frames(self) -> list[np.ndarray]:
        """The frames the window starts from and keeps: the VACE context, else the image."""
        if self.context is not None:
            return list(self.context)
        return [self.image] if self.image is not None else []


@dataclass
class BackendOptions:
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    vae_dtype: str = "float32"
    offload: str = "none"  # none | model | sequential | group
    vae_tiling: bool = False
    attention: str = "auto"  # auto: the library's default (PyTorch SDPA)
    loras: list[tuple[str, float, str]] = field(default_factory=list)  # (.safetensors path, weight, expert)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    official_repo_path: Optional[str] = None  # a Wan2.1/Wan2.2 clone providing module `wan`
    models_dir: Optional[str] = None
    # Speed features (presets.py fills them from ``wan_preset``); each is detected at load
    # and noted, never fatal, where the machine or the installed diffusers lacks it.
    preset: str = "quality"  # the name notes are prefixed with
    cache: str = "none"  # none | first_block | taylorseer | mag | faster (diffusers cache hooks)
    cache_threshold: Optional[float] = None  # None: the cache's default for the model
    compile: bool = False  # regional torch.compile of the repeated transformer blocks (CUDA)
    layerwise_fp8: bool = False  # float8 weight storage, upcast per layer (CUDA)
    distill_lora: str = "off"  # off | auto (from the models dir) | path: 4 steps, guidance 1
    gpus: int = 1  # > 1: one clip on several GPUs through torchrun (backends/multigpu.py)

    def check(self) -> None:
        """What the settings reader does not check: the offload, cache, distill LoRA, LoRA
        weight and GPU count come from config/keys.py's readers (or the presets' table) and
        are trusted as they are."""
        for name, value in (("dtype", self.dtype), ("vae_dtype", self.vae_dtype)):
            if value != "auto" and value not in DTYPES:
                raise WanError(f"{name} must be auto, bfloat16, float16 or float32, not {value!r}")
        for path, *_ in self.loras:
            if not str(path).endswith(".safetensors"):
                raise WanError(f"LoRA {path}: only .safetensors files are loaded")


class Backend:
    """A loaded model. ``generate`` renders one window; ``close`` frees its memory."""

    name: str = ""
    spec: ModelSpec
    takes_path_guide = False  # takes GenerateRequest.path_guide (a step hook to hold the path)
    takes_svi = False  # builds GenerateRequest.svi's conditioning (svi.py)
    takes_svi_pro = False  # builds SVI 2.0 Pro's (latent padding: Wan2.2 I2V-A14B)
    # (z, 1, h, w): the last latent frame of the last window generated, as the denoiser left it
    # (SVI 2.0 Pro carries it to the next window); None where a backend cannot give it.
    last_latent: Optional[np.ndarray] = None
    takes_camera_frames = False  # gives VACE GenerateRequest.vace_frames/vace_keep (``vace_conditioning``)
    # Adjustments made while loading (an offload mode that does not apply, an attention
    # backend that is missing): shown to the user in the load report.
    notes: list[str]

    def generate(self, req: GenerateRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        free_memory()

    # Residency: a pool of two loaded models (T2V + its continuation) moves the idle one's
    # big part off the GPU when both do not fit. Backends that cannot do this keep it.
    def bytes_on_device(self) -> int:
        """What ``park`` would free on the accelerator (0: nothing to move)."""
        return 0

    def bytes_to_unpark(self) -> int:
        """What ``unpark`` would put back on the accelerator (0: not parked)."""
        return 0

    def park(self) -> str | None:
        """Move the big part (the transformer) to the CPU; a note for the load report."""
        return None

    def unpark(self) -> None:
        """Back onto the device before generating (a no-op unless parked)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StopRequested(Exception):
    """Raised from a step hook to leave the sampler now (no further steps, no VAE decode);
    each backend turns it into ``Interrupted`` with the step it stopped after."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks (only if torch is already loaded)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_image(name: str, image, width: int, height: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise WanError(f"{name} must be an (H, W, 3) RGB array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise WanError(f"{name} must be float in [0, 1], got {arr.dtype}")
    if not np.isfinite(arr).all():
        raise WanError(f"{name} contains NaN or infinite values")
    if arr.shape[:2] != (height, width):
        # Backends resize silently otherwise, which would shift the chain's frames.
        raise WanError(f"{name} is {arr.shape[1]}x{arr.shape[0]}, the request is {width}x{height}")
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def check_request(req: GenerateRequest, spec: ModelSpec, size_multiple: int | None = None) -> None:
    """Refuse what a model cannot do, with one line the user can act on (every backend's
    opening check of ``generate``)."""
    _check_mode(req, spec)
    _check_shape(req, spec, size_multiple or spec.size_multiple)
    _check_inputs(req)


def _check_mode(req: GenerateRequest, spec: ModelSpec) -> None:
    if req.mode not in MODES:
        raise WanError(f"mode must be t2v, i2v or v2v, not {req.mode!r}")
    _check_v2v(req, spec)
    if req.mode == "t2v" and not spec.can_t2v:
        raise WanError(f"{spec.id} cannot start from text alone (it needs an image)")
    if req.mode == "t2v" and (req.image is not None or req.context is not None):
        raise WanError("t2v takes no image; use mode i2v to start from one")
    if req.mode == "i2v":
        if not spec.can_i2v:
            raise WanError(f"{spec.id} cannot continue from an image")
        if req.image is None and req.context is None:
            raise WanError("i2v needs an image")
    if spec.kind == "flf2v" and req.last_image is None:
        raise WanError(f"{spec.id} needs a last image as well as the first (first-last-frame model)")
    if req.last_image is not None and spec.kind not in ("flf2v", "vace"):
        raise WanError(f"{spec.id} cannot take a last image; use an FLF2V or VACE model")
    if req.context is not None and spec.kind != "vace":
        raise WanError(f"{spec.id} cannot take several context frames; use a VACE model")
    if (req.vace_frames is None) != (req.vace_keep is None) or (req.vace_frames is not None and spec.kind != "vace"):
        raise WanError(f"{spec.id}: a camera guide needs a VACE model, with its frames and keep mask both given")


def _check_v2v(req: GenerateRequest, spec: ModelSpec) -> None:
    if (req.mode == "v2v") != (req.video is not None):
        raise WanError("v2v takes a video to restyle, and only v2v does")
    if req.mode != "v2v":
        return
    if spec.kind != "t2v":
        raise WanError(f"{spec.id} cannot restyle a video: video-to-video takes a text-to-video model")
    if req.image is not None or req.context is not None or req.last_image is not None:
        raise WanError("v2v starts from its video; give the frames to keep as its first frames")
    if req.strength is None or not 0 < req.strength <= 1:
        raise WanError(f"v2v needs a strength in (0, 1], not {req.strength!r}")


def _check_shape(req: GenerateRequest, spec: ModelSpec, multiple: int) -> None:
    if req.num_frames < 1 or req.num_frames % 4 != 1:
        raise WanError(f"num_frames must be 4n+1 (1, 5, 9, ..., 81), not {req.num_frames}")
    if req.width <= 0 or req.height <= 0 or req.width % multiple or req.height % multiple:
        raise WanError(f"{spec.id} needs width and height that are multiples of {multiple}, "
                       f"not {req.width}x{req.height}")
    if req.steps < 1:
        raise WanError(f"steps must be at least 1, not {req.steps}")
    if not 0 <= int(req.seed) < 2**63:
        raise WanError(f"seed must be between 0 and 2**63-1, not {req.seed}")


def _check_inputs(req: GenerateRequest) -> None:
    for name in ("image", "last_image"):
        value = getattr(req, name)
        if value is not None:
            check_image(name, value, req.width, req.height)
    if req.video is not None:
        video = np.asarray(req.video)
        if video.ndim != 4 or video.shape[0] != req.num_frames:
            raise WanError(f"video must be (num_frames, H, W, 3) with num_frames {req.num_frames}, got {video.shape}")
        for i, frame in enumerate(video):
            check_image(f"video frame {i}", frame, req.width, req.height)
    if req.context is not None:
        ctx = np.asarray(req.context)
        if ctx.ndim != 4 or not 1 <= ctx.shape[0] < req.num_frames:
            raise WanError(f"context must be (N, H, W, 3) with 1 <= N < num_frames, got {ctx.shape}")
        for i, frame in enumerate(ctx):
            check_image(f"context frame {i}", frame, req.width, req.height)
    if req.path_guide is not None:
        check_guide(req.path_guide, req.num_frames, req.height, req.width)


def camera_kept(share) -> np.ndarray:
    """Where a VACE window keeps the camera's warped pixels (True) rather than generating
    them: a share of at least one half, VACE's own mask threshold. Backends mask exactly
    these and the render loop pastes exactly these, no others."""
    return np.asarray(share) >= 0.5


def vace_conditioning(req: GenerateRequest) -> tuple[list[Optional[np.ndarray]], np.ndarray]:
    """What every backend gives VACE: per frame the (H, W, 3) image it is shown (None: grey,
    generated) and (F, H, W) where it keeps that image. The leading frames and the last image
    are kept whole; the camera's warped frames follow the leading ones, kept where ``camera_kept``."""
    frames: list[Optional[np.ndarray]] = [None] * req.num_frames
    kept = np.zeros((req.num_frames, req.height, req.width), bool)
    lead = req.leading_frames()
    for i, frame in enumerate(lead):
        frames[i], kept[i] = frame, True
    if req.vace_frames is not None:
        for j, (frame, share) in enumerate(zip(req.vace_frames, req.vace_keep)):
            i = len(lead) + j
            if i < req.num_frames:
                frames[i], kept[i] = frame, camera_kept(share)
    if req.last_image is not None:
        frames[-1], kept[-1] = req.last_image, True
    return frames, kept


def to_pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(to_uint8(image), "RGB")


def torch_dtype(name: str, device_type: str):
    """'auto' is bfloat16 on CUDA (what Wan is trained and shipped in) and float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device_type == "cuda" else torch.float32
    return getattr(torch, DTYPES[name])


def torch_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise WanError(f"device {name!r} is not a device name ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WanError(f"device {name!r} asked for, but CUDA is not available here")
    return device
