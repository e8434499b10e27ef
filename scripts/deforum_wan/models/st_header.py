"""A safetensors file's header: tensor names, dtypes and shapes, read without the data.

The format is 8 bytes (little-endian header length), a JSON header, then the tensors' bytes;
the header is checked against the file (sizes, offsets, shapes) so a truncated file, a header
that lies or absurd dimensions are refused here in one line, before any loader reads past it.
Pure Python: no torch, no safetensors package.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import WanError

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8}
MAX_HEADER = 100 << 20  # safetensors' own limit
MAX_DIM = 1 << 24  # no Wan tensor has a side this long


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Header:
    path: Path
    size: int  # bytes of the file
    tensors: dict[str, Tensor]
    metadata: dict[str, str]
    quant: str = ""  # the format's own name for its quantisation (GGUF's "Q4_K_M"); "" for safetensors

    def shape(self, name: str) -> tuple[int, ...] | None:
        t = self.tensors.get(name)
        return t.shape if t else None


def read_header(path: str | Path) -> Header:
    path = Path(path)
    what = f"{path.name}: not a usable safetensors file"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise WanError(f"{what} (only {len(head)} bytes)")
            length = int.from_bytes(head, "little")
            if length > MAX_HEADER or 8 + length > size:
                raise WanError(f"{what} (header of {length} bytes in a file of {size}: truncated or not safetensors)")
            raw = f.read(length)
    except OSError as e:
        raise WanError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WanError(f"{what} (its header is not JSON)") from None
    if not isinstance(data, dict):
        raise WanError(f"{what} (its header is not a JSON object)")
    metadata = data.pop("__metadata__", None) or {}
    body = size - 8 - length
    tensors = {}
    for name, entry in data.items():
        tensors[name] = _tensor(name, entry, body, what)
    return Header(path, size, tensors, {str(k): str(v) for k, v in dict(metadata).items()})


def _tensor(name: str, entry, body: int, what: str) -> Tensor:
    try:
        dtype, shape, (start, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        if not all(isinstance(n, int) and n >= 0 for n in (*shape, start, end)):
            raise TypeError
    except (KeyError, TypeError, ValueError, AttributeError):
        raise WanError(f"{what} (tensor {name!r} has a malformed entry)") from None
    if dtype not in DTYPE_BYTES:
        raise WanError(f"{what} (tensor {name!r} has dtype {dtype!r})")
    if any(n > MAX_DIM for n in shape):
        raise WanError(f"{what} (tensor {name!r} has absurd dimensions {list(shape)})")
    nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
    if end - start != nbytes or end > body or start > end:
        raise WanError(f"{what} (tensor {name!r} claims {nbytes} bytes at {start}-{end} of {body}:"
                       " the header lies about sizes or the file is truncated)")
    return Tensor(dtype, shape)
