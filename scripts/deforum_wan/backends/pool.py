"""The one owner of loaded backends: a warm worker, a batch actor and bench keep pipelines
loaded between renders in a pool, and only the pool closes them."""
from __future__ import annotations

import sys
import traceback
from typing import Iterable

from .base import Backend, free_memory


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
