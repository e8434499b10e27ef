"""Speed features only the diffusers backend uses: which cache a window gets (block caches,
MagCache with its published ratios, TaylorSeer) and where a step-distilled LoRA is found.

Pure: no torch at import; ``plan_cache`` looks only at its arguments, so the choice is
testable without a model. The presets that ask for these live in ``config.presets``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config.keys import CACHES
from ..errors import WanError

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
