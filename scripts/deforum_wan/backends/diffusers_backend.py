"""The diffusers backend: WanPipeline, WanImageToVideoPipeline and WanVACEPipeline.

One folder in the diffusers layout (hub download, models dir or a tiny model built by
tiny.py: the same code loads all three) becomes one pipeline. Progress and interrupt
come from ``callback_on_step_end``; stopping raises out of the callback so the
remaining steps and the VAE decode are skipped.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
from pathlib import Path

import numpy as np

from ..errors import BackendError, Interrupted, WanError
from ..models import ModelSpec, locate_weights, resolve_models_dir, weights_missing_message
from .base import (Backend, BackendOptions, GenerateRequest, StepCallback, StopCheck,
                   check_request, free_memory, to_pil, torch_device, torch_dtype)

log = logging.getLogger(__name__)

NAME = "diffusers"
# Friendly names for diffusers' attention backends (diffusers.models.attention_dispatch).
ATTENTION_ALIASES = {"sdpa": "native", "torch": "native", "flash-attn": "flash", "flash_attn": "flash",
                     "flash-attn-3": "_flash_3", "sageattention": "sage", "xformers": "xformers"}


class _StopRequested(Exception):
    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def _pipeline_classes(spec: ModelSpec) -> dict[str, str]:
    """Pipeline class per mode. TI2V is one model behind two pipeline classes."""
    if spec.kind == "vace":
        return {"t2v": "WanVACEPipeline", "i2v": "WanVACEPipeline"}
    if spec.kind in ("i2v", "flf2v"):
        return {"i2v": "WanImageToVideoPipeline"}
    if spec.kind == "ti2v":
        return {"t2v": "WanPipeline", "i2v": "WanImageToVideoPipeline"}
    return {"t2v": "WanPipeline"}


def weights_folder(spec: ModelSpec, options: BackendOptions) -> Path:
    """The diffusers-layout folder for ``spec``; tiny models are built here on first use."""
    if spec.tiny:
        from ..tiny import ensure_tiny_model

        return ensure_tiny_model(spec.id, resolve_models_dir(options.models_dir))
    path = locate_weights(spec, options.models_dir, "diffusers")
    if path is None:
        raise BackendError(f"{NAME}: {weights_missing_message(spec, options.models_dir, 'diffusers')}")
    return path


@contextlib.contextmanager
def _quiet_loading():
    """Loading a local folder prints per-file progress bars and advice (e.g. "install
    torchvision") that bury our own progress bar; errors still raise."""
    import diffusers
    import transformers

    d_level, t_level = diffusers.logging.get_verbosity(), transformers.logging.get_verbosity()
    diffusers.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers.logging.set_verbosity(d_level)
        transformers.logging.set_verbosity(t_level)
        diffusers.logging.enable_progress_bar()
        transformers.logging.enable_progress_bar()


def _dtype_kwargs(dtype_map: dict) -> dict:
    # diffusers 0.40 renamed torch_dtype to dtype (the old name warns).
    import diffusers
    from packaging.version import Version

    key = "dtype" if Version(diffusers.__version__).release >= (0, 40) else "torch_dtype"
    return {key: dtype_map}


class DiffusersBackend(Backend):
    name = NAME

    def __init__(self, spec: ModelSpec, options: BackendOptions | None = None, path=None):
        self.spec = spec
        self.options = options or BackendOptions()
        self.options.check()
        self.notes: list[str] = []
        self.path = Path(path) if path is not None else weights_folder(spec, self.options)
        self.device = torch_device(self.options.device)
        self.dtype = torch_dtype(self.options.dtype, self.device.type)
        self.vae_dtype = torch_dtype(self.options.vae_dtype, self.device.type)
        self.offload = self.options.offload
        if self.offload != "none" and self.device.type == "cpu":
            self._note(f"offload {self.offload!r} does not apply on the CPU; running without offload")
            self.offload = "none"
        self._classes = _pipeline_classes(spec)
        self._pipes: dict[str, object] = {}  # class name -> pipeline, sharing one set of modules
        self._active = None
        first = self._classes.get("t2v") or self._classes["i2v"]
        try:
            pipe = self._load(first)
            self._pipes[first] = pipe
            self._load_loras(pipe)
            self._configure(pipe)
            self._place(pipe)
            self._active = pipe
        except WanError:
            self.close()
            raise
        except Exception as e:  # keep the reason, free what was loaded
            self.close()
            raise BackendError(f"{NAME}: loading {self.path} failed: {type(e).__name__}: "
                               f"{_first_line(e)}") from e
        # The generator lives where the latents are made (the execution device).
        self.generator_device = self.device

    @property
    def pipe(self):
        return self._active

    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("%s: %s", NAME, text)

    def _load(self, class_name: str):
        import diffusers
        import torch

        # Wan's VAE and CLIP image encoder are kept in float32 by default, as diffusers'
        # Wan docs do: bf16 there costs colour accuracy for little memory.
        dtypes = {"default": self.dtype, "vae": self.vae_dtype, "image_encoder": torch.float32}
        with _quiet_loading():  # the getattr imports the pipeline module, which warns too
            cls = getattr(diffusers, class_name)
            pipe = cls.from_pretrained(str(self.path), use_safetensors=True, **_dtype_kwargs(dtypes))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _load_loras(self, pipe) -> None:
        if not self.options.loras:
            return
        if importlib.util.find_spec("peft") is None:  # diffusers loads LoRAs through peft
            raise BackendError(f"{NAME}: LoRA needs the peft package (pip install peft)")
        names, weights = [], []
        two_experts = getattr(pipe, "transformer_2", None) is not None
        for i, (path, weight) in enumerate(self.options.loras):
            path = Path(path).expanduser()
            if not path.is_file():
                raise WanError(f"LoRA file not found: {path}")
            name = f"lora{i}_" + re.sub(r"[^A-Za-z0-9_]", "_", path.stem)[:40]
            kwargs = {"weight_name": path.name, "adapter_name": name, "use_safetensors": True}
            pipe.load_lora_weights(str(path.parent), **kwargs)
            if two_experts:
                # One file for both experts (how Wan2.1 LoRAs are used on Wan2.2 A14B).
                pipe.load_lora_weights(str(path.parent), load_into_transformer_2=True, **kwargs)
            names.append(name)
            weights.append(float(weight))
        pipe.set_adapters(names, adapter_weights=weights)

    def _configure(self, pipe) -> None:
        if self.options.vae_tiling:
            pipe.vae.enable_tiling()
        wanted = self.options.attention.strip().lower()
        if wanted in ("auto", "", "default"):
            return
        backend = ATTENTION_ALIASES.get(wanted, wanted)
        try:
            from diffusers.models.attention_dispatch import AttentionBackendName

            known = {b.value for b in AttentionBackendName}
        except ImportError:  # diffusers before attention backends
            known = set()
        if backend not in known:
            self._note(f"attention {wanted!r} is not a diffusers attention backend; using SDPA")
            return
        for part in ("transformer", "transformer_2"):
            module = getattr(pipe, part, None)
            if module is None:
                continue
            try:
                module.set_attention_backend(backend)
            except Exception as e:  # its kernel package is missing or does not fit this GPU
                self._note(f"attention {wanted!r} unavailable ({_first_line(e)[:200]}); using SDPA")
                module.set_attention_backend("native")
                return

    def _place(self, pipe) -> None:
        if self.offload == "none":
            pipe.to(self.device)
        elif self.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        elif self.offload == "group":
            if not hasattr(pipe, "enable_group_offload"):
                raise BackendError(f"{NAME}: group offload needs a newer diffusers")
            pipe.enable_group_offload(onload_device=self.device, offload_type="leaf_level",
                                      use_stream=self.device.type == "cuda")

    def _pipeline_for(self, mode: str):
        class_name = self._classes.get(mode)
        if class_name is None:
            raise WanError(f"{self.spec.id} cannot do {mode}")
        pipe = self._pipes.get(class_name)
        if pipe is None:
            pipe = _sibling(self._active, class_name)
            self._pipes[class_name] = pipe
        if pipe is not self._active:
            if self.offload == "model":
                # Model offload hooks chain one pipeline's modules; rebuild them for this one.
                pipe.enable_model_cpu_offload(device=self.device)
            self._active = pipe
        return pipe

    def _set_shift(self, pipe, shift: float) -> None:
        config = pipe.scheduler.config
        key = "flow_shift" if "flow_shift" in config else "shift" if "shift" in config else None
        if key is None or float(config[key]) == float(shift):
            return
        pipe.scheduler = type(pipe.scheduler).from_config(config, **{key: float(shift)})

    def _call_kwargs(self, pipe, req: GenerateRequest) -> dict:
        kwargs = dict(prompt=req.prompt, negative_prompt=req.negative_prompt, height=req.height,
                      width=req.width, num_frames=req.num_frames, num_inference_steps=req.steps,
                      guidance_scale=float(req.guidance_scale))
        if getattr(pipe.config, "boundary_ratio", None) is not None:
            g2 = req.guidance_scale_2 if req.guidance_scale_2 is not None else self.spec.guidance_2
            if g2 is not None:
                kwargs["guidance_scale_2"] = float(g2)
        if self.spec.kind == "vace":
            if req.mode == "i2v" or req.last_image is not None:
                kwargs["video"], kwargs["mask"] = _vace_inputs(req)
        elif req.mode == "i2v":
            kwargs["image"] = to_pil(req.image)
            if req.last_image is not None:
                kwargs["last_image"] = to_pil(req.last_image)
        return kwargs

    def _size_multiple(self, pipe) -> int:
        patch = pipe.transformer.config.patch_size
        return int(pipe.vae_scale_factor_spatial * max(patch[1], patch[2]))

    def generate(self, req: GenerateRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None) -> np.ndarray:
        import torch

        if self._active is None:
            raise WanError(f"{NAME}: the backend for {self.spec.id} is closed")
        check_request(req, self.spec)
        pipe = self._pipeline_for(req.mode)
        check_request(req, self.spec, max(self.spec.size_multiple, self._size_multiple(pipe)))
        if should_stop is not None and should_stop():
            raise Interrupted("stopped before the first step")
        self._set_shift(pipe, req.shift if req.shift is not None else self.spec.shift)
        kwargs = self._call_kwargs(pipe, req)

        def on_step_end(p, i, t, tensors):
            total = getattr(p, "num_timesteps", None) or req.steps
            if on_step is not None:
                on_step(i + 1, total)
            if should_stop is not None and should_stop():
                p._interrupt = True
                raise _StopRequested(i + 1)  # leave now: no further steps, no VAE decode
            return {}

        generator = torch.Generator(device=self.generator_device).manual_seed(int(req.seed))
        try:
            out = pipe(**kwargs, generator=generator, output_type="np", callback_on_step_end=on_step_end)
        except _StopRequested as stop:
            pipe.maybe_free_model_hooks()
            raise Interrupted(f"stopped after step {stop.step} of {req.steps}") from None
        frames = np.asarray(out.frames[0], dtype=np.float32)
        expected = (req.num_frames, req.height, req.width, 3)
        if frames.shape != expected:
            raise BackendError(f"{NAME}: {self.spec.id} returned frames {frames.shape}, expected {expected}")
        return np.clip(frames, 0.0, 1.0)

    def close(self) -> None:
        pipes, self._pipes, self._active = self._pipes, {}, None
        for pipe in pipes.values():
            try:
                pipe.remove_all_hooks()
            except Exception:  # already half torn down; freeing memory matters more
                pass
        del pipes
        free_memory()


def _sibling(pipe, class_name: str):
    """Another pipeline class over the same modules and config (TI2V: text and image input).

    Not ``from_pipe``: it casts every shared module to float32 unless told a dtype.
    """
    import inspect

    import diffusers

    cls = getattr(diffusers, class_name)
    kwargs = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in pipe.config:
            kwargs[name] = getattr(pipe, name, None) if name in pipe.components else pipe.config[name]
        elif param.default is inspect.Parameter.empty:
            raise WanError(f"{NAME}: cannot run {type(pipe).__name__} weights as {class_name} (no {name})")
    sibling = cls(**kwargs)
    sibling.set_progress_bar_config(disable=True)
    return sibling


def _vace_inputs(req: GenerateRequest):
    """VACE conditioning: given frames are kept (black mask), the rest generated (white mask).

    Frames to generate are mid grey, as in diffusers' VACE docs and the official code
    (zeros in [-1, 1]).
    """
    from PIL import Image

    size = (req.width, req.height)
    grey = Image.new("RGB", size, (128, 128, 128))
    keep, make = Image.new("L", size, 0), Image.new("L", size, 255)
    video, mask = [grey] * req.num_frames, [make] * req.num_frames
    first = list(req.context) if req.context is not None else (
        [req.image] if req.image is not None else [])
    for i, frame in enumerate(first):
        video[i], mask[i] = to_pil(frame), keep
    if req.last_image is not None:
        video[-1], mask[-1] = to_pil(req.last_image), keep
    return video, mask


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
