"""A weight file's header by its format: safetensors or GGUF (the same Header either way)."""
from __future__ import annotations

from pathlib import Path

from .gguf_header import read_gguf_header
from .st_header import Header
from .st_header import read_header as read_safetensors_header


def read_header(path: str | Path) -> Header:
    if Path(path).suffix.lower() == ".gguf":
        return read_gguf_header(path)
    return read_safetensors_header(path)
