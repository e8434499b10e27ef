"""The one owner of loaded backends: a warm worker, a batch actor and bench keep pipelines
loaded between renders in a pool, and only the pool closes them."""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Iterable

from ..models.registry import ModelSpec
from ..models.weights import disk_size, locate_weights
from .base import Backend, free_memory

ACTIVATIONS = 2 << 30  # room for one window's activations beside the weights


def device_free_bytes(device: str = "auto") -> int | None:
    """Free bytes of the CUDA device, or None when the render runs on the CPU."""
    torch = sys.modules.get("torch")  # a backend has imported it by the time this matters
    if torch is None or not torch.cuda.is_available() or not (device in ("auto", "") or device.startswith("cuda")):
        return None
    index = torch.device(device).index if device.startswith("cuda") else None
    return int(torch.cuda.mem_get_info(index if index is not None else torch.cuda.current_device())[0])


def load_estimate(spec: ModelSpec, models_dir: str | None) -> int:
    """Device bytes loading ``spec`` takes beyond what a pair shares: its transformer(s), from
    the diffusers-layout folder on disk (the registry's size where none is found)."""
    if spec.weights and Path(spec.weights).is_file():  # a single file: dequantised to bf16 at most twice its bytes
        return 2 * Path(spec.weights).stat().st_size + ACTIVATIONS
    folder = locate_weights(spec, models_dir)
    if folder is None:
        return int(spec.approx_gb * 0.6 * 2**30) + ACTIVATIONS
    parts = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("transformer")]
    return sum(disk_size(p) for p in parts) + ACTIVATIONS


class BackendPool:
    """Loaded backends by key (model, backend choice, options), closed in one place."""

    def __init__(self) -> None:
        self._loaded: dict[str, Backend] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._loaded

    def __len__(self) -> int:
        return len(self._loaded)

    def get(self, key: str) -> Backend | None:
        return self._loaded.get(key)

    def put(self, key: str, backend: Backend) -> None:
        self._loaded[key] = backend

    def backends(self) -> list[Backend]:
        return list(self._loaded.values())

    def make_room(self, need: int, free: int | None, active: Backend | None = None) -> list[str]:
        """Park idle backends (largest first) until ``need`` bytes fit in ``free`` device
        bytes; ``free`` None (no accelerator) parks nothing. Returns the report's notes."""
        notes: list[str] = []
        if free is None:
            return notes
        for backend in sorted(self._loaded.values(), key=lambda b: -b.bytes_on_device()):
            if free >= need:
                break
            if backend is active or backend.bytes_on_device() == 0:
                continue
            freed = backend.bytes_on_device()
            note = backend.park()
            if note:
                free += freed
                notes.append(note)
        return notes

    def keep_only(self, keys: Iterable[str]) -> None:
        """Close every backend but these (a second big model would double VRAM)."""
        keep = set(keys)
        self._close([k for k in self._loaded if k not in keep])

    def close(self) -> None:
        """Close everything and give the memory back (a no-op when nothing is loaded)."""
        if not self._loaded:
            return  # skip the slow garbage collection when nothing was loaded
        self._close(list(self._loaded))
        free_memory()

    def _close(self, keys: list[str]) -> None:
        for key in keys:
            backend = self._loaded.pop(key)
            try:
                backend.close()
            except Exception:  # freeing the rest matters more than one close failing
                traceback.print_exc(file=sys.stderr)
