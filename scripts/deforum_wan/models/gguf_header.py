"""A GGUF file's header: tensor names, ggml types and shapes, and its metadata, read without the data.

GGUF (llama.cpp's format, ComfyUI-GGUF's for diffusion models): magic ``GGUF``, a version, the
tensor and key/value counts, the key/values, one info per tensor (name, dims in ggml order, type,
offset), then the data from the next multiple of ``general.alignment``. Every count, length and
offset is checked against the file before it is used, so a truncated file, a header that lies or
absurd dimensions are refused in one line before anything is allocated for them (gguf's own
GGUFReader trusts the counts: an array claiming 2**60 items loops that long). The file is
memory-mapped: only the header's pages are read. Shapes come back in torch/numpy order (ggml's
reversed), and ComfyUI-GGUF's ``comfy.gguf.orig_shape.NAME`` (a tensor stored flattened) is applied.
Pure Python: no torch, no gguf package.
"""
from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from pathlib import Path

from ..errors import WanError
from .st_header import MAX_DIM, Header, Tensor

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 8  # ggml has 4; ComfyUI-GGUF writes Wan's 5-D patch embedding
MAX_NAME = 1 << 16
KEEP_ARRAY = 16  # arrays up to this long are kept as metadata (orig_shape); longer ones skipped
ORIG_SHAPE = "comfy.gguf.orig_shape."
# ggml type id -> (name, elements per block, bytes per block): gguf-py's GGML_QUANT_SIZES.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2),
}
# general.file_type (llama.cpp's LlamaFileType) -> the label users know ("Q4_K_M").
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}
# value type id -> struct format (scalars); 8 is a string, 9 an array.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
UNQUANTISED = ("F32", "F16", "BF16", "F64")


class _Bad(Exception):
    """The header does not fit the file (the message says where)."""


class _Cursor:
    """Reads little-endian fields from the mapped file, never past its end."""

    def __init__(self, data, size: int):
        self.data, self.size, self.at = data, size, 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.at + n > self.size:
            raise _Bad(f"{what} needs {n} bytes at {self.at} of {self.size}")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize("<" + fmt)
        self.need(n, what)
        value = struct.unpack_from("<" + fmt, self.data, self.at)[0]
        self.at += n
        return value

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.scalar("Q", what)
        if limit is not None and n > limit:
            raise _Bad(f"{what} claims a string of {n} bytes")
        self.need(n, what)
        raw = bytes(self.data[self.at:self.at + n])
        self.at += n
        return raw.decode("utf-8", errors="replace")

    def value(self, kind: int, what: str):
        if kind in SCALARS:
            return self.scalar(SCALARS[kind], what)
        if kind == STRING:
            return self.string(what)
        if kind == ARRAY:
            item, count = self.scalar("I", what), self.scalar("Q", what)
            if item in SCALARS:
                width = struct.calcsize("<" + SCALARS[item])
                self.need(count * width, f"{what} ({count} items)")
                if count > KEEP_ARRAY:
                    self.at += count * width
                    return f"[{count} items]"
                return [self.value(item, what) for _ in range(count)]
            if item == STRING:
                self.need(count * 8, f"{what} ({count} strings)")  # each at least its length field
                values = [self.string(what) for _ in range(count)]
                return values if count <= KEEP_ARRAY else f"[{count} items]"
            raise _Bad(f"{what} is an array of value type {item}")
        raise _Bad(f"{what} has value type {kind}")


