"""Full-size Wan models with random weights: the published architectures, built on the device
that runs them, in its dtype, in seconds.

Time per step, memory, compile, attention kernels, offload and VAE tiling do not depend on what
the weights hold, so these measure them on a GPU machine the 17-80 GB of real weights never
reach. A random model is a folder in the diffusers layout with configs and no weight files; the
diffusers backend sees its marker and builds the modules from the configs where it loads them
(``build_pipeline``), each from its own seed, so a component that two models share (Wan2.1's
UMT5 encoder and VAE) gets the same weights in both, as in the real family.

The configs (``configs/*.json``) are the published ones, their source noted in each file.
``scaled`` writes the same architectures with small widths and depths: the CPU tests.
"""
from __future__ import annotations

import contextlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import WanError

CONFIG_DIR = Path(__file__).with_name("configs")
MARKER = "deforum_wan_random.json"
SEED_FILE = "random.json"  # in each built component's folder: what makes two components equal


@dataclass(frozen=True)
class Recipe:
    pipeline: str  # the diffusers pipeline class of the first load
    transformer: str  # config names in configs/
    vae: str
    image_encoder: str | None = None
    expand_timesteps: bool = False  # Wan2.2 TI2V: the pipeline's per-token timesteps


_I2V_14B = Recipe("WanImageToVideoPipeline", "transformer-i2v-14b", "vae-wan2.1", "clip-vit-h-14")
RECIPES = {
    "wan2.1-t2v-1.3b": Recipe("WanPipeline", "transformer-t2v-1.3b", "vae-wan2.1"),
    "wan2.1-vace-1.3b": Recipe("WanVACEPipeline", "transformer-vace-1.3b", "vae-wan2.1"),
    "wan2.2-ti2v-5b": Recipe("WanPipeline", "transformer-ti2v-5b", "vae-wan2.2", expand_timesteps=True),
    "wan2.1-i2v-14b-480p": _I2V_14B,
    "wan2.1-i2v-14b-720p": _I2V_14B,
}
TEXT_ENCODER = "umt5-xxl"
SIZES = ("full", "scaled")


def default_size() -> str:
    """Full size where CUDA runs it, scaled elsewhere (a full-size 1.3B takes minutes a step on a CPU)."""
    import torch

    return "full" if torch.cuda.is_available() else "scaled"


