"""What each part of a model will take in memory, from the weight files' headers (no loading):
the transformer(s), the text encoder, the VAE and the image encoder, each with where it comes
from, its format and quantisation as stored, how it will be held and its bytes.

The bytes follow what the loaders do (backends/single_file.py, diffusers' from_pretrained): a
tensor takes the render dtype, except float8 matrices kept in float8 (an fp8 file, or float8
weight storage asked for), GGUF's quantised matrices kept quantised, and the few modules diffusers
keeps in float32 (the time embedding, the modulation tables, the cross-attention norm). Norms and
embeddings of a float8 model stay in the render dtype, a float8 layer's bias in float8, as
diffusers' layerwise casting has them. Pure Python, headers only: no torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import WanError
from .detect import COMFY_PREFIX, DROPPED, MARKERS, SCALE_SUFFIXES, detect, stored_quant
from .file_models import component_file, components_base, locate_components
from .gguf_header import GGML_TYPES
from .headers import read_header
from .places import model_roots
from .random_full import MARKER as RANDOM_MARKER
from .registry import ModelSpec
from .st_header import DTYPE_BYTES, Header
from .weights import locate_weights

DTYPE_SIZE = {"bfloat16": 2, "float16": 2, "float32": 4}
DTYPE_LABEL = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
# diffusers' WanTransformer3DModel._keep_in_fp32_modules, by name part in either key layout
# (Wan's original: time_embedding, modulation, norm3).
FP32_PARTS = {"time_embedder", "scale_shift_table", "norm1", "norm2", "norm3", "time_embedding", "modulation"}
# diffusers' layerwise casting skips these (Wan's _skip_layerwise_casting_patterns and diffusers'
# default ones, in Wan's original names too: head.head is proj_out).
NOT_FLOAT8 = ("patch_embedding", "condition_embedder", "time_embedding", "time_projection", "text_embedding",
              "img_emb", "norm", "pos_embed")
TOP_NOT_FLOAT8 = ("proj_out.", "head.head.")  # diffusers' "^proj_out$": the output layer, not VACE's
GGUF_PLAIN = ("F32", "F16")  # diffusers' GGUF reader makes these plain tensors (in the render dtype)
PARTS = ("text_encoder", "vae", "image_encoder")
FILE_KIND = {"text_encoder": "text_encoder", "vae": "vae", "image_encoder": "clip_vision"}
# offload setting -> where the weights live
PLACES = {"none": "GPU", "model": "CPU, each model on the GPU while it runs (model offload)",
          "sequential": "CPU, streamed to the GPU layer by layer (sequential offload)",
          "group": "CPU, streamed to the GPU in groups of layers (group offload)"}


@dataclass(frozen=True)
class Part:
    part: str  # transformer | transformer_2 | text_encoder | vae | image_encoder
    source: str  # the file or folder it loads from; "" when not on disk
    format: str  # safetensors file | GGUF file | diffusers folder | random weights | not on disk
    quant: str  # as stored: bf16, fp8 e4m3fn scaled, Q4_K_M, ...
    held: str  # as it will sit in memory
    bytes: int | None  # in memory, from the headers; None when unknown (not on disk, random)
    place: str = ""  # GPU, CPU, or offloaded (placed())

    def to_json(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        if not self.source:
            return f"{self.part}: {self.format}"
        size = "size unknown" if self.bytes is None else f"{human_bytes(self.bytes)} in memory"
        return f"{self.part}: {' '.join(filter(None, (self.format, self.quant)))} from {self.source};" \
            f" {self.held}, {size}, on {self.place}"


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale / 10:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def placement(offload: str, device: str = "auto") -> str:
    """Where the weights live with ``offload`` on ``device`` (auto: a GPU when there is one)."""
    if device == "cpu":
        return "CPU"
    return PLACES.get(offload, PLACES["none"]) + (" (the CPU, in fp32, when there is none)" if device == "auto" else "")


GGML_BLOCKS = {name: (elements, size) for name, elements, size in GGML_TYPES.values()}


def _stored(tensor) -> int:
    """A GGUF tensor's bytes: whole blocks of its type."""
    elements, size = GGML_BLOCKS[tensor.dtype]
    return math.prod(tensor.shape) // elements * size


def held_bytes(header: Header, dtype: str, transformer: bool, float8: bool) -> int:
    """Bytes of ``header``'s tensors as loaded in ``dtype``. ``float8``: the file's float8 matrices
    (or, for a file of another dtype, every matrix) stored in float8."""
    size = DTYPE_SIZE[dtype]
    total = 0
    for name, tensor in header.tensors.items():
        if name in MARKERS or name.endswith(SCALE_SUFFIXES + DROPPED):
            continue  # markers, and scales: kept as plain numbers, or folded into the weights
        numel = math.prod(tensor.shape)
        parts = set(name.split("."))
        fp32 = transformer and bool(parts & FP32_PARTS)
        if tensor.dtype not in DTYPE_BYTES and tensor.dtype not in GGUF_PLAIN:
            # GGUF: stays quantised, but where diffusers keeps float32 (dequantised there)
            total += numel * 4 if fp32 else _stored(tensor)
        elif float8 and not fp32 and _float8_place(header, name):
            total += numel
        else:
            total += numel * (4 if fp32 else size)
    return total


def _float8_place(header: Header, name: str) -> bool:
    """A Linear's weight (a matrix) or its bias that diffusers' layerwise casting stores in float8."""
    if any(p in name for p in NOT_FLOAT8) or name.removeprefix(COMFY_PREFIX).startswith(TOP_NOT_FLOAT8):
        return False
    base = name.rsplit(".", 1)[0]
    weight = header.tensors.get(base + ".weight")
    return weight is not None and len(weight.shape) == 2


