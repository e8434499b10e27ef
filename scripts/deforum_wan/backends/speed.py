"""Speed features only the diffusers backend uses: which cache a window gets (block caches,
MagCache with its published ratios, TaylorSeer), where a step-distilled LoRA is found, and
``Speedups``, which applies them (with the attention kernel, float8 storage and regional
compile) to a loaded pipeline's transformers.

No torch at import; ``plan_cache`` looks only at its arguments, so the choice is testable
without a model. The presets that ask for these live in ``config.presets``.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config.keys import CACHES
from ..config.presets import FASTEST_ATTENTION
from ..errors import WanError, first_line

DISTILL_STEPS = 4
DISTILL_GUIDANCE = 1.0


# --- caches ------------------------------------------------------------------------------

# MagCache magnitude ratios of the conditional branch, one per step of the model's default
# step count (the even entries of the interleaved cond/uncond lists published in
# Zehong-Ma/MagCache, MagCache4Wan2.1/magcache_generate.py, Apache-2.0; calibrated with
# SDPA). diffusers interpolates them to other step counts. With the threshold and the
# most consecutive skipped steps (K) the authors published for each model.
_MAG_T2V_1_3B = [
    1.0, 1.0124, 1.00166, 0.99791, 0.99682, 0.99634, 0.99567, 0.99416, 0.99578, 0.9957, 0.99511,
    0.99535, 0.99552, 0.99541, 0.9954, 0.99489, 0.99518, 0.99484, 0.99481, 0.99415, 0.99419,
    0.99396, 0.99388, 0.99349, 0.99309, 0.9927, 0.99228, 0.99171, 0.99137, 0.99068, 0.99005,
    0.98944, 0.98849, 0.98758, 0.98644, 0.98504, 0.9836, 0.98202, 0.97977, 0.97717, 0.9741,
    0.97003, 0.96538, 0.9593, 0.95086, 0.94013, 0.92402, 0.90241, 0.86821, 0.81838]
_MAG_T2V_14B = [
    1.0, 1.02504, 1.00025, 0.9985, 0.99779, 0.9966, 0.99482, 0.99467, 0.99664, 0.99434, 0.99533,
    0.99468, 0.99438, 0.99516, 0.99384, 0.99404, 0.99517, 0.99409, 0.99428, 0.99347, 0.99418,
    0.99271, 0.99313, 0.99215, 0.99218, 0.99216, 0.99163, 0.99138, 0.98982, 0.98996, 0.9887,
    0.98772, 0.98767, 0.98573, 0.98501, 0.9838, 0.98177, 0.98037, 0.97678, 0.97546, 0.97184,
    0.96711, 0.96349, 0.95629, 0.94926, 0.93964, 0.92511, 0.90693, 0.8796, 0.86111]
_MAG_I2V_480P = [
    1.0, 0.98783, 0.97559, 0.98311, 0.98202, 0.9888, 0.98762, 0.98957, 0.99052, 0.99383, 0.98857,
    0.99065, 0.98845, 0.99057, 0.98957, 0.98601, 0.98823, 0.98756, 0.98808, 0.98721, 0.98571,
    0.98543, 0.98157, 0.98411, 0.97952, 0.98149, 0.9774, 0.97825, 0.97355, 0.97085, 0.97056,
    0.96588, 0.96113, 0.9567, 0.94961, 0.93973, 0.93217, 0.91878, 0.90955, 0.92617]
_MAG_I2V_720P = [
    1.0, 0.99428, 0.98588, 0.98273, 0.99018, 0.98911, 0.98646, 0.99454, 0.9891, 0.99124, 0.99102,
    0.99215, 0.99515, 0.99576, 0.99068, 0.99097, 0.99166, 0.99041, 0.99201, 0.99101, 0.98599,
    0.98845, 0.98848, 0.98862, 0.98718, 0.98497, 0.98264, 0.98389, 0.97938, 0.97535, 0.97498,
    0.973, 0.96827, 0.96261, 0.95335, 0.94649, 0.93397, 0.91636, 0.89088, 0.8679]


@dataclass(frozen=True)
class MagProfile:
    ratios: tuple[float, ...]
    threshold: float
    max_skip_steps: int
    retention_ratio: float = 0.2


MAG_PROFILES: dict[str, MagProfile] = {
    "wan2.1-t2v-1.3b": MagProfile(tuple(_MAG_T2V_1_3B), 0.12, 4),
    "wan2.1-t2v-14b": MagProfile(tuple(_MAG_T2V_14B), 0.24, 6),
    "wan2.1-i2v-14b-480p": MagProfile(tuple(_MAG_I2V_480P), 0.24, 6),
    "wan2.1-i2v-14b-720p": MagProfile(tuple(_MAG_I2V_720P), 0.24, 6),
}

FIRST_BLOCK_DEFAULT = 0.05  # diffusers' default; also the fallback for models without MagCache ratios
# diffusers' documented TaylorSeer example (50 steps); its default module patterns match no
# Wan module (attn1/attn2), so the attention and feed-forward outputs are named here.
TAYLORSEER = {"cache_interval": 5, "disable_cache_before_step": 10, "max_order": 1,
              "cache_identifiers": [r"blocks\.\d+\.(attn1|attn2|ffn)"]}


@dataclass(frozen=True)
class CachePlan:
    kind: str  # none | first_block | taylorseer | mag
    params: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "first_block":
            return f"first-block cache (threshold {self.params['threshold']:g})"
        if self.kind == "mag":
            return (f"MagCache (threshold {self.params['threshold']:g}, at most "
                    f"{self.params['max_skip_steps']} skipped steps in a row)")
        if self.kind == "taylorseer":
            return (f"TaylorSeer cache (full step every {self.params['cache_interval']}, "
                    f"after {self.params['disable_cache_before_step']} steps)")
        return "no cache"


def plan_cache(cache: str, threshold: float | None, model_id: str, *, blocks: int,
               vace: bool = False) -> CachePlan:
    """Which diffusers cache to apply to a transformer with ``blocks`` blocks, and why not.

    Block-skipping caches (first-block, MagCache) do not fit VACE: its control hints are
    added between the blocks they skip, so a skipped step would add the hints twice.
    FasterCache splits a batched CFG input; Wan's pipelines run the two branches as
    separate calls.
    """
    cache = (cache or "none").strip().lower().replace("-", "_")
    if cache not in CACHES:
        raise WanError(f"cache must be one of {', '.join(CACHES)}, not {cache!r}")
    notes: list[str] = []
    if cache == "none":
        return CachePlan("none")
    if cache == "faster":
        return CachePlan("none", notes=("FasterCache needs batched classifier-free guidance; Wan's "
                                        "pipelines run the two branches separately: no cache",))
    if cache == "taylorseer":
        return CachePlan("taylorseer", dict(TAYLORSEER))
    if vace:
        return CachePlan("none", notes=(f"{cache} cache skips blocks, which breaks VACE's control hints"
                                        " (set wan_cache taylorseer to cache VACE): no cache",))
    if cache == "mag":
        profile = MAG_PROFILES.get(model_id)
        if profile is not None:
            return CachePlan("mag", {"threshold": threshold or profile.threshold,
                                     "max_skip_steps": profile.max_skip_steps,
                                     "retention_ratio": profile.retention_ratio,
                                     "mag_ratios": list(profile.ratios)})
        notes.append(f"no published MagCache ratios for {model_id}: using the first-block cache")
        cache, threshold = "first_block", None
    if blocks < 2:
        notes.append(f"the first-block cache needs at least 2 transformer blocks ({model_id} has {blocks}):"
                     " no cache")
        return CachePlan("none", notes=tuple(notes))
    return CachePlan("first_block", {"threshold": threshold or FIRST_BLOCK_DEFAULT}, tuple(notes))


# --- step-distilled LoRAs ----------------------------------------------------------------

# Published step- and CFG-distilled LoRAs (lightx2v; also mirrored in Kijai/WanVideo_comfy):
# 4 steps at guidance 1. Any model also takes ``<models dir>/loras/<model id>-distill.safetensors``.
# lightx2v's step-distilled LoRAs as published, then as commonly re-shared (renamed, e.g.
# "lightx2v_T2V_14B_cfg_step_distill_v2_lora_rank64_bf16.safetensors"); matched without case.
DISTILL_LORAS: dict[str, tuple[str, ...]] = {
    "wan2.1-t2v-14b": ("Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank*.safetensors",
                       "*lightx2v*t2v*14b*distill*.safetensors"),
    "wan2.1-i2v-14b-480p": ("Wan21_I2V_14B_lightx2v_cfg_step_distill_lora_rank*.safetensors",
                            "*lightx2v*i2v*14b*480*distill*.safetensors"),
}
_RANK = re.compile(r"rank[_-]?(\d+)", re.IGNORECASE)


def distill_lora_names(model_id: str) -> tuple[str, ...]:
    return (f"{model_id}-distill.safetensors",) + DISTILL_LORAS.get(model_id, ())


def _rank(path: Path) -> int:
    found = _RANK.search(path.name)
    return int(found.group(1)) if found else 0


def find_distill_lora(model_id: str, models_dir: str | Path) -> Path | None:
    """The step-distilled LoRA for ``model_id`` in ``<models_dir>/loras`` or ``<models_dir>``:
    the first pattern that matches, its highest rank (by number: rank64 over rank8)."""
    root = Path(models_dir).expanduser()
    for folder in (root / "loras", root):
        if not folder.is_dir():
            continue
        files = [p for p in folder.iterdir() if p.is_file()]
        for pattern in distill_lora_names(model_id):
            found = [p for p in files if fnmatch.fnmatch(p.name.lower(), pattern.lower())]
            if found:
                return max(found, key=lambda p: (_rank(p), p.name))
    return None


# --- the speed features of a loaded diffusers pipeline ----------------------------------------

# Friendly names for diffusers' attention backends (diffusers.models.attention_dispatch).
ATTENTION_ALIASES = {"sdpa": "native", "torch": "native", "flash-attn": "flash", "flash_attn": "flash",
                     "flash-attn-3": "_flash_3", "sageattention": "sage", "xformers": "xformers"}
# Attention backends that need a kernel package (module, pip name) and a CUDA device.
KERNEL_PACKAGES = {"sage": ("sageattention", "sageattention"), "flash": ("flash_attn", "flash-attn"),
                   "_flash_3": ("flash_attn_interface", "flash-attn 3")}
# "fastest": quantized SageAttention first, then flash-attention; SDPA when neither loads.
FASTEST_ORDER = ("sage", "flash")
# diffusers cache config class per cache kind (diffusers.hooks); older releases lack some.
CACHE_CONFIGS = {"first_block": "FirstBlockCacheConfig", "taylorseer": "TaylorSeerCacheConfig",
                 "mag": "MagCacheConfig"}


class Speedups:
    """The speed options applied to one backend's transformers (attention kernel, float8
    storage, a cache, regional compile), and what they did: ``cache_plan``, ``compiled`` and
    a note for each thing this machine or diffusers lacks. torch and diffusers are imported
    only when a feature is applied."""

    def __init__(self, options, device, dtype, spec, note: Callable[[str, bool], None]):
        self.options, self.device, self.dtype, self.spec = options, device, dtype, spec
        self.note = note
        self.cache_plan = CachePlan("none")
        self.compiled = False
        self._cache_modules: list = []
        self._mag_steps: int | None = None

    def speed_note(self, text: str, warn: bool = True) -> None:
        """A note about a speed feature, prefixed with the preset that asked for it."""
        preset = self.options.preset
        self.note(f"{preset}: {text}" if preset and preset != "quality" else text, warn)

    def set_attention(self, parts) -> None:
        """The attention kernel the options ask for, on every transformer of the pipeline."""
        wanted = self.options.attention.strip().lower()
        if wanted in ("auto", "", "default"):
            return
        if wanted == FASTEST_ATTENTION:
            self._pick_attention(parts, FASTEST_ORDER)
            return
        backend = ATTENTION_ALIASES.get(wanted, wanted)
        if backend in KERNEL_PACKAGES:
            self._pick_attention(parts, (backend,))
            return
        try:
            from diffusers.models.attention_dispatch import AttentionBackendName

            known = {b.value for b in AttentionBackendName}
        except ImportError:  # diffusers before attention backends
            known = set()
        if backend not in known:
            self.note(f"attention {wanted!r} is not a diffusers attention backend; using SDPA")
            return
        try:
            for module in parts:
                module.set_attention_backend(backend)
        except Exception as e:  # its kernel package is missing or does not fit this GPU
            for module in parts:  # both experts on the same kernel
                module.set_attention_backend("native")
            self.note(f"attention {wanted!r} unavailable ({first_line(e)[:200]}); using SDPA")

    def _pick_attention(self, parts, backends) -> None:
        """The first of ``backends`` whose package is installed and loads on this device."""
        reasons = []
        for backend in backends:
            module, pip_name = KERNEL_PACKAGES[backend]
            if importlib.util.find_spec(module) is None:
                reasons.append(f"{pip_name} not installed")
                continue
            if self.device.type != "cuda":
                reasons.append(f"{backend} attention needs CUDA")
                continue
            try:
                for part in parts:
                    part.set_attention_backend(backend)
            except Exception as e:  # version too old, GPU not supported: diffusers checks at set time
                for part in parts:
                    part.set_attention_backend("native")
                reasons.append(f"{backend} attention unavailable ({first_line(e)[:160]})")
                continue
            self.speed_note(f"attention {backend}", warn=False)
            return
        self.speed_note(", ".join(reasons) + ", using SDPA")

    def apply(self, parts, distilled: bool = False) -> None:
        """Float8 weight storage, a cache and regional compile: diffusers' own features, each
        checked here so that what this machine or diffusers lacks becomes a note."""
        options, cuda = self.options, self.device.type == "cuda"
        if options.layerwise_fp8 and self.device.type not in ("cuda", "cpu"):
            self.speed_note(f"float8 weight storage is not tried on {self.device.type}; full precision")
        elif options.layerwise_fp8:  # a storage format: the same hooks on CUDA and the CPU
            self._layerwise_fp8(parts)
        self._setup_cache(parts, distilled)
        if options.compile:
            self._compile(parts, cuda)

    def _layerwise_fp8(self, parts) -> None:
        import torch

        if not all(hasattr(m, "enable_layerwise_casting") for m in parts):
            self.speed_note("this diffusers has no layerwise casting; weights stay in full precision")
            return
        stored = [m for m in parts if any(p.dtype == torch.float8_e4m3fn for p in m.parameters())]
        parts = [m for m in parts if m not in stored]  # an fp8 file's transformer: already float8
        try:
            for m in parts:
                m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=self.dtype)
        except Exception as e:  # a layer type the hook cannot cast
            self.speed_note(f"float8 weight storage failed ({first_line(e)[:160]}); keeping full precision")
            return
        self.speed_note(f"float8 weight storage, computing in {str(self.dtype).replace('torch.', '')}",
                         warn=False)

    def _setup_cache(self, parts, distilled: bool) -> None:
        options = self.options
        if options.cache == "none" or not parts:
            return
        vace = self.spec.kind == "vace" or "VACE" in type(parts[0]).__name__
        plan = plan_cache(options.cache, options.cache_threshold, self.spec.id,
                          blocks=len(getattr(parts[0], "blocks", ())), vace=vace)
        for text in plan.notes:
            self.speed_note(text)
        if plan.kind != "none" and distilled:
            self.speed_note(f"no cache: {DISTILL_STEPS} distilled steps leave nothing to skip", warn=False)
            plan = CachePlan("none")
        if plan.kind == "none":
            return
        import diffusers.hooks

        config_cls = getattr(diffusers.hooks, CACHE_CONFIGS[plan.kind], None)
        if config_cls is None or not all(hasattr(m, "enable_cache") for m in parts):
            import diffusers

            self.speed_note(f"diffusers {diffusers.__version__} has no {CACHE_CONFIGS[plan.kind]}: no cache")
            return
        self._cache_modules = parts
        self.cache_plan = plan
        if plan.kind != "mag":  # MagCache needs the step count: applied per call (_prepare_cache)
            try:
                for m in parts:
                    m.enable_cache(config_cls(**plan.params))
            except Exception as e:  # a block layout the hook does not know
                self.drop_cache(f"{plan.describe()} failed ({first_line(e)[:160]}): no cache")
                return
        self.speed_note(plan.describe(), warn=False)

    def drop_cache(self, reason: str) -> None:
        for m in self._cache_modules:
            if getattr(m, "is_cache_enabled", False):
                m.disable_cache()
        self._cache_modules, self.cache_plan, self._mag_steps = [], CachePlan("none"), None
        self.speed_note(reason)

    def prepare_cache(self, steps: int) -> None:
        """(Re)configure MagCache for this call's step count; its ratios are per step."""
        if self.cache_plan.kind != "mag" or self._mag_steps == steps:
            return
        from diffusers.hooks import MagCacheConfig

        try:
            for m in self._cache_modules:
                if m.is_cache_enabled:
                    m.disable_cache()
                m.enable_cache(MagCacheConfig(num_inference_steps=steps, **self.cache_plan.params))
        except Exception as e:
            self.drop_cache(f"{self.cache_plan.describe()} failed ({first_line(e)[:160]}): no cache")
            return
        self._mag_steps = steps

    def _compile(self, parts, cuda: bool) -> None:
        # Inductor generates triton kernels on CUDA and C++ on the CPU; other devices are not tried.
        if cuda and importlib.util.find_spec("triton") is None:
            self.speed_note("torch.compile needs triton (not installed); not compiled")
            return
        if not cuda and self.device.type != "cpu":
            self.speed_note(f"regional torch.compile is not tried on {self.device.type}; not compiled")
            return
        if not cuda and not any(shutil.which(c) for c in ("c++", "g++", "clang++", "cl")):
            self.speed_note("torch.compile on the CPU needs a C++ compiler (none on PATH); not compiled")
            return
        if not all(hasattr(m, "compile_repeated_blocks") for m in parts):
            self.speed_note("this diffusers has no regional compile (compile_repeated_blocks); not compiled")
            return
        try:
            for m in parts:
                # fullgraph=False: cache hooks decide on the host between blocks (graph breaks).
                m.compile_repeated_blocks(fullgraph=False)
        except Exception as e:  # a model without _repeated_blocks
            self.uncompile(parts)
            self.speed_note(f"regional torch.compile failed ({first_line(e)[:160]}); not compiled")
            return
        self.compiled = True
        self.speed_note("regional torch.compile of the transformer blocks (compiles on the first window)",
                         warn=False)

    def uncompile(self, parts) -> None:
        """Back to eager modules (a compile that failed on the first window)."""
        for part in parts:
            for sub in part.modules():
                if getattr(sub, "_compiled_call_impl", None) is not None:
                    sub._compiled_call_impl = None
        self.compiled = False
