"""What each model a render loads will hold, and where: per part (transformer(s), text encoder,
VAE, image encoder) its format, quantisation, bytes in memory from the weight files' headers
(models/footprint.py, nothing loaded) and its place by the offload setting. For the plan (the
command line's, the tab's and the API's)."""
from __future__ import annotations

from ..models.footprint import Part, human_bytes, model_parts, placement
from ..models.registry import get_model
from .presets import resolve


def memory_parts(settings, models_dir=None, device: str = "auto", plan=None) -> dict[str, list[Part]]:
    """model id -> its parts, for the model and the continuation model of ``settings``, and
    every model a window of ``plan`` runs (the partner the planner chose itself). An fp8 file
    that LoRAs are loaded into is dequantised (as the diffusers backend does)."""
    speed = resolve(settings.preset, settings.speed_overrides)
    place = placement(speed["offload"], device)
    planned = [get_model(m) for m in dict.fromkeys(w.model for w in plan.windows)] if plan is not None else []
    out = {}
    for spec in filter(None, (settings.model, settings.continue_model, *planned)):
        out.setdefault(spec.id, model_parts(spec, models_dir, dtype=settings.dtype, vae_dtype="float32",
                                            float8=bool(speed["layerwise_fp8"]), keep_fp8=not settings.loras,
                                            place=place))
    return out


def memory_json(models: dict[str, list[Part]]) -> dict[str, list[dict]]:
    """The plan JSON's ``memory``: model id -> its parts as objects."""
    return {model_id: [p.to_json() for p in parts] for model_id, parts in models.items()}


def format_memory(models: dict[str, list[Part]]) -> list[str]:
    lines = []
    for model_id, parts in models.items():
        lines.append(f"memory of {model_id}: {_total(parts)} (from the weight files' headers)")
        lines += [f"  {p.line()}" for p in parts]
    return lines


def memory_summary(models: dict[str, list[Part]]) -> list[str]:
    """One short line per model (the tab's plan view): its total, each part's bytes, where it lives."""
    lines = []
    for model_id, parts in models.items():
        sizes = ", ".join(f"{p.part} {_size(p)}" for p in parts)
        places = sorted({p.place for p in parts if p.place})
        lines.append(f"{model_id}: {_total(parts)} ({sizes})" + (f" on {places[0]}" if len(places) == 1 else ""))
    return lines


def _total(parts: list[Part]) -> str:
    known = [p.bytes for p in parts if p.bytes is not None]
    return "unknown" if not known else \
        human_bytes(sum(known)) + (" and parts of unknown size" if len(known) < len(parts) else "")


def _size(part: Part) -> str:
    if part.bytes is not None:
        return human_bytes(part.bytes)
    return "not on disk" if not part.source else "size unknown"