def published_config(name: str) -> dict:
    """A config of configs/ without its notes (keys starting with ``_``)."""
    data = json.loads((CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def config_class(name: str) -> str:
    return json.loads((CONFIG_DIR / f"{name}.json").read_text(encoding="utf-8"))["_class"]


def _recipe(model_id: str) -> Recipe:
    if model_id not in RECIPES:
        raise WanError(f"no full-size random build of {model_id!r}; these have one: {', '.join(RECIPES)}")
    return RECIPES[model_id]


# --- scaled: the same architecture, small enough for the CPU ---------------------------------

SCALED_TEXT = 32  # UMT5 width
SCALED_IMAGE = 32  # CLIP width
SCALED_HEADS, SCALED_HEAD_DIM = 2, 16  # the rope splits a head over frames, rows and columns
SCALED_LAYERS = 2


def _scaled_transformer(cfg: dict) -> dict:
    inner = SCALED_HEADS * SCALED_HEAD_DIM
    out = dict(cfg, num_attention_heads=SCALED_HEADS, attention_head_dim=SCALED_HEAD_DIM, ffn_dim=2 * inner,
               freq_dim=16, num_layers=SCALED_LAYERS, text_dim=SCALED_TEXT)
    if cfg.get("image_dim") is not None:
        out["image_dim"] = SCALED_IMAGE
    if cfg.get("added_kv_proj_dim") is not None:  # the image tokens' key/value width: the inner width
        out["added_kv_proj_dim"] = inner
    if cfg.get("vace_layers") is not None:  # every other block, as published
        out["vace_layers"] = [i for i in cfg["vace_layers"] if i < SCALED_LAYERS]
    return out


def _scaled_vae(cfg: dict) -> dict:
    out = dict(cfg, base_dim=16, num_res_blocks=1)
    if cfg.get("decoder_base_dim") is not None:
        out["decoder_base_dim"] = 32
    return out  # z_dim, channels, patching and the latent statistics stay: the transformer fits them


def _scaled_text(cfg: dict) -> dict:
    # The vocabulary stays: prompts tokenize to the same ids in every size.
    return dict(cfg, d_model=SCALED_TEXT, d_kv=8, num_heads=4, d_ff=2 * SCALED_TEXT, num_layers=SCALED_LAYERS,
                num_decoder_layers=SCALED_LAYERS)


def _scaled_image(cfg: dict) -> dict:
    return dict(cfg, hidden_size=SCALED_IMAGE, intermediate_size=2 * SCALED_IMAGE, num_hidden_layers=SCALED_LAYERS,
                num_attention_heads=2, projection_dim=SCALED_IMAGE)


def component_configs(model_id: str, size: str = "full") -> dict[str, tuple[str, dict]]:
    """component -> (config name, config) of ``model_id`` at ``size`` (full | scaled)."""
    if size not in SIZES:
        raise WanError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    recipe = _recipe(model_id)
    names = {"transformer": recipe.transformer, "vae": recipe.vae, "text_encoder": TEXT_ENCODER}
    if recipe.image_encoder:
        names["image_encoder"] = recipe.image_encoder
    configs = {part: (name, published_config(name)) for part, name in names.items()}
    if size == "scaled":
        scale = {"transformer": _scaled_transformer, "vae": _scaled_vae, "text_encoder": _scaled_text,
                 "image_encoder": _scaled_image}
        configs = {part: (name, scale[part](cfg)) for part, (name, cfg) in configs.items()}
    return configs


def parameter_count(model_id: str, size: str = "full") -> dict[str, int]:
    """Parameters per component, counted on the meta device (no memory, no weights)."""
    import torch

    with torch.device("meta"):
        return {part: sum(p.numel() for p in _module(part, name, cfg).parameters())
                for part, (name, cfg) in component_configs(model_id, size).items()}


# --- the folder --------------------------------------------------------------------------------

def write_random_model(model_id: str, folder: str | os.PathLike, size: str = "full") -> Path:
    """A random model's folder: configs, tokenizer, scheduler, the marker; no weights (kilobytes)."""
    from . import tiny
    from .registry import get_model

    spec = get_model(model_id)
    recipe = _recipe(spec.id)
    configs = component_configs(spec.id, size)

    def write(tmp: Path) -> None:
        index = {"_class_name": recipe.pipeline}
        for part, (name, cfg) in configs.items():
            (tmp / part).mkdir()
            cls = config_class(name)
            library = "transformers" if cls.startswith(("UMT5", "CLIP")) else "diffusers"
            index[part] = [library, cls]
            (tmp / part / "config.json").write_text(json.dumps({"_class_name": cls, **cfg}, indent=1),
                                                    encoding="utf-8")
            (tmp / part / SEED_FILE).write_text(json.dumps({"seed": _seed(name, size), "size": size}),
                                                encoding="utf-8")
        tiny._tokenizer().save_pretrained(tmp / "tokenizer")
        tiny._scheduler(spec.shift).save_pretrained(tmp / "scheduler")
        index.update(tokenizer=["transformers", "PreTrainedTokenizerFast"],
                     scheduler=["diffusers", "UniPCMultistepScheduler"])
        if recipe.image_encoder:
            from transformers import CLIPImageProcessor

            image = published_config(recipe.image_encoder)["image_size"]
            CLIPImageProcessor(crop_size=image, size=image).save_pretrained(tmp / "image_processor")
            index["image_processor"] = ["transformers", "CLIPImageProcessor"]
        if recipe.expand_timesteps:
            index["expand_timesteps"] = True
        (tmp / "model_index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")

    return tiny._build_atomically(Path(folder), {"model": spec.id, "size": size}, write, marker_name=MARKER)


def _seed(name: str, size: str) -> int:
    return zlib.crc32(f"{name}:{size}".encode())


# --- building the modules where they run -------------------------------------------------------

def _module(part: str, name: str, cfg: dict):
    """One component from its config, with the library's own initialisation."""
    if part == "text_encoder":
        from transformers import UMT5Config, UMT5EncoderModel

        return UMT5EncoderModel(UMT5Config(**cfg))
    if part == "image_encoder":
        from transformers import CLIPVisionConfig, CLIPVisionModel

        return CLIPVisionModel(CLIPVisionConfig(**cfg))
    import diffusers

    return getattr(diffusers, config_class(name)).from_config(cfg)


def random_transformer(model_id: str, size: str = "full", widths: dict | None = None, dtype=None):
    """``model_id``'s random transformer built on the CPU (``widths`` on top of its config), with the
    seed its folder's is built from: the same weights in every format bench writes."""
    import torch

    name, cfg = component_configs(model_id, size)["transformer"]
    with _building(torch.device("cpu"), dtype or torch.bfloat16, _seed(name, size)):
        return _module("transformer", name, {**cfg, **(widths or {})}).eval()


@contextlib.contextmanager
def _building(device, dtype, seed: int):
    """Parameters created on ``device`` in ``dtype`` (no float32 copy first), from ``seed``."""
    import torch

    previous = torch.get_default_dtype()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            with torch.device(device):
                yield
        finally:
            torch.set_default_dtype(previous)


def keep_fp32(module, dtype) -> None:
    """What from_pretrained keeps in float32, by the same name match: a diffusers model's
    ``_keep_in_fp32_modules`` always; a transformers model's only under float16 (``_strict``: also
    under bfloat16)."""
    import torch

    if dtype == torch.float32:
        return
    if module.__class__.__module__.startswith("transformers"):
        keep = set(getattr(module, "_keep_in_fp32_modules_strict", None) or ())
        if dtype == torch.float16:
            keep |= set(getattr(module, "_keep_in_fp32_modules", None) or ())
    else:
        keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if keep & set(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.to(torch.float32)


def build_pipeline(folder: Path, class_name: str, device, dtypes: dict, parts: dict | None = None):
    """The pipeline of a random model's folder, its modules built on ``device`` (components in
    ``parts`` are used as given: a model already loaded shares them)."""
    import inspect

    import diffusers
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor

    from . import tiny

    folder = Path(folder)
    marker = tiny.read_marker(folder, MARKER) or {}
    if marker.get("versions") != tiny._versions():
        raise WanError(f"{folder} is not a random model built by these library versions; rebuild it with: "
                       f"python -m deforum_wan tiny-models {folder.parent} --full-size {folder.name}"
                       + (" --scaled" if marker.get("size") == "scaled" else ""))
    device = torch.device(device)
    components = dict(parts or {})
    for part, (name, cfg) in component_configs(marker["model"], marker.get("size", "full")).items():
        if part in components:
            continue
        seed = json.loads((folder / part / SEED_FILE).read_text(encoding="utf-8"))["seed"]
        dtype = dtypes.get(part, dtypes["default"])
        with _building(device, dtype, seed):
            module = _module(part, name, cfg).eval()  # eval(): no dropout, runs repeat
        keep_fp32(module, dtype)
        components[part] = module
    components.setdefault("tokenizer", AutoTokenizer.from_pretrained(folder / "tokenizer"))
    components.setdefault("scheduler", diffusers.UniPCMultistepScheduler.from_pretrained(folder / "scheduler"))
    if (folder / "image_processor").is_dir():
        components.setdefault("image_processor", CLIPImageProcessor.from_pretrained(folder / "image_processor"))
    if _recipe(marker["model"]).expand_timesteps:
        components["expand_timesteps"] = True
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in components.items() if k in accepted})
