"""The one runner of checked jobs: ``LocalRunner(...).run(checked, on_event, should_stop)``.

The command line's ``render``, a local batch, each Ray actor and the worker process behind
the job queue all render through it; it keeps the loaded pipelines between jobs in its
pool (closed by ``close()``), so a warm worker or actor loads a model once.
"""
from __future__ import annotations

import os
from typing import Callable

from ..backends.pool import BackendPool
from .job import CheckedJob, EventSink
from .loop import Renderer, RenderResult


class LocalRunner:
    def __init__(self, outdir: str | os.PathLike, *, models_dir: str | None = None, backend: str | None = None,
                 keep_warm: bool = True, sync_writes: bool = False):
        self.outdir = outdir
        self.models_dir = models_dir
        self.backend = backend
        self.sync_writes = sync_writes
        # None: each render keeps its own pool and frees it at its end (a cold worker).
        self.pool: BackendPool | None = BackendPool() if keep_warm else None

    def run(self, checked: CheckedJob, on_event: EventSink | None = None,
            should_stop: Callable[[], bool] | None = None) -> RenderResult:
        """Render one checked job; raises Interrupted (frames kept) or WanError."""
        return Renderer.for_job(checked, self.outdir, backend=self.backend, models_dir=self.models_dir,
                                on_event=on_event, should_stop=should_stop, sync_writes=self.sync_writes,
                                pool=self.pool).run()

    def close(self) -> None:
        """Free every loaded pipeline (a failed render's pool may hold half-freed memory)."""
        if self.pool is not None:
            self.pool.close()
