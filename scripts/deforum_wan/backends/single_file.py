"""A Wan pipeline from single weight files: the transformer's file, and its text encoder,
tokenizer, VAE and CLIP from files in the model folders or a diffusers-layout folder.

One reader per file format (``READERS``): safetensors in bf16/fp16/fp32 or fp8 e4m3fn (kept in
float8 storage, computed per layer in the render dtype), ComfyUI's *scaled* fp8 included (weight =
fp8 * its ``scale_weight``, the scale applied as each layer computes: scaled_fp8.py); GGUF (ComfyUI-GGUF's Wan files, any
ggml type diffusers dequantises), whose quantised matrices stay quantised in memory and are
dequantised layer by layer as they compute (diffusers' GGUFQuantizationConfig). The transformer
goes through diffusers' own single-file loader (``from_single_file``, whose converter takes Wan's
original key layout), its config derived from the tensors (detect.py). A GGUF text encoder (llama.cpp's
T5 encoder layout) loads through transformers' own GGUF reader, which dequantises it whole to the
render dtype. A Wan 2.2
A14B pair of files becomes ``transformer`` (high noise) and ``transformer_2`` (low noise) with
the ``boundary_ratio`` between them, as diffusers' A14B pipelines have them.
"""
from __future__ import annotations

import inspect
import json
import math
import tempfile
from pathlib import Path

from ..errors import BackendError, WanError
from ..models.detect import DROPPED, MARKERS, SCALE_SUFFIXES, Detected, detect
from ..models.file_models import component_file, components_base, folder_transformer, locate_components
from ..models.headers import read_header
from ..models.places import model_roots
from ..models.random_full import keep_fp32, published_config
from ..models.registry import ModelSpec
from ..models.weights import resolve_models_dir

SCALE = ".scale_weight"  # where a kept float8 weight's scale is handed on: ``<layer>.scale_weight``


def _read_safetensors(path: Path, found: Detected, dtype, keep_fp8: bool = False) -> dict:
    """The state dict in ``dtype``, fp8 dequantised by its per-tensor scales, the prefix and the
    scale tensors gone. ``keep_fp8``: float8 tensors stay as the file maps them, a scaled one's
    scale beside it as ``<layer>.scale_weight`` (float32)."""
    import torch
    from safetensors.torch import load_file

    raw = load_file(str(path))
    out = {}
    for name, tensor in raw.items():
        if name in MARKERS or name.endswith(SCALE_SUFFIXES + DROPPED):
            continue
        key = name[len(found.prefix):] if found.prefix and name.startswith(found.prefix) else name
        scale = next((raw[name[:-len(".weight")] + s] for s in SCALE_SUFFIXES
                      if name.endswith(".weight") and name[:-len(".weight")] + s in raw), None)
        keep = keep_fp8 and tensor.dtype == torch.float8_e4m3fn
        if scale is not None and keep:
            out[key[:-len(".weight")] + SCALE] = scale.to(torch.float32)
        elif scale is not None:
            tensor = tensor.to(torch.float32) * scale.to(torch.float32)
        out[key] = tensor.to(dtype) if tensor.is_floating_point() and not keep else tensor
    return out


def _read_gguf(path: Path, found: Detected, dtype, keep_fp8: bool = False) -> dict:
    """The state dict with quantised tensors as diffusers' GGUFParameter (still quantised), the
    others in ``dtype``; ComfyUI-GGUF's flattened tensors given their shapes back. The header was
    checked against the file (gguf_header.py) before diffusers' reader maps it."""
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    if found.kind != "transformer":
        raise WanError(f"{path.name}: a GGUF {found.summary} is not read as a state dict (only GGUF transformers are)")
    header = read_header(path)
    try:
        raw = load_gguf_checkpoint(str(path))
    except ValueError as e:  # a ggml type diffusers cannot dequantise
        raise WanError(f"{path.name}: {str(e).splitlines()[0]}") from None
    out = {}
    for name, tensor in raw.items():
        key = name[len(found.prefix):] if found.prefix and name.startswith(found.prefix) else name
        shape = header.tensors[name].shape
        if hasattr(tensor, "quant_type"):
            if tuple(tensor.shape[:-1]) != tuple(shape[:-1]):
                raise WanError(f"{path.name}: tensor {name!r} is quantised and stored reshaped; not loadable here")
            out[key] = tensor
        else:
            out[key] = tensor.reshape(shape).to(dtype)
    return out


