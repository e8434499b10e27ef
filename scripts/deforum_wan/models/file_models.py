"""``wan_model`` as a weight file or a folder: the model it is, told by its tensors.

A file found in the model folders (places.py) or a diffusers-layout folder becomes a ModelSpec
of its own, with the defaults (steps, shift, guidance, sizes) of the registry model of the same
architecture; a size the table does not know (the tiny test models) takes the tiny registry
entry of its variant. Headers only: no torch.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import WanError
from .detect import Detected, detect
from .headers import read_header
from .places import find_weight_file, looks_like_file, model_roots
from .registry import FILE_MODELS, MODELS, ModelSpec, get_model

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


def resolve_model(value: str, components: str = "", models_dir=None, extra=None) -> ModelSpec:
    """A registry id, a weight file in the model folders, or a diffusers-layout folder."""
    text = str(value).strip()
    if text.lower() in MODELS:
        return MODELS[text.lower()]
    roots = model_roots(models_dir, extra)
    if looks_like_file(text):
        path = find_weight_file(text, roots)
        found = detect(read_header(path))
        if found.kind != "transformer":
            raise WanError(f"{path.name} is a {found.summary}, not a Wan transformer: give wan_model the"
                           " transformer (diffusion model) file; the other parts are found beside it")
        model_id = path.name
    elif Path(text).expanduser().is_dir():
        path = Path(text).expanduser().resolve()
        found = detect(read_header(folder_transformer(path)))
        model_id = str(path)
    else:
        return get_model(text)  # the one-line unknown-model error
    if components:
        check_components(components)
    spec = dataclasses.replace(base_spec(found), id=model_id, diffusers_repo=None, official_repo=None,
                               weights=str(path), components=components, notes=f"{found.summary}, {found.quant}")
    FILE_MODELS[model_id] = spec
    return spec


def check_components(components: str) -> None:
    """``wan_components``: a registry id or an existing folder."""
    if components.strip().lower() not in MODELS and not Path(components).expanduser().is_dir():
        raise WanError(f"wan_components {components!r} is neither a registry model id nor a folder")