def read_gguf_header(path: str | Path) -> Header:
    path = Path(path)
    what = f"{path.name}: not a usable GGUF file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            if size < 24:
                raise WanError(f"{what} (only {size} bytes)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _parse(path, data, size, what)
    except OSError as e:
        raise WanError(f"{path}: cannot read ({e.strerror or e})") from None
    except _Bad as e:
        raise WanError(f"{what} ({e}: truncated, or the header lies)") from None


def _parse(path: Path, data, size: int, what: str) -> Header:
    c = _Cursor(data, size)
    if bytes(data[:4]) != MAGIC:
        raise WanError(f"{what} (no GGUF magic)")
    c.at = 4
    version = c.scalar("I", "version")
    if version not in VERSIONS:
        order = " (a big-endian file)" if struct.unpack(">I", struct.pack("<I", version))[0] in VERSIONS else ""
        raise WanError(f"{what} (GGUF version {version}{order}; versions 2 and 3 little-endian are read)")
    n_tensors, n_kv = c.scalar("Q", "tensor count"), c.scalar("Q", "key count")
    # Each key/value takes at least 12 bytes, each tensor info at least 24: counts the file cannot hold lie.
    if n_kv * 12 + n_tensors * 24 > size:
        raise _Bad(f"{n_tensors} tensors and {n_kv} keys claimed")
    metadata: dict = {}
    for i in range(n_kv):
        key = c.string(f"key {i}", MAX_NAME)
        metadata[key] = c.value(c.scalar("I", f"type of {key}"), key)
    infos = []
    for i in range(n_tensors):
        name = c.string(f"tensor {i}'s name", MAX_NAME)
        n_dims = c.scalar("I", f"{name}'s dims")
        if n_dims > MAX_DIMS:
            raise WanError(f"{what} (tensor {name!r} has {n_dims} dimensions)")
        dims = [c.scalar("Q", f"{name}'s dims") for _ in range(n_dims)]
        kind, offset = c.scalar("I", f"{name}'s type"), c.scalar("Q", f"{name}'s offset")
        infos.append((name, dims, kind, offset))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise WanError(f"{what} (general.alignment {alignment!r} is not a power of two)")
    start = -(-c.at // alignment) * alignment
    body = size - start
    tensors = {}
    for name, dims, kind, offset in infos:
        tensors[name] = _tensor(name, dims, kind, offset, body, metadata, what)
    return Header(path, size, tensors, {k: str(v) for k, v in metadata.items()},
                  quant=gguf_quant(metadata, tensors))


def _tensor(name: str, dims: list[int], kind: int, offset: int, body: int, metadata: dict, what: str) -> Tensor:
    if kind not in GGML_TYPES:
        raise WanError(f"{what} (tensor {name!r} has ggml type {kind}, unknown here)")
    type_name, block, type_size = GGML_TYPES[kind]
    if any(n > MAX_DIM for n in dims):
        raise WanError(f"{what} (tensor {name!r} has absurd dimensions {dims[::-1]})")
    if dims and dims[0] % block:
        raise WanError(f"{what} (tensor {name!r}: rows of {dims[0]} are not whole {type_name} blocks of {block})")
    nbytes = math.prod(dims) // block * type_size
    if offset + nbytes > body:
        raise _Bad(f"tensor {name!r} claims {nbytes} bytes at {offset} of {body}")
    shape = tuple(reversed(dims))  # ggml lists the fastest-varying dimension first
    orig = metadata.get(ORIG_SHAPE + name)
    if isinstance(orig, list) and all(isinstance(n, int) and 0 <= n <= MAX_DIM for n in orig) \
            and math.prod(orig) == math.prod(shape):
        shape = tuple(orig)
    return Tensor(type_name, shape)


def gguf_quant(metadata: dict, tensors: dict[str, Tensor]) -> str:
    """The file's quantisation as users name it: general.file_type ("Q4_K_M") when the tensors
    bear it out (some converters wrote a ggml type id there), else the commonest type of the
    matrices."""
    matrices = [t.dtype for t in tensors.values() if len(t.shape) >= 2] or [t.dtype for t in tensors.values()]
    if not matrices:
        return "empty"
    counts = Counter(matrices)
    quantised = [d for d in matrices if d not in UNQUANTISED]
    common = Counter(quantised).most_common(1)[0][0] if quantised else counts.most_common(1)[0][0]
    label = FILE_TYPES.get(metadata.get("general.file_type"))
    if label and (label in counts or label.rsplit("_", 1)[0] in counts):
        return label
    return common
