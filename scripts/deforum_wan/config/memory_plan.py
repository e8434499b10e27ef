"""What each model a render loads will hold, and where: per part (transformer(s), text encoder,
VAE, image encoder) its format, quantisation, bytes in memory from the weight files' headers
(models/footprint.py, nothing loaded) and its place by the offload setting. For ``plan``."""
from __future__ import annotations

from ..models.footprint import Part, human_bytes, model_parts, placement
from .presets import resolve


def memory_parts(settings, models_dir=None, device: str = "auto") -> dict[str, list[Part]]:
    """model id -> its parts, for the model and the continuation model of ``settings``.
    An fp8 file that LoRAs are loaded into is dequantised (as the diffusers backend does)."""
    speed = resolve(settings.preset, settings.speed_overrides)
    place = placement(speed["offload"], device)
    out = {}
    for spec in filter(None, (settings.model, settings.continue_model)):
        out.setdefault(spec.id, model_parts(spec, models_dir, dtype=settings.dtype, vae_dtype="float32",
                                            float8=bool(speed["layerwise_fp8"]), keep_fp8=not settings.loras,
                                            place=place))
    return out


def format_memory(models: dict[str, list[Part]]) -> list[str]:
    lines = []
    for model_id, parts in models.items():
        known = [p.bytes for p in parts if p.bytes is not None]
        total = "unknown" if not known else \
            human_bytes(sum(known)) + (" and parts of unknown size" if len(known) < len(parts) else "")
        lines.append(f"memory of {model_id}: {total} (from the weight files' headers)")
        lines += [f"  {p.line()}" for p in parts]
    return lines