READERS = {".safetensors": _read_safetensors, ".gguf": _read_gguf}


def read_state_dict(path: Path, found: Detected, dtype, keep_fp8: bool = False) -> dict:
    return READERS[path.suffix.lower()](path, found, dtype, keep_fp8)


# --- where each component comes from ------------------------------------------------------------

def components_folder(spec: ModelSpec, models_dir=None) -> Path | None:
    """A diffusers-layout folder for the parts a file lacks: ``wan_components`` (a folder or a
    registry id), else the folder ``wan_model`` named, else the registry model of the same
    architecture when it is on disk (tiny ones are built)."""
    choice = spec.components.strip()
    if choice and Path(choice).expanduser().is_dir():
        return Path(choice).expanduser()
    if Path(spec.weights).is_dir():
        return Path(spec.weights)
    base = components_base(spec)
    if base is None:
        return None
    if base.tiny:
        from ..models.tiny import ensure_tiny_model

        return ensure_tiny_model(base.id, resolve_models_dir(models_dir))
    return locate_components(base, models_dir)


# --- loading each part -----------------------------------------------------------------------

def _config_dir(config: dict) -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="deforum-wan-config-")
    (Path(tmp.name) / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp


def transformer_config(found: Detected, hint_folder: Path | None) -> dict:
    """The diffusers config of a detected transformer: the hint folder's own when its widths are
    the same (it knows the head count and rope length), else the derived one."""
    config = {k: v for k, v in found.config.items() if v is not None or k in ("image_dim", "added_kv_proj_dim",
                                                                             "pos_embed_seq_len")}
    hint = _read_config(hint_folder / "transformer") if hint_folder else None
    same = ("in_channels", "out_channels", "num_layers", "ffn_dim", "text_dim", "freq_dim", "image_dim")
    if hint and all(hint.get(k) == config.get(k) for k in same):
        heads, head_dim = hint.get("num_attention_heads", 0), hint.get("attention_head_dim", 0)
        if heads * head_dim == found.width:
            config.update(num_attention_heads=heads, attention_head_dim=head_dim,
                          rope_max_seq_len=hint.get("rope_max_seq_len", 1024), eps=hint.get("eps", 1e-6))
    if config.get("num_attention_heads") is None:
        raise WanError(f"cannot tell the attention heads of a {found.width}-wide transformer (not a published size):"
                       " give wan_components a diffusers folder (or registry id) of the same architecture")
    return config


def _read_config(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def keeps_fp8(path: Path, found: Detected) -> bool:
    """An fp8 e4m3fn safetensors file keeps float8 storage, a *scaled* one too when each scale is
    one number per tensor (ComfyUI's): applied as each layer computes (scaled_fp8.py). Scales of
    any other shape are dequantised into the weights."""
    if path.suffix.lower() != ".safetensors" or found.quant not in ("fp8 e4m3fn", "fp8 e4m3fn scaled"):
        return False
    tensors = read_header(path).tensors
    return all(math.prod(t.shape) == 1 for n, t in tensors.items() if n.endswith(SCALE_SUFFIXES))


def storage_note(path: Path, found: Detected, dtype, keep_fp8: bool = True) -> str:
    """How a transformer file's weights sit in memory, for the load report."""
    name = str(dtype).replace("torch.", "")
    scales = " (times its per-tensor scales)" if found.quant.endswith("scaled") else ""
    if keeps_fp8(path, found):
        return f"{path.name}: {found.quant} weights kept in float8{scales}, each layer computed in {name}" \
            if keep_fp8 else f"{path.name}: {found.quant} dequantised to {name} (LoRAs are loaded into it)"
    if found.quant.startswith("fp8") and found.quant.endswith("scaled"):
        return f"{path.name}: {found.quant} dequantised to {name} (its scales are not one per tensor)"
    if path.suffix.lower() == ".gguf" and found.quant not in ("F16", "F32"):  # diffusers reads those as plain tensors
        return f"{path.name}: {found.quant} kept quantised, dequantised to {name} per layer"
    return f"{path.name}: {found.quant} weights in {name}"


def load_transformer(path: Path, found: Detected, dtype, hint_folder: Path | None, keep_fp8: bool = True):
    import diffusers

    config = transformer_config(found, hint_folder)
    fp8 = keep_fp8 and keeps_fp8(path, found)
    state = read_state_dict(path, found, dtype, keep_fp8=fp8)
    if "img_emb.emb_pos" in state:  # FLF2V's position table: diffusers' converter has no rename for it
        state["condition_embedder.image_embedder.pos_embed"] = state.pop("img_emb.emb_pos")
    cls = diffusers.WanVACETransformer3DModel if config.get("vace_layers") else diffusers.WanTransformer3DModel
    # GGUF: the quantised matrices stay quantised, dequantised to ``dtype`` as each layer runs.
    quant = {"quantization_config": diffusers.GGUFQuantizationConfig(compute_dtype=dtype)} \
        if path.suffix.lower() == ".gguf" else {}
    if fp8:
        model = _fp8_model(cls, config, state, dtype)
    else:
        with _config_dir(config) as tmp:
            model = cls.from_single_file(state, config=tmp, dtype=dtype, **quant).eval()
        keep_fp32(model, dtype)  # what from_pretrained keeps in float32 (from_single_file only under fp16)
    # The rope tables are computed, not stored: made again in float32, as from_pretrained has them
    # (from_single_file rounds them through the load dtype).
    c = model.config
    model.rope = type(model.rope)(c.attention_head_dim, tuple(c.patch_size), c.rope_max_seq_len)
    return model


def _fp8_model(cls, config: dict, state: dict, dtype):
    """The transformer with its float8 layers holding the file's tensors as mapped (no copy, no
    upcast): built on the meta device with diffusers' layerwise casting (each layer upcast to
    ``dtype`` as it computes), then each tensor assigned in the dtype its place has. Norms and
    embeddings (diffusers' skip patterns) are in ``dtype``; a float8 layer's bias is rounded to
    float8, as layerwise casting does."""
    import torch
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    from .scaled_fp8 import make_scaled, unmake_scaled

    with torch.device("meta"):
        model = cls.from_config(config)
    model.to(dtype)
    keep_fp32(model, dtype)
    # Scaled fp8: each scale keyed by its weight's name, renamed as the weights are.
    scales = convert_wan_transformer_to_diffusers(
        {k[:-len(SCALE)] + ".weight": state.pop(k) for k in [k for k in state if k.endswith(SCALE)]})
    state = convert_wan_transformer_to_diffusers(state)
    layers = {}
    for key, scale in scales.items():
        layer = model.get_submodule(key.rsplit(".", 1)[0]) if key in state else None
        if type(layer) is torch.nn.Linear:  # before the casting hook captures its forward
            make_scaled(layer, float(scale))
            layers[key] = layer
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    wanted = model.state_dict()
    odd = sorted(set(state) ^ set(wanted))
    if odd:
        raise WanError(f"an fp8 transformer file whose tensors do not fit its architecture ({odd[0]!r}, ...)")
    for key, scale in scales.items():
        if wanted[key].dtype == torch.float8_e4m3fn and key not in layers:
            raise WanError(f"a scaled fp8 tensor {key!r} in a layer that is not a Linear; not loadable in float8")
        if wanted[key].dtype != torch.float8_e4m3fn:  # a layer kept in ``dtype`` (norms, embeddings)
            state[key] = state[key].to(torch.float32) * scale
            if key in layers:
                unmake_scaled(layers[key])
    model.load_state_dict({k: v.to(wanted[k].dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def load_text_encoder(path: Path, found: Detected, dtype, hint_folder: Path | None):
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    if path.suffix.lower() == ".gguf":  # transformers' GGUF reader: config and weights from the file
        try:
            return UMT5EncoderModel.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype).eval()
        except (ValueError, KeyError, RuntimeError) as e:  # metadata transformers cannot map
            raise WanError(f"{path.name}: not loadable as a UMT5 encoder ({str(e).splitlines()[0][:200]})") from None
    hint = _read_config(hint_folder / "text_encoder") if hint_folder else None
    base = hint if hint and hint.get("d_model") == found.config["d_model"] else published_config("umt5-xxl")
    config = UMT5Config(**{**{k: v for k, v in base.items() if not k.startswith("_")}, **found.config})
    state = read_state_dict(path, found, dtype)
    embed = state.get("shared.weight", state.get("encoder.embed_tokens.weight"))
    state.setdefault("shared.weight", embed)
    state.setdefault("encoder.embed_tokens.weight", embed)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype).eval()


def load_vae(path: Path, found: Detected, dtype, hint_folder: Path | None):
    import diffusers

    hint = _read_config(hint_folder / "vae") if hint_folder else None
    z, base = found.config["z_dim"], found.config["base_dim"]
    config = hint if hint and hint.get("z_dim") == z and hint.get("base_dim") == base else \
        {16: published_config("vae-wan2.1"), 48: published_config("vae-wan2.2")}.get(z)
    if config is None or config.get("base_dim") != base:
        raise WanError(f"{path.name}: a {found.summary} of no known config; give wan_components a folder with it")
    state = read_state_dict(path, found, dtype)
    with _config_dir(config) as tmp:
        return diffusers.AutoencoderKLWan.from_single_file(state, config=tmp, dtype=dtype).eval()


def load_clip_vision(path: Path, found: Detected, dtype, hint_folder: Path | None):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    hint = _read_config(hint_folder / "image_encoder") if hint_folder else None
    base = hint if hint and hint.get("hidden_size") == found.config["hidden_size"] else published_config("clip-vit-h-14")
    config = CLIPVisionConfig(**{**{k: v for k, v in base.items() if not k.startswith("_")}, **found.config})
    with torch.device("meta"):
        model = CLIPVisionModel(config)
    wanted = set(model.state_dict())
    state = {}
    for name, tensor in read_state_dict(path, found, dtype).items():
        for key in (name, "vision_model." + name, name.removeprefix("vision_model.")):
            if key in wanted:
                state[key] = tensor
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(dtype).eval()


LOADERS = {"text_encoder": load_text_encoder, "vae": load_vae, "image_encoder": load_clip_vision}
FILE_KIND = {"text_encoder": "text_encoder", "vae": "vae", "image_encoder": "clip_vision"}


def load_file_pipeline(spec: ModelSpec, class_name: str, dtypes: dict, models_dir=None, parts: dict | None = None,
                       extra=None, keep_fp8: bool = True):
    """The pipeline of ``spec`` (a transformer file or a folder's transformer file), each other
    part from ``parts``, a fitting file in the model folders, or the components folder.
    ``keep_fp8``: a plain fp8 file stays float8 (off: dequantised, for LoRAs)."""
    import diffusers
    from transformers import AutoTokenizer, CLIPImageProcessor

    path = Path(spec.weights)
    roots = model_roots(models_dir, extra)
    transformer_path = folder_transformer(path) if path.is_dir() else path
    found = detect(read_header(transformer_path))
    folder = components_folder(spec, models_dir)
    components = dict(parts or {})
    tconfig = found.config
    cls = getattr(diffusers, class_name)
    accepted = inspect.signature(cls.__init__).parameters
    needs_image = "image_encoder" in accepted and tconfig.get("image_dim") is not None
    # Where each part comes from, decided before anything loads: a missing one is named at once.
    plan, missing = {}, []
    for part in ("text_encoder", "vae", "image_encoder", "tokenizer", "scheduler", "image_processor"):
        if part in components or part not in accepted or (part.startswith("image_") and not needs_image):
            continue
        hit = component_file(FILE_KIND[part], tconfig, roots) if part in FILE_KIND else None
        if hit is not None:
            plan[part] = ("file", hit)
        elif folder is not None and (folder / part).is_dir():
            plan[part] = ("folder", folder / part)
        elif part in ("scheduler", "image_processor"):
            plan[part] = ("default", None)
        else:
            missing.append(part)
    if missing:
        raise BackendError(_missing_message(spec, missing, roots))
    components["transformer"] = load_transformer(transformer_path, found, dtypes["default"], folder, keep_fp8)
    if spec.weights_2:  # Wan 2.2 A14B: the low-noise expert takes over below the boundary
        low = Path(spec.weights_2)
        components["transformer_2"] = load_transformer(low, detect(read_header(low)), dtypes["default"], folder,
                                                       keep_fp8)
        components["boundary_ratio"] = boundary_ratio(spec, folder)
    for part, (source, where) in plan.items():
        dtype = dtypes.get(part, dtypes["default"])
        if source == "file":
            components[part] = LOADERS[part](where[0], where[1], dtype, folder)
        elif part in LOADERS:
            components[part] = _from_folder(part, folder, dtype)
        elif part == "tokenizer":
            components[part] = AutoTokenizer.from_pretrained(str(where))
        elif part == "scheduler":
            components[part] = _scheduler(where, spec.shift)
        else:  # the image processor: the folder's, or CLIP ViT-H/14's input
            components[part] = CLIPImageProcessor.from_pretrained(str(where)) if where else \
                CLIPImageProcessor(crop_size=224, size=224)
    if found.variant == "ti2v":
        components["expand_timesteps"] = True
    pipe = cls(**{k: v for k, v in components.items() if k in accepted})
    pipe.storage_notes = [storage_note(transformer_path, found, dtypes["default"], keep_fp8)]
    if spec.weights_2:
        low = Path(spec.weights_2)
        pipe.storage_notes.append(storage_note(low, detect(read_header(low)), dtypes["default"], keep_fp8))
    return pipe


# diffusers' A14B model_index.json: where the low-noise expert takes over, as a share of the
# 1000 training timesteps (Wan2.2's configs: boundary 0.875 for T2V, 0.900 for I2V).
BOUNDARY = {"t2v": 0.875, "i2v": 0.9}


def boundary_ratio(spec: ModelSpec, folder: Path | None) -> float:
    """The components folder's own boundary when it is a two-expert model, else Wan2.2's."""
    try:
        value = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("boundary_ratio")
    except (OSError, ValueError, TypeError):
        value = None
    return float(value) if isinstance(value, (int, float)) else BOUNDARY[spec.kind]


def _from_folder(part: str, folder: Path, dtype):
    import diffusers
    import transformers

    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    library, class_name = index[part][:2]
    cls = getattr(transformers if library == "transformers" else diffusers, class_name)
    return cls.from_pretrained(str(folder / part), dtype=dtype).eval()


def _scheduler(folder, shift: float = 5.0):
    from diffusers import UniPCMultistepScheduler

    if folder is not None:
        return UniPCMultistepScheduler.from_pretrained(folder)
    # What the Wan diffusers repos ship: UniPC on flow sigmas, the model's shift.
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                   num_train_timesteps=1000)


def _missing_message(spec: ModelSpec, missing: list[str], roots: list[Path]) -> str:
    where = {"text_encoder": "text_encoders/ (ComfyUI's umt5_xxl_*.safetensors)",
             "vae": "vae/ (wan_2.1_vae.safetensors, or the Wan 2.2 VAE for TI2V-5B)",
             "image_encoder": "clip_vision/ (clip_vision_h.safetensors)", "tokenizer": "a diffusers folder"}
    wanted = "; ".join(f"{part}: a file in {where.get(part, 'a diffusers folder')}" for part in missing)
    return (f"{spec.id} is a transformer file; missing {', '.join(missing)} ({wanted}) in"
            f" {', '.join(map(str, roots))}. Or fetch them alone: python -m deforum_wan download {Path(spec.weights).name}"
            " (the Wan tab's Download), or set wan_components to a registry model on disk")
