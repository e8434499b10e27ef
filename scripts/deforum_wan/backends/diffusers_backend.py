"""The diffusers backend: WanPipeline, WanImageToVideoPipeline, WanVACEPipeline and (a T2V
model restyling a video) WanVideoToVideoPipeline.

One folder in the diffusers layout (hub download, models dir, a tiny model built by tiny.py,
or a full-size random model of random_full.py: the same code loads them all) becomes one pipeline. Progress and interrupt
come from ``callback_on_step_end``; stopping raises out of the callback so the
remaining steps and the VAE decode are skipped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config.files import regular_file
from ..config.planner import min_denoise
from ..errors import BackendError, Interrupted, WanError, first_line
from ..models import random_full
from ..models.registry import ModelSpec
from ..models.weights import locate_weights, resolve_models_dir, weights_missing_message
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
    torch_device,
    torch_dtype,
    vace_conditioning,
)
from .speed import DISTILL_GUIDANCE, DISTILL_STEPS, CachePlan, Speedups, distill_lora_names, find_distill_lora
from .svi import conditioned

log = logging.getLogger(__name__)

NAME = "diffusers"
# Components two Wan models can have in common (Wan2.1's UMT5 encoder and VAE are the same
# weights in every Wan2.1 model): a second model of a pair reuses the first one's.
SHARABLE = ("tokenizer", "text_encoder", "vae")


def pipeline_classes(spec: ModelSpec) -> dict[str, str]:
    """Pipeline class per mode. TI2V is one model behind two pipeline classes."""
    if spec.kind == "vace":
        return {"t2v": "WanVACEPipeline", "i2v": "WanVACEPipeline"}
    if spec.kind in ("i2v", "flf2v"):
        return {"i2v": "WanImageToVideoPipeline"}
    if spec.kind == "ti2v":
        return {"t2v": "WanPipeline", "i2v": "WanImageToVideoPipeline"}
    return {"t2v": "WanPipeline", "v2v": "WanVideoToVideoPipeline"}


def weights_folder(spec: ModelSpec, options: BackendOptions) -> Path:
    """The diffusers-layout folder for ``spec`` (or its single transformer file); tiny models are
    built here on first use."""
    if spec.weights:
        return Path(spec.weights)
    if spec.tiny:
        from ..models.tiny import ensure_tiny_model

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


def dtype_kwargs(dtype) -> dict:
    """``from_pretrained``'s dtype argument (a dtype, or a dict per component): diffusers 0.40
    renamed torch_dtype to dtype (the old name warns)."""
    import diffusers
    from packaging.version import Version

    key = "dtype" if Version(diffusers.__version__).release >= (0, 40) else "torch_dtype"
    return {key: dtype}


def load_pipeline(path: Path, class_name: str, dtypes: dict, device, parts: dict | None = None):
    """A pipeline of ``class_name`` from a diffusers-layout folder (safetensors only), or from a
    full-size random model's configs, its modules made on ``device`` (no weights to read)."""
    import diffusers

    with _quiet_loading():  # the getattr imports the pipeline module, which warns too
        if (Path(path) / random_full.MARKER).is_file():  # built by other versions: build_pipeline says so
            pipe = random_full.build_pipeline(path, class_name, device, dtypes, parts)
        else:
            cls = getattr(diffusers, class_name)
            pipe = cls.from_pretrained(str(path), use_safetensors=True, **(parts or {}), **dtype_kwargs(dtypes))
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersBackend(Backend):
    name = NAME
    takes_path_guide = True
    takes_camera_frames = True

    @property
    def takes_svi(self) -> bool:
        return self.spec.kind == "i2v"  # the I2V pipeline's condition (svi.conditioned)

    @property
    def takes_svi_pro(self) -> bool:
        return self.spec.kind == "i2v" and self.spec.family == "wan2.2"  # I2V-A14B: SVI 2.0 Pro's LoRAs

    def __init__(self, spec: ModelSpec, options: BackendOptions | None = None, path=None,
                 share_from: Sequence[Backend] = ()):
        self.spec = spec
        self.options = options or BackendOptions()
        self.options.check()
        self.notes: list[str] = []
        self.distill_lora: Path | None = None
        self.path = Path(path) if path is not None else weights_folder(spec, self.options)
        self.device = torch_device(self.options.device)
        self.dtype = torch_dtype(self.options.dtype, self.device.type)
        self.vae_dtype = torch_dtype(self.options.vae_dtype, self.device.type)
        self.offload = self.options.offload
        # What the speed options did (attention, float8 storage, the cache, compile): their notes
        # join the load report.
        self.speed = Speedups(self.options, self.device, self.dtype, spec, self._note)
        if self.offload != "none" and self.device.type == "cpu":
            self._note(f"offload {self.offload!r} does not apply on the CPU; running without offload")
            self.offload = "none"
        self._classes = pipeline_classes(spec)
        self._pipes: dict[str, object] = {}  # class name -> pipeline, sharing one set of modules
        self._active = None
        self.parked = False
        self.shared: dict[str, str] = {}  # component -> the model it is shared with
        first = self._classes.get("t2v") or self._classes["i2v"]
        try:
            self.distill_lora = self._find_distill()  # before loading: a LoRA needs fp8 files dequantised
            self._memory_notes()
            pipe = self._load(first, self._sharable(share_from))
            self._pipes[first] = pipe
            self._load_loras(pipe)
            self._configure(pipe)
            self._speedups(pipe)
            self._place(pipe)
            self._active = pipe
        except WanError:
            self.close()
            raise
        except Exception as e:  # keep the reason, free what was loaded
            self.close()
            raise BackendError(f"{NAME}: loading {self.path} failed: {type(e).__name__}: "
                               f"{first_line(e)}") from e

    @property
    def pipe(self):
        return self._active

    def _note(self, text: str, warn: bool = True) -> None:
        self.notes.append(text)
        (log.warning if warn else log.info)("%s: %s", NAME, text)

    def _memory_notes(self) -> None:
        """Each part's format, quantisation, bytes in memory (from its headers) and place, for
        the load report."""
        from ..models.footprint import model_parts, placement

        float8 = self.options.layerwise_fp8 and self.device.type in ("cuda", "cpu")
        try:
            parts = model_parts(self.spec, self.options.models_dir, dtype=str(self.dtype).replace("torch.", ""),
                                vae_dtype=str(self.vae_dtype).replace("torch.", ""), float8=float8,
                                keep_fp8=not (self.options.loras or self.distill_lora),
                                place=placement(self.offload, self.device.type))
        except WanError as e:  # an unreadable header: the load itself says what is wrong
            self._note(f"memory per part not known ({first_line(e)[:160]})", warn=False)
            return
        for part in parts:
            self._note(part.line(), warn=False)

    def _speed_note(self, text: str, warn: bool = True) -> None:
        self.speed.speed_note(text, warn)

    def _sharable(self, others: Sequence[Backend]) -> dict:
        """Components a loaded model holds with the same weights (Wan2.1's UMT5 encoder, VAE
        and tokenizer in T2V-1.3B and VACE-1.3B): reused, not loaded a second time."""
        parts: dict = {}
        if self.offload != "none":
            return parts  # offload hooks live on the modules: two pipelines must not share them
        for other in others:
            if not isinstance(other, DiffusersBackend) or other.pipe is None or other.offload != "none":
                continue
            if (other.device, other.dtype, other.vae_dtype) != (self.device, self.dtype, self.vae_dtype):
                continue
            for name in SHARABLE:
                if name not in parts and getattr(other.pipe, name, None) is not None and \
                        same_component(self.path / name, other.path / name):
                    parts[name] = getattr(other.pipe, name)
                    self.shared[name] = other.spec.id
        if self.shared:
            owners = sorted(set(self.shared.values()))
            self._note(f"shares {', '.join(self.shared)} with {', '.join(owners)} (the same weights):"
                       " loaded once", warn=False)
        return parts

    def _load(self, class_name: str, parts: dict | None = None):
        import torch

        # Wan's VAE and CLIP image encoder are kept in float32 by default, as diffusers'
        # Wan docs do: bf16 there costs colour accuracy for little memory.
        dtypes = {"default": self.dtype, "vae": self.vae_dtype, "image_encoder": torch.float32}
        # Offloaded modules start on the CPU, as from_pretrained leaves them.
        device = self.device if self.offload == "none" else torch.device("cpu")
        if self.path.is_file():  # a single transformer file; its other parts found beside it
            from .single_file import load_file_pipeline

            with _quiet_loading():
                # peft makes a LoRA's matrices in its layer's dtype: float8 would round them.
                keep_fp8 = not (self.options.loras or self.distill_lora)
                pipe = load_file_pipeline(self.spec, class_name, dtypes, self.options.models_dir, parts,
                                          keep_fp8=keep_fp8)
            for text in pipe.storage_notes:
                self._note(text, warn=False)
            pipe.set_progress_bar_config(disable=True)
            return pipe
        return load_pipeline(self.path, class_name, dtypes, device, parts)

    def _find_distill(self) -> Path | None:
        """The step-distilled LoRA asked for, if its file is there (auto: quietly absent)."""
        choice = self.options.distill_lora
        if choice == "off":
            return None
        if choice == "auto":
            root = resolve_models_dir(self.options.models_dir)
            path = find_distill_lora(self.spec.id, root)
            if path is None:
                names = " or ".join(distill_lora_names(self.spec.id))
                self._speed_note(f"step-distilled LoRA not available ({names} not in {root / 'loras'});"
                                 " keeping the full steps", warn=False)
            return path
        path = Path(choice).expanduser()
        return regular_file(path, f"distilled LoRA file {path}")

    def _load_loras(self, pipe) -> None:
        loras = [(path, weight, expert) for path, weight, expert in self.options.loras]
        if self.distill_lora is not None:
            loras.append((str(self.distill_lora), 1.0, "both"))
        if not loras:
            return
        if importlib.util.find_spec("peft") is None:  # diffusers loads LoRAs through peft
            raise BackendError(f"{NAME}: LoRA needs the peft package (pip install peft)")
        two_experts = getattr(pipe, "transformer_2", None) is not None
        held: dict[str, list[tuple[str, float]]] = {"transformer": [], "transformer_2": []}
        for i, (path, weight, expert) in enumerate(loras):
            path = regular_file(Path(path).expanduser(), f"LoRA file {path}")
            name = f"lora{i}_" + re.sub(r"[^A-Za-z0-9_]", "_", path.stem)[:40]
            kwargs = {"weight_name": path.name, "adapter_name": name, "use_safetensors": True}
            if not two_experts and expert != "both":
                self._note(f"LoRA {path.name}: for the {expert}-noise expert, but {self.spec.id} has one"
                           " transformer; it goes there", warn=False)
            # Both experts: one file into each (how Wan2.1 LoRAs are used on Wan2.2 A14B).
            if expert in ("both", "high") or not two_experts:
                pipe.load_lora_weights(str(path.parent), **kwargs)
                held["transformer"].append((name, float(weight)))
            if two_experts and expert in ("both", "low"):
                pipe.load_lora_weights(str(path.parent), load_into_transformer_2=True, **kwargs)
                held["transformer_2"].append((name, float(weight)))
        # Per expert: the pipeline's set_adapters wants every name in every transformer.
        for part, adapters in held.items():
            if adapters:
                getattr(pipe, part).set_adapters([n for n, _ in adapters], [w for _, w in adapters])
        if self.distill_lora is not None:
            self._speed_note(f"step-distilled LoRA {self.distill_lora.name}: {DISTILL_STEPS} steps at guidance"
                             f" {DISTILL_GUIDANCE:g}", warn=False)

    def _configure(self, pipe) -> None:
        if self.options.vae_tiling:
            pipe.vae.enable_tiling()
        self.speed.set_attention(transformers_of(pipe))

    def _speedups(self, pipe) -> None:
        self.speed.apply(transformers_of(pipe), distilled=self.distill_lora is not None)

    @property
    def cache_plan(self) -> CachePlan:
        return self.speed.cache_plan

    @property
    def compiled(self) -> bool:
        return self.speed.compiled

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
            pipe = sibling_pipeline(self._active, class_name)
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
        if req.mode == "v2v":  # the video's length is the window's
            del kwargs["num_frames"]
            # At least one step (a distilled LoRA changes the steps after planning).
            strength = max(float(req.strength), min_denoise(req.steps))
            kwargs["video"], kwargs["strength"] = [to_pil(frame) for frame in req.video], strength
        if getattr(pipe.config, "boundary_ratio", None) is not None:
            g2 = req.guidance_scale_2 if req.guidance_scale_2 is not None else self.spec.guidance_2
            if g2 is not None:
                kwargs["guidance_scale_2"] = float(g2)
        if self.spec.kind == "vace":
            if req.mode == "i2v" or req.last_image is not None or req.vace_frames is not None:
                kwargs["video"], kwargs["mask"] = vace_inputs(req)
            if req.control_scale is not None:
                kwargs["conditioning_scale"] = float(req.control_scale)
        elif req.mode == "i2v":
            # SVI's CLIP image is its first motion frame (svi.py)
            kwargs["image"] = to_pil(req.svi.motion[0] if req.svi is not None and self.takes_svi else req.image)
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
        if self.distill_lora is not None:
            # The distilled LoRA is trained for these; the request's schedule values do not apply.
            req = dataclasses.replace(req, steps=DISTILL_STEPS, guidance_scale=DISTILL_GUIDANCE,
                                      guidance_scale_2=DISTILL_GUIDANCE)
        self.unpark()
        pipe = self._pipeline_for(req.mode)
        check_request(req, self.spec, max(self.spec.size_multiple, self._size_multiple(pipe)))
        if should_stop is not None and should_stop():
            raise Interrupted("stopped before the first step")
        self._set_shift(pipe, req.shift if req.shift is not None else self.spec.shift)
        kwargs = self._call_kwargs(pipe, req)
        guidance = None
        if req.path_guide is not None:  # built on the final scheduler (the shift above)
            from .camera_guide import PathGuidance

            guidance = PathGuidance(pipe, req.path_guide, req.steps, req.seed, self.device)
            kwargs["latents"] = guidance.start_latents(pipe.scheduler)

        def on_step_end(p, i, t, tensors):
            total = getattr(p, "num_timesteps", None) or req.steps
            if on_step is not None:
                on_step(i + 1, total)
            if should_stop is not None and should_stop():
                raise StopRequested(i + 1)  # leave now: no further steps, no VAE decode
            changed = {}
            if guidance is not None and guidance.locked(i):
                changed = {"latents": guidance.after_step(i, tensors["latents"])}
            final["latents"] = changed.get("latents", tensors.get("latents"))  # the last step's: the result
            return changed

        # The steps the transformer runs: v2v skips the first 1 - strength of them.
        runs = int(req.steps * kwargs["strength"]) if req.mode == "v2v" else req.steps
        self.speed.prepare_cache(runs - (guidance.free if guidance else 0))
        self.last_latent = None
        final = {}

        def run():
            # The generator lives where the latents are made (the execution device).
            generator = torch.Generator(device=self.device).manual_seed(int(req.seed))
            with _hooks(pipe, guidance, req.svi if self.takes_svi and req.mode == "i2v" else None):
                return pipe(**kwargs, generator=generator, output_type="np", callback_on_step_end=on_step_end)

        try:
            try:
                out = run()
            except Exception as e:
                if not (self.speed.compiled and _is_compile_error(e)):
                    raise
                # Compilation happens on the first call; a compiler failure is not the model's.
                pipe.maybe_free_model_hooks()
                self.speed.uncompile([part for p in self._pipes.values() for part in transformers_of(p)])
                self._speed_note(f"torch.compile failed on the first window ({first_line(e)[:160]});"
                                 " running uncompiled")
                out = run()
        except StopRequested as stop:
            pipe.maybe_free_model_hooks()
            raise Interrupted(f"stopped after step {stop.step} of {req.steps}") from None
        frames = np.asarray(out.frames[0], dtype=np.float32)
        expected = (req.num_frames, req.height, req.width, 3)
        if frames.shape != expected:
            raise BackendError(f"{NAME}: {self.spec.id} returned frames {frames.shape}, expected {expected}")
        if final.get("latents") is not None:
            self.last_latent = final["latents"][0, :, -1:].float().cpu().numpy()
        return np.clip(frames, 0.0, 1.0)

    def _transformer_bytes(self) -> int:
        if self.offload != "none" or self.device.type == "cpu" or self._active is None:
            return 0  # offload manages placement itself; the CPU has nothing to move off
        return sum(p.numel() * p.element_size() for t in transformers_of(self._active) for p in t.parameters())

    def bytes_on_device(self) -> int:
        return 0 if self.parked else self._transformer_bytes()

    def bytes_to_unpark(self) -> int:
        return self._transformer_bytes() if self.parked else 0

    def park(self) -> str | None:
        freed = self.bytes_on_device()
        if not freed:
            return None
        for part in transformers_of(self._active):
            part.to("cpu")
        self.parked = True
        free_memory()
        return f"{self.spec.id}: transformer moved to the CPU while another model renders ({freed / 2**30:.1f} GiB)"

    def unpark(self) -> None:
        if self.parked:
            for part in transformers_of(self._active):
                part.to(self.device)
            self.parked = False

    def close(self) -> None:
        pipes, self._pipes, self._active = self._pipes, {}, None
        for pipe in pipes.values():
            try:
                pipe.remove_all_hooks()
            except Exception:  # already half torn down; freeing memory matters more
                pass
        del pipes
        free_memory()