def _headers(files: list[Path]) -> list[Header]:
    return [read_header(f) for f in files]


def _folder_files(part: Path) -> list[Path]:
    """A diffusers part folder's weight files: every shard its index names, else its safetensors."""
    index = next(part.glob("*.safetensors.index.json"), None)
    if index is not None:
        try:
            return [part / s for s in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError):
            raise WanError(f"{index}: unreadable shard index") from None
    return sorted(part.glob("*.safetensors"))


def _transformer(name: str, path: Path, dtype: str, float8: bool, keep_fp8: bool) -> Part:
    """A transformer file: float8 when the file is plain or scaled fp8 e4m3fn (kept unless a LoRA
    needs it dequantised) or float8 storage is asked for."""
    header = read_header(path)
    found = detect(header)
    label = DTYPE_LABEL[dtype]
    gguf = path.suffix.lower() == ".gguf"
    fp8_file = not gguf and found.quant in ("fp8 e4m3fn", "fp8 e4m3fn scaled") and keep_fp8
    if gguf and found.quant not in GGUF_PLAIN:
        held = f"{found.quant} kept quantised, dequantised to {label} per layer"
    elif fp8_file or float8:
        held = f"float8 matrices, computed in {label}"
    else:
        held = label
    return Part(name, str(path), "GGUF file" if gguf else "safetensors file", found.quant, held,
                held_bytes(header, dtype, True, (fp8_file or float8) and not gguf))


def _folder_part(name: str, folder: Path | None, dtype: str, transformer: bool = False, float8: bool = False) -> Part:
    if folder is None:
        return Part(name, "", "not on disk", "", "", None)
    if (folder / RANDOM_MARKER).is_file():
        return Part(name, str(folder), "random weights", "", "made where it loads", None)
    files = _folder_files(folder / name)
    headers = _headers(files)
    quant = sorted({stored_quant(h) for h in headers}) or ["none"]
    label = DTYPE_LABEL[dtype]
    held = f"float8 matrices, computed in {label}" if float8 else label
    return Part(name, str(folder / name), "diffusers folder", "/".join(quant), held,
                sum(held_bytes(h, dtype, transformer, float8) for h in headers))


def _component(name: str, path: Path, dtype: str) -> Part:
    header = read_header(path)
    found = detect(header)
    gguf = path.suffix.lower() == ".gguf"
    label = DTYPE_LABEL[dtype]
    held = f"dequantised whole to {label}" if gguf else label
    return Part(name, str(path), "GGUF file" if gguf else "safetensors file", found.quant, held,
                held_bytes(header, dtype, False, False))


def components_source(spec: ModelSpec, models_dir=None) -> Path | None:
    """The diffusers-layout folder the parts a file lacks come from (single_file.components_folder's
    choice, without building a tiny model that is not there)."""
    choice = spec.components.strip()
    if choice and Path(choice).expanduser().is_dir():
        return Path(choice).expanduser()
    if spec.weights and Path(spec.weights).is_dir():
        return Path(spec.weights)
    base = components_base(spec)
    if base is None:
        return None
    return locate_weights(base, models_dir) if base.tiny else locate_components(base, models_dir)


def _wanted(folder: Path | None, transformer: dict | None) -> list[str]:
    """The parts beside the transformer: an image encoder where the transformer takes image
    embeddings (from a file) or the folder's model index lists one."""
    if transformer is not None:
        return [p for p in PARTS if p != "image_encoder" or transformer.get("image_dim") is not None]
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return ["text_encoder", "vae"]
    return [p for p in PARTS if isinstance(index.get(p), list) and index[p][0] is not None]


def model_parts(spec: ModelSpec, models_dir=None, extra=None, dtype: str = "bfloat16", vae_dtype: str = "float32",
                float8: bool = False, keep_fp8: bool = True, place: str = "GPU") -> list[Part]:
    """Each part of ``spec`` as it will load, from the headers. ``float8``: float8 weight storage
    asked for (wan_layerwise_fp8); ``keep_fp8``: an fp8 file stays float8 (no LoRA)."""
    dtype = "bfloat16" if dtype == "auto" else dtype
    vae_dtype = "float32" if vae_dtype == "auto" else vae_dtype
    dtypes = {"text_encoder": dtype, "vae": vae_dtype, "image_encoder": "float32"}
    parts: list[Part] = []
    weights = Path(spec.weights) if spec.weights else None
    if weights is not None and weights.is_file():
        found = detect(read_header(weights))
        parts.append(_transformer("transformer", weights, dtype, float8, keep_fp8))
        if spec.weights_2:
            parts.append(_transformer("transformer_2", Path(spec.weights_2), dtype, float8, keep_fp8))
        folder, roots = components_source(spec, models_dir), model_roots(models_dir, extra)
        for name in _wanted(folder, found.config):
            hit = component_file(FILE_KIND[name], found.config, roots)
            parts.append(_component(name, hit[0], dtypes[name]) if hit else
                         _folder_part(name, folder if folder and (folder / name).is_dir() else None, dtypes[name]))
    else:
        folder = weights if weights is not None else locate_weights(spec, models_dir)
        experts = [n for n in ("transformer", "transformer_2") if (folder / n).is_dir()] if folder else ["transformer"]
        parts += [_folder_part(n, folder, dtype, True, float8) for n in experts]
        parts += [_folder_part(n, folder, dtypes[n]) for n in _wanted(folder, None)]
    return [Part(**{**p.to_json(), "place": place}) for p in parts]
