"""The official backend: the ``wan`` package of Wan-Video/Wan2.1 or Wan2.2.

It gives the official solvers and code paths, and loads checkpoints in the official
layout (``models_t5_*.pth``, ``Wan2.x_VAE.pth``, DiT safetensors). The package runs on
CUDA only and calls flash-attn directly: without CUDA this backend refuses before
importing anything from it, and without flash-attn its ``flash_attention`` is rebound
to a masked PyTorch SDPA (sdpa_attention.py).

Progress and interrupt: ``generate`` has no step callback. Every official sampler
calls its DiT exactly twice per step (conditional, then unconditional), so a forward
pre-hook on the DiT(s) counts steps: progress is reported per step, and a stop request
is honoured at the next step boundary by raising out of the sampler (nothing is
decoded). Should a future version change that call pattern, progress is still
bounded by the step count and stopping still works, only at a different granularity.

Where the official code loads .pth files (T5, VAE, CLIP) it does so with its own
``torch.load``; those files come from the Wan-AI repos.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import logging
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import BackendError, Interrupted, WanError, first_line
from ..models.registry import ModelSpec
from ..models.weights import locate_weights, weights_missing_message
from .base import (
    Backend,
    BackendOptions,
    GenerateRequest,
    StepCallback,
    StopCheck,
    StopRequested,
    check_request,
    free_memory,
    to_pil,
    vace_conditioning,
)

log = logging.getLogger(__name__)

NAME = "official"
CALLS_PER_STEP = 2  # conditional + unconditional DiT pass in every official sampler

# model id -> (task in wan.configs.WAN_CONFIGS, pipeline class in the wan package)
TASKS = {
    "wan2.1-t2v-1.3b": ("t2v-1.3B", "WanT2V"),
    "wan2.1-t2v-14b": ("t2v-14B", "WanT2V"),
    "wan2.1-i2v-14b-480p": ("i2v-14B", "WanI2V"),
    "wan2.1-i2v-14b-720p": ("i2v-14B", "WanI2V"),
    "wan2.1-flf2v-14b-720p": ("flf2v-14B", "WanFLF2V"),
    "wan2.1-vace-1.3b": ("vace-1.3B", "WanVace"),
    "wan2.1-vace-14b": ("vace-14B", "WanVace"),
    "wan2.2-ti2v-5b": ("ti2v-5B", "WanTI2V"),
    "wan2.2-t2v-a14b": ("t2v-A14B", "WanT2V"),
    "wan2.2-i2v-a14b": ("i2v-A14B", "WanI2V"),
}
# Attributes holding the DiT(s) in the official pipeline classes (Wan2.2 A14B has two).
DIT_ATTRIBUTES = ("model", "high_noise_model", "low_noise_model")


def check_cuda(options: BackendOptions):
    """The CUDA device to use, or BackendError; imports torch only, never ``wan``."""
    import torch

    if options.device not in ("auto", "") and not options.device.startswith("cuda"):
        raise BackendError(f"{NAME}: needs CUDA, but device {options.device!r} was asked for")
    if not torch.cuda.is_available():
        raise BackendError(f"{NAME}: needs CUDA (the official wan package runs on NVIDIA GPUs only); "
                           "no CUDA device here")
    device = torch.device("cuda" if options.device in ("auto", "") else options.device)
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


def check_safe_torch_load(version: str) -> None:
    """The official code loads its T5/VAE/CLIP ``.pth`` files with a plain ``torch.load``,
    which is weights-only (no pickled code) only from torch 2.6 on: refuse older torch."""
    major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    if (major, minor) < (2, 6):
        raise BackendError(f"{NAME}: needs torch >= 2.6 (here {version}) so that the official .pth "
                           "checkpoints load weights-only; use the diffusers backend (safetensors)")


def lightning_wheel(package_dir: Path) -> str | None:
    """Why the ``wan`` package in ``package_dir`` is not the official code, or None.

    The ``wan22`` wheel on the package index is a rebuild whose pipeline classes default to
    ``lightning=True``: checkpoint folders replaced by hard-coded paths and the unconditional
    pass skipped (guidance silently off). Read from the source, before anything imports it.
    """
    for name in ("text2video.py", "image2video.py"):
        try:
            tree = ast.parse((package_dir / name).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                args = node.args.args[len(node.args.args) - len(node.args.defaults):]
                for arg, default in zip(args, node.args.defaults):
                    if arg.arg == "lightning" and isinstance(default, ast.Constant) and default.value is True:
                        return (f"the wan package in {package_dir.parent} is the `wan22` wheel, whose"
                                f" {name} classes default to lightning=True (hard-coded checkpoint paths, no"
                                " unconditional pass: guidance off); pip uninstall wan22 and set the official"
                                " repo path (DEFORUM_WAN_OFFICIAL_REPO) to a clone of Wan-Video/Wan2.2")
    return None


# What Wan2.2's wan/__init__.py imports beyond its requirements.txt: the speech-to-video
# and animate pipelines, the packages their modules import at load, and the requirement file
# that lists them in the Wan2.2 repo.
EXTRA_PIPELINES = {
    "speech2video": (("decord", "librosa"), "requirements_s2v.txt"),
    "animate": (("decord", "peft"), "requirements_animate.txt"),
}


def missing_extras(package_dir: Path) -> str | None:
    """Why the ``wan`` package in ``package_dir`` cannot import for want of its speech and
    animate pipelines' packages (one line: each missing package and the files listing them),
    or None. Looks them up without importing anything."""
    try:
        init = (package_dir / "__init__.py").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    missing: list[str] = []
    files: list[str] = []
    for pipeline, (modules, requirements) in EXTRA_PIPELINES.items():
        if not re.search(rf"^from \.{pipeline} import", init, re.M):
            continue
        lacking = [m for m in modules if importlib.util.find_spec(m) is None]
        if lacking:
            missing += [m for m in lacking if m not in missing]
            files.append(requirements)
    if not missing:
        return None
    return (f"the wan package in {package_dir.parent} imports its speech and animate pipelines, which need "
            f"{' and '.join(missing)} (not installed): pip install -r {' -r '.join(files)} from that repo, "
            f"or pip install {' '.join(missing)}")


def _wan_package_dir(repo_path: str | None) -> Path | None:
    if repo_path:
        return Path(repo_path).expanduser().resolve() / "wan"
    spec = importlib.util.find_spec("wan")  # finds, does not run, the package
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def import_wan(repo_path: str | None, task: str):
    """Import the official ``wan`` package (from ``repo_path`` when given) that knows ``task``."""
    package_dir = _wan_package_dir(repo_path)
    refused = (lightning_wheel(package_dir) or missing_extras(package_dir)) if package_dir is not None else None
    if refused:
        raise BackendError(f"{NAME}: {refused}")
    if repo_path:
        root = Path(repo_path).expanduser().resolve()
        if not (root / "wan" / "__init__.py").is_file():
            raise BackendError(f"{NAME}: no wan package in {root} (expected a Wan2.1 or Wan2.2 clone)")
        loaded = sys.modules.get("wan")
        if loaded is not None and not Path(loaded.__file__).resolve().is_relative_to(root):
            raise BackendError(f"{NAME}: another wan package is already loaded from "
                               f"{Path(loaded.__file__).parent}; restart to use {root}")
        if str(root) not in sys.path:
            # The one place the project extends sys.path: a clone is not an installed package.
            sys.path.insert(0, str(root))
    try:
        wan = importlib.import_module("wan")
        configs = importlib.import_module("wan.configs")
    except ImportError as e:
        if getattr(e, "name", None) == "wan":
            raise BackendError(f"{NAME}: the wan package is not installed; set the official repo path"
                               " (DEFORUM_WAN_OFFICIAL_REPO) to a clone of Wan-Video/Wan2.1 or Wan2.2") from e
        raise BackendError(f"{NAME}: the wan package needs {getattr(e, 'name', None) or e} "
                           f"({e}); install the official repo's requirements (Wan2.2: requirements.txt, "
                           "requirements_s2v.txt and requirements_animate.txt)") from e
    except Exception as e:  # the package runs code at import (CUDA, distributed): keep the reason
        raise BackendError(f"{NAME}: importing wan failed: {type(e).__name__}: {first_line(e)}") from e
    if task not in getattr(configs, "WAN_CONFIGS", {}):
        raise BackendError(f"{NAME}: the wan package in {Path(wan.__file__).parent.parent} has no task "
                           f"{task!r} (Wan2.1 code runs Wan2.1 models, Wan2.2 code Wan2.2 models)")
    return wan


def use_sdpa_without_flash_attn() -> bool:
    """Rebind ``flash_attention`` in every loaded ``wan`` module when flash-attn is absent.

    The model modules import it by name (``from .attention import flash_attention``), so
    the attention module alone is not enough. Returns True when it rebound.
    """
    from .sdpa_attention import sdpa_flash_attention

    attention = importlib.import_module("wan.modules.attention")
    if getattr(attention, "FLASH_ATTN_2_AVAILABLE", False) or getattr(attention, "FLASH_ATTN_3_AVAILABLE", False):
        return False
    original = attention.flash_attention
    if original is sdpa_flash_attention:
        return True
    for name, module in list(sys.modules.items()):
        if (name == "wan" or name.startswith("wan.")) and getattr(module, "flash_attention", None) is original:
            module.flash_attention = sdpa_flash_attention
    return True


class OfficialBackend(Backend):
    name = NAME
    takes_camera_frames = True  # wan/vace.py masks each frame (mask > 0.5: generate)

    def __init__(self, spec: ModelSpec, options: BackendOptions | None = None):
        self.spec = spec
        self.options = options or BackendOptions()
        self.options.check()
        self.notes: list[str] = []
        self.model = None
        # Cheap refusals first, in the order a user can act on them.
        if spec.weights:
            raise BackendError(f"{NAME}: a model given as a file or folder loads in the diffusers backend")
        if spec.tiny:
            raise BackendError(f"{NAME}: no official-layout weights for tiny models")
        if spec.id not in TASKS:
            raise BackendError(f"{NAME}: {spec.id} has no official task")
        if self.options.loras:
            raise BackendError(f"{NAME}: LoRA is not supported by the official code; use diffusers")
        self.device = check_cuda(self.options)
        import torch

        check_safe_torch_load(torch.__version__)
        self.path = locate_weights(spec, self.options.models_dir, "official")
        if self.path is None:
            raise BackendError(f"{NAME}: {weights_missing_message(spec, self.options.models_dir, 'official')}")
        self.task, class_name = TASKS[spec.id]
        wan = import_wan(self.options.official_repo_path, self.task)
        if use_sdpa_without_flash_attn():
            self._note("flash-attn not installed; official attention runs on PyTorch SDPA")
        self._describe_ignored_options()
        self.offload_model = self.options.offload != "none"
        cls = getattr(wan, class_name)
        config = wan.configs.WAN_CONFIGS[self.task]
        wanted = dict(config=config, checkpoint_dir=str(self.path), device_id=self.device.index, rank=0,
                      t5_cpu=self.options.offload in ("sequential", "group"),
                      convert_model_dtype=True)  # Wan2.2: DiT in bf16, as its README runs on one GPU
        accepted = inspect.signature(cls.__init__).parameters
        wanted.update(self._parallel_kwargs(accepted))
        try:
            self.model = cls(**{k: v for k, v in wanted.items() if k in accepted})
        except Exception as e:
            self.close()
            raise BackendError(f"{NAME}: loading {self.path} failed: {type(e).__name__}: "
                               f"{first_line(e)}") from e
        self.class_name = class_name
        self.two_experts = isinstance(config.get("sample_guide_scale"), (tuple, list))

    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("%s: %s", NAME, text)

    def _parallel_kwargs(self, accepted) -> dict:
        """Extra constructor arguments; the per-rank backend of multigpu.py adds FSDP/SP here."""
        return {}

    def _describe_ignored_options(self) -> None:
        o = self.options
        if o.dtype not in ("auto", "bf16", "bfloat16"):
            self._note(f"dtype {o.dtype!r} ignored: the official code runs in its config's dtype (bf16)")
        if o.vae_tiling:
            self._note("vae_tiling is not available in the official code; ignored")
        if o.attention not in ("auto", "", "default"):
            self._note(f"attention {o.attention!r} ignored: the official code uses flash-attn or SDPA")
        if o.offload in ("sequential", "group"):
            self._note(f"offload {o.offload!r}: the official code offloads whole models (and T5 to CPU)")

    def _dits(self):
        import torch

        for attr in DIT_ATTRIBUTES:
            module = getattr(self.model, attr, None)
            if isinstance(module, torch.nn.Module):
                yield module

    def _run(self, req: GenerateRequest):
        shift = req.shift if req.shift is not None else self.spec.shift
        common = dict(frame_num=req.num_frames, shift=float(shift), sample_solver="unipc",
                      sampling_steps=int(req.steps), guide_scale=guide_scale(req, self.spec, self.two_experts),
                      n_prompt=req.negative_prompt, seed=int(req.seed), offload_model=self.offload_model)
        size = (req.width, req.height)
        # +1 pixel: the official size search floors sqrt(max_area * aspect); exactly W*H can
        # land a hair below H in floating point and lose a whole latent row.
        max_area = req.width * req.height + 1
        name = self.class_name
        if name == "WanT2V":
            return self.model.generate(req.prompt, size=size, **common)
        if name == "WanI2V":
            return self.model.generate(req.prompt, to_pil(req.image), max_area=max_area, **common)
        if name == "WanFLF2V":
            return self.model.generate(req.prompt, to_pil(req.image), to_pil(req.last_image),
                                       max_area=max_area, **common)
        if name == "WanTI2V":
            image = to_pil(req.image) if req.mode == "i2v" else None
            return self.model.generate(req.prompt, img=image, size=size, max_area=max_area, **common)
        if name == "WanVace":
            frames, masks = _vace_tensors(req, self.device)
            return self.model.generate(req.prompt, frames, masks, [None], size=size, **common)
        raise WanError(f"{NAME}: no call for {name}")

    def generate(self, req: GenerateRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None) -> np.ndarray:
        if self.model is None:
            raise WanError(f"{NAME}: the backend for {self.spec.id} is closed")
        check_request(req, self.spec)
        if req.mode == "v2v":
            raise WanError(f"{NAME}: no video-to-video in Wan's own code; Video Input needs wan_backend diffusers")
        if should_stop is not None and should_stop():
            raise Interrupted("stopped before the first step")
        calls = [0]

        def before_dit(module, args):
            if calls[0] % CALLS_PER_STEP == 0:
                done = min(calls[0] // CALLS_PER_STEP, req.steps)
                if done and on_step is not None:
                    on_step(done, req.steps)
                if should_stop is not None and should_stop():
                    raise StopRequested(done)
            calls[0] += 1

        handles = [dit.register_forward_pre_hook(before_dit) for dit in self._dits()]
        try:
            video = self._run(req)
        except StopRequested as stop:
            free_memory()
            raise Interrupted(f"stopped after step {stop.step} of {req.steps}") from None
        finally:
            for handle in handles:
                handle.remove()
        if on_step is not None:
            on_step(req.steps, req.steps)
        return _to_frames(video, req)

    def close(self) -> None:
        self.model = None
        free_memory()


def guide_scale(req: GenerateRequest, spec: ModelSpec, two_experts: bool):
    """``generate``'s guide_scale: one float, or for two experts the official tuple, which is
    (low-noise expert, high-noise expert); the request's are diffusers' (guidance_scale for
    the high-noise expert, guidance_scale_2 for the low-noise one)."""
    g = float(req.guidance_scale)
    if not two_experts:
        return g
    g2 = req.guidance_scale_2 if req.guidance_scale_2 is not None else spec.guidance_2
    return (float(g2 if g2 is not None else g), g)


def _vace_tensors(req: GenerateRequest, device):
    """Official VACE inputs (``vace_conditioning``, as the diffusers backend gives them):
    frames in [-1, 1] (grey 0 where generated), mask 1 = generate, 0 = keep."""
    import torch

    shown, kept = vace_conditioning(req)
    frames = torch.zeros(3, req.num_frames, req.height, req.width)
    for i, image in enumerate(shown):
        if image is not None:
            frames[:, i] = torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1) * 2 - 1
    masks = torch.from_numpy(~kept).float().unsqueeze(0)
    return [frames.to(device)], [masks.to(device)]


def _to_frames(video, req: GenerateRequest) -> np.ndarray:
    """(3, F, H, W) in [-1, 1] -> (F, H, W, 3) float32 in [0, 1], at the requested size."""
    import torch.nn.functional as F

    if video is None:
        raise BackendError(f"{NAME}: the model returned no video (not rank 0?)")
    video = video.detach().float().clamp(-1, 1)
    if tuple(video.shape[2:]) != (req.height, req.width):
        log.warning("%s: output %sx%s resized to %sx%s", NAME, video.shape[3], video.shape[2],
                    req.width, req.height)
        video = F.interpolate(video.permute(1, 0, 2, 3), size=(req.height, req.width), mode="bilinear",
                              align_corners=False).permute(1, 0, 2, 3)
    if video.shape[1] != req.num_frames:
        raise BackendError(f"{NAME}: got {video.shape[1]} frames, expected {req.num_frames}")
    frames = ((video + 1) / 2).permute(1, 2, 3, 0).cpu()
    return np.ascontiguousarray(frames.numpy(), dtype=np.float32)
