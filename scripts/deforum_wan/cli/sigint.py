"""Ctrl-C for long renders: the first stops at the next denoising step (frames kept,
video written), a second one aborts at once."""
from __future__ import annotations

import contextlib
import signal
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def stop_on_sigint(message: str) -> Iterator[Callable[[], bool]]:
    """Yield ``should_stop()``; SIGINT's previous handler is restored on exit."""
    stopped = [False]

    def on_sigint(signum, frame):
        if stopped[0]:
            raise KeyboardInterrupt
        stopped[0] = True
        print(f"\n{message} (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: stopped[0]
    finally:
        signal.signal(signal.SIGINT, previous)
