"""Speed and memory presets: one settings key (``wan_preset``) -> backend option fields.

Pure data and logic: importing this module never imports torch, and ``resolve`` and
``plan_cache`` only look at their arguments, so the choice is testable without a model.
The backend applies what they return with diffusers' own features (cache hooks,
regional ``torch.compile``, layerwise casting, group offload, attention backends) and
notes whatever the machine cannot do.

Why each preset holds what it holds (published numbers; see docs/presets.md):

- ``quality``: the model as shipped (bf16 on CUDA, PyTorch SDPA, no cache): the reference.
- ``balanced``: exact or near-exact speedups only: regional compile of the repeated
  transformer blocks, flash-attention when installed, and a first-block cache at a low
  threshold (0.04; on Wan 2.1 a first-block cache gave 1.1-1.4x at 0.03-0.04 and became
  visibly lossy from about 0.06 on 1.3B, 0.09 on 14B).
- ``fast``: MagCache with the Wan 2.1 magnitude ratios and thresholds its authors
  published (1.3B T2V 480p: 189 s -> 68 s, 2.8x, on an A800), SageAttention when
  installed, and a step-distilled LoRA (4 steps, guidance 1) when its file is in the
  models folder. Models without published ratios fall back to the first-block cache.
- ``low-vram``: leaf-level group offload (CUDA streams prefetch the next layers) and a
  tiled VAE decode; speed features are left off because they cost memory.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import WanError
from .keys import BY_NAME, CACHES, DEFAULT_PRESET, OFFLOAD_MODES, PRESETS  # noqa: F401 (the vocabulary's home)
from .schedule import ExprError

# "fastest": SageAttention, then flash-attention, then PyTorch SDPA, whichever loads first.
FASTEST_ATTENTION = "fastest"



@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    cache: str = "none"
    cache_threshold: float | None = None  # None: the cache's own default for the model
    compile: bool = False
    layerwise_fp8: bool = False
    offload: str = "none"
    vae_tiling: bool = False
    attention: str = "auto"
    distill_lora: str = "off"  # off | auto (look in the models folder) | a .safetensors path


TABLE: dict[str, Preset] = {p.name: p for p in [
    Preset("quality", "the model as shipped: bf16 on CUDA, PyTorch SDPA, no cache"),
    Preset("balanced", "regional torch.compile, flash-attention, mild first-block cache",
           cache="first_block", cache_threshold=0.04, compile=True, attention="flash"),
    # No compile: diffusers' MagCache hooks run the blocks outside torch.compile's graph.
    Preset("fast", "MagCache, SageAttention, step-distilled LoRA when present",
           cache="mag", attention=FASTEST_ATTENTION, distill_lora="auto"),
    Preset("low-vram", "group offload with CUDA streams, tiled VAE decode",
           offload="group", vae_tiling=True),
]}

# BackendOptions fields a preset sets (each overridden by the key whose preset_field it is).
FIELDS = ("cache", "cache_threshold", "compile", "layerwise_fp8", "offload", "vae_tiling",
          "attention", "distill_lora")


def get_preset(name: str | None) -> Preset:
    try:
        return TABLE[BY_NAME["wan_preset"].read(name)]
    except ExprError as exc:
        raise WanError(str(exc)) from None


def resolve(preset: str | None, overrides: dict | None = None) -> dict:
    """The BackendOptions fields of ``preset`` with ``overrides`` (explicit keys) on top."""
    p = get_preset(preset)
    fields = {name: getattr(p, name) for name in FIELDS}
    for name, value in (overrides or {}).items():
        if name not in fields:
            raise WanError(f"{name!r} is not a preset field ({', '.join(FIELDS)})")
        fields[name] = value
    fields["preset"] = p.name
    return fields


def describe(preset: str) -> dict:
    """A preset as plain data (for ``--json`` and the UI)."""
    return asdict(get_preset(preset))
