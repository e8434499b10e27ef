"""``wan_model`` as a weight file or a folder: the model it is, told by its tensors.

A file found in the model folders (places.py) or a diffusers-layout folder becomes a ModelSpec
of its own, with the defaults (steps, shift, guidance, sizes) of the registry model of the same
architecture; a size the table does not know (the tiny test models) takes the tiny registry
entry of its variant. Headers only: no torch.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..errors import WanError
from .detect import Detected, detect
from .headers import read_header
from .places import find_weight_file, looks_like_file, model_roots, weight_files
from .registry import FILE_MODELS, MODELS, ModelSpec, get_model
from .weights import _is_complete, locate_weights, resolve_models_dir

# (variant, size, family or None) -> the registry model whose defaults a file takes.
_BASE = {
    ("t2v", "1.3B", None): "wan2.1-t2v-1.3b", ("t2v", "14B", None): "wan2.1-t2v-14b",
    ("i2v", "14B", "wan2.1"): "wan2.1-i2v-14b-720p", ("i2v", "14B", "wan2.2"): "wan2.2-i2v-a14b",
    ("flf2v", "14B", "wan2.1"): "wan2.1-flf2v-14b-720p", ("vace", "1.3B", "wan2.1"): "wan2.1-vace-1.3b",
    ("vace", "14B", "wan2.1"): "wan2.1-vace-14b", ("ti2v", "5B", "wan2.2"): "wan2.2-ti2v-5b",
}
_TINY = {"t2v": "tiny-random", "i2v": "tiny-random-i2v", "flf2v": "tiny-random-flf2v",
         "vace": "tiny-random-vace", "ti2v": "tiny-random-ti2v"}


def base_spec(found: Detected) -> ModelSpec:
    """The registry model whose defaults a detected transformer takes."""
    model_id = _BASE.get((found.variant, found.size, found.family)) or \
        _BASE.get((found.variant, found.size, None)) or _TINY[found.variant]
    spec = MODELS[model_id]
    if found.size is None:  # not a published size: no trained sizes, like the tiny models
        return dataclasses.replace(spec, tiny=True, approx_gb=0.0)
    # One expert of a two-expert model runs alone: no second transformer, no second guidance.
    return dataclasses.replace(spec, guidance_2=None)


# A pair of experts is Wan 2.2 A14B: its registry model per variant (tiny: the tiny two-expert one).
_PAIR_BASE = {"t2v": "wan2.2-t2v-a14b", "i2v": "wan2.2-i2v-a14b"}
# The expert a file name says: ``..._high_noise_...``, ``...-HighNoise-...``, ``low noise``.
_EXPERT = re.compile(r"(high|low)([_\- ]?noise)", re.IGNORECASE)
# Widths two experts of one model share.
_SAME_WIDTHS = ("in_channels", "out_channels", "num_layers", "ffn_dim", "text_dim", "freq_dim", "image_dim",
                "patch_size")


def partner_name(name: str) -> tuple[str, str] | None:
    """(the other expert's file name, the expert ``name`` says: high | low), or None."""
    match = _EXPERT.search(name)
    if match is None:
        return None
    word = match.group(1)
    other = "low" if word.lower() == "high" else "high"
    other = other.upper() if word.isupper() else other.capitalize() if word[0].isupper() else other
    return name[:match.start(1)] + other + name[match.end(1):], word.lower()


def _partner(path: Path, roots: list[Path]) -> tuple[Path, str] | None:
    """The other expert's file, beside ``path`` or anywhere in the model folders."""
    pair = partner_name(path.name)
    if pair is None:
        return None
    name, expert = pair
    if (path.parent / name).is_file():
        return path.parent / name, expert
    try:
        return find_weight_file(name, roots), expert
    except WanError:  # no partner: this expert runs alone
        return None


def check_pair(high: Path, found_high: Detected, low: Path, found_low: Detected) -> None:
    """Two files that are the high- and low-noise experts of one Wan 2.2 A14B model, or WanError
    in one line saying how they differ."""
    if high.resolve() == low.resolve():
        raise WanError(f"{high.name} is given as both experts; the low-noise one is its own file")
    if found_low.kind != "transformer":
        raise WanError(f"{low.name} is a {found_low.summary}, not a Wan transformer (the low-noise expert)")
    odd = next((w for w in ("variant", "size", "family", "width") if getattr(found_high, w) != getattr(found_low, w)
                and None not in (getattr(found_high, w), getattr(found_low, w))), None) or \
        next((w for w in _SAME_WIDTHS if found_high.config.get(w) != found_low.config.get(w)), None)
    if odd is not None:
        raise WanError(f"{high.name} and {low.name} are not one model's two experts ({found_high.summary}"
                       f" / {found_low.summary}: their {odd.replace('_', ' ')} differ)")
    if found_high.variant not in _PAIR_BASE or "wan2.1" in (found_high.family, found_low.family):
        raise WanError(f"{high.name} and {low.name}: a pair of experts is Wan 2.2 A14B T2V or I2V, not a"
                       f" {found_high.summary}")


def pair_spec(found: Detected) -> ModelSpec:
    """The registry model whose defaults a pair of experts takes: A14B's, both guidances kept."""
    if found.size is None:  # not a published size: the tiny two-expert model's (T2V) or variant's
        spec = MODELS["tiny-random-a14b"] if found.variant == "t2v" else MODELS[_TINY[found.variant]]
        return dataclasses.replace(spec, tiny=True, approx_gb=0.0, guidance_2=spec.guidance_2 or spec.guidance)
    return MODELS[_PAIR_BASE[found.variant]]


def folder_transformer(folder: Path) -> Path:
    """The transformer weights of a diffusers-layout folder (its first shard)."""
    part = folder / "transformer"
    index = part / "diffusion_pytorch_model.safetensors.index.json"
    if index.is_file():
        try:
            shard = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))[0]
        except (OSError, ValueError, KeyError, IndexError):
            raise WanError(f"{index}: unreadable shard index") from None
        return part / shard
    files = sorted(part.glob("*.safetensors")) if part.is_dir() else []
    if not files:
        raise WanError(f"{folder} is not a diffusers-layout Wan folder (no transformer/*.safetensors)")
    return files[0]