def _hooks(pipe, guidance, svi) -> contextlib.ExitStack:
    """What wraps one pipeline call: the camera guide's schedule, SVI's conditioning."""
    stack = contextlib.ExitStack()
    if guidance is not None:
        stack.enter_context(guidance.schedule(pipe.scheduler))
    if svi is not None:
        stack.enter_context(conditioned(pipe, svi))
    return stack


def transformers_of(pipe) -> list:
    """The pipeline's transformer, and its second expert where it has one (Wan2.2 A14B)."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


def same_component(a: Path, b: Path) -> bool:
    """Two component folders hold the same weights: the same files and sizes, identical small
    files, and safetensors with identical headers (names, shapes, dtypes, offsets) and the same
    first and last MiB; a hub blob linked from both is the same file."""
    try:
        if not (a.is_dir() and b.is_dir()):
            return False
        if a.resolve() == b.resolve():
            return True
        files_a = {p.relative_to(a): p for p in a.rglob("*") if p.is_file()}
        files_b = {p.relative_to(b): p for p in b.rglob("*") if p.is_file()}
        if set(files_a) != set(files_b) or not files_a:
            return False
        for rel, pa in files_a.items():
            pb = files_b[rel]
            if pa.resolve() == pb.resolve():
                continue
            size = pa.stat().st_size
            if size != pb.stat().st_size:
                return False
            if pa.suffix != ".safetensors" or size <= 4 << 20:
                if pa.read_bytes() != pb.read_bytes():
                    return False
            elif _safetensors_fingerprint(pa, size) != _safetensors_fingerprint(pb, size):
                return False
        return True
    except OSError:
        return False


def _safetensors_fingerprint(path: Path, size: int) -> tuple[bytes, bytes, bytes]:
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = f.read(min(header_len, 100 << 20))
        head = f.read(1 << 20)
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
    return header, hashlib.sha256(head).digest(), hashlib.sha256(tail).digest()


def sibling_pipeline(pipe, class_name: str):
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


def vace_inputs(req: GenerateRequest):
    """VACE conditioning (``vace_conditioning``): kept frames with black masks, the rest
    generated (white masks).

    Frames to generate are mid grey, as in diffusers' VACE docs and the official code
    (zeros in [-1, 1]).
    """
    from PIL import Image

    size = (req.width, req.height)
    grey = Image.new("RGB", size, (128, 128, 128))
    frames, kept = vace_conditioning(req)
    video = [grey if frame is None else to_pil(frame) for frame in frames]
    mask = [Image.fromarray(np.where(k, 0, 255).astype(np.uint8), "L") for k in kept]
    return video, mask


def _is_compile_error(error: BaseException) -> bool:
    return type(error).__module__.startswith(("torch._dynamo", "torch._inductor"))