def resolve_model(value: str, components: str = "", models_dir=None, extra=None, low: str = "") -> ModelSpec:
    """A registry id, a weight file in the model folders (with its low-noise partner: ``low``, or
    the file named like it with low for high), or a diffusers-layout folder."""
    text, low = str(value).strip(), str(low or "").strip()
    if text.lower() in MODELS:
        return MODELS[text.lower()]
    roots = model_roots(models_dir, extra)
    low_path = None
    if looks_like_file(text):
        path = find_weight_file(text, roots)
        found = detect(read_header(path))
        if found.kind != "transformer":
            raise WanError(f"{path.name} is a {found.summary}, not a Wan transformer: give wan_model the"
                           " transformer (diffusion model) file; the other parts are found beside it")
        if low:
            if not looks_like_file(low):
                raise WanError(f"wan_model_low must name a .safetensors or .gguf file, not {low!r}")
            low_path = find_weight_file(low, roots)
        elif (partner := _partner(path, roots)) is not None:
            low_path, expert = partner
            if expert == "low":  # the low-noise file was named: the pair is the same
                path, low_path = low_path, path
                found = detect(read_header(path))
        model_id = path.name
    elif Path(text).expanduser().is_dir():
        path = Path(text).expanduser().resolve()
        found = detect(read_header(folder_transformer(path)))
        model_id = str(path)
    else:
        return get_model(text)  # the one-line unknown-model error
    if components:
        check_components(components)
    notes = f"{found.summary}, {found.quant}"
    base = base_spec(found)
    if low_path is not None:
        found_low = detect(read_header(low_path))
        check_pair(path, found, low_path, found_low)
        base = pair_spec(found)
        notes = f"{found.summary}, two experts: {path.name} (high noise, {found.quant}), {low_path.name}" \
                f" (low noise, {found_low.quant})"
        model_id = f"{path.name}+{low_path.name}"
    spec = dataclasses.replace(base, id=model_id, diffusers_repo=None, official_repo=None, weights=str(path),
                               weights_2=str(low_path or ""), components=components, notes=notes)
    FILE_MODELS[model_id] = spec
    return spec


def components_base(spec: ModelSpec) -> ModelSpec | None:
    """The registry model whose parts a file takes: ``wan_components``'s id, else the one of its
    architecture (tiny ones are built)."""
    choice = spec.components.strip().lower()
    return MODELS.get(choice) or next((m for m in MODELS.values() if m.kind == spec.kind and
                                       m.family == spec.family and m.tiny == spec.tiny), None)


def locate_components(base: ModelSpec, models_dir=None) -> Path | None:
    """A folder with ``base``'s parts: the whole model, or its components downloaded alone."""
    whole = locate_weights(base, models_dir)
    if whole is not None or base.diffusers_repo is None:
        return whole
    folder = resolve_models_dir(models_dir) / base.diffusers_repo.split("/")[-1]
    return folder if _is_complete(folder, "components") else None


def components_to_fetch(spec: ModelSpec, models_dir=None) -> ModelSpec | None:
    """For a transformer file with no components folder on disk (a tokenizer comes only from one):
    the registry model whose parts a ``components`` download fetches; else None."""
    if not spec.weights or Path(spec.weights).is_dir() or Path(spec.components).expanduser().is_dir():
        return None
    base = components_base(spec)
    if base is None or base.tiny or locate_components(base, models_dir) is not None:
        return None
    return base


def check_components(components: str) -> None:
    """``wan_components``: a registry id or an existing folder."""
    if components.strip().lower() not in MODELS and not Path(components).expanduser().is_dir():
        raise WanError(f"wan_components {components!r} is neither a registry model id nor a folder")


def _fits(kind: str, found: Detected, transformer: dict) -> bool:
    """A component file of ``kind`` that fits the transformer's widths."""
    if found.kind != kind:
        return False
    if kind == "text_encoder":
        return found.config["d_model"] == transformer["text_dim"]
    if kind == "vae":
        return found.config["z_dim"] == transformer["out_channels"]
    if kind == "clip_vision":
        return found.config["hidden_size"] == transformer.get("image_dim")
    return False


def component_file(kind: str, transformer: dict, roots: list[Path]) -> tuple[Path, Detected] | None:
    """The first file of ``kind`` in the model folders that fits (headers only)."""
    for path, folder_kind in weight_files(roots):
        readable = path.suffix == ".safetensors" or (kind == "text_encoder" and path.suffix == ".gguf")
        if folder_kind not in (None, kind) or not readable:
            continue
        try:
            found = detect(read_header(find_weight_file(str(path), roots)))
        except WanError:  # unusable or refused: `models` lists why
            continue
        if _fits(kind, found, transformer):
            return path, found
    return None
