"""Frames on disk: PNG encoding, the background writer, and the check of frames a resume keeps."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from ..config.files import open_regular
from ..errors import WanError
from .names import atomic_write_bytes, frame_path

PNG_COMPRESSION = 1  # cv2 level 1: fastest; level 3 is 1.5x slower for <1% smaller files


def encode_png(frame: np.ndarray, level: int = PNG_COMPRESSION) -> bytes:
    """RGB uint8 (H,W,3) -> PNG bytes. cv2 measured ~1.6x faster than Pillow at equal
    level; Pillow is the fallback when the render extra (opencv) is absent."""
    try:
        import cv2  # render extra; imported here so path helpers stay cheap
    except ImportError:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, "PNG", compress_level=level)
        return buf.getvalue()
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {frame.shape} frame as PNG")
    return data.tobytes()


def frame_problem(path: Path, size: tuple[int, int]) -> str | None:
    """Why a frame file is not a whole PNG of ``size`` (W, H), or None when it is."""
    from PIL import Image

    if not os.path.lexists(path):
        return "missing"
    try:
        # a link (to a picture elsewhere) or a FIFO is no frame this render wrote
        with open_regular(path, "the frame", follow=False) as f, Image.open(f, formats=["PNG"]) as img:
            if img.size != tuple(size):  # before decoding: a small file may claim a huge size
                return f"{img.size[0]}x{img.size[1]}, not {size[0]}x{size[1]}"
            img.load()  # the header alone says nothing of a truncated or garbled body
    except Exception as e:  # whatever a garbled file makes Pillow raise (OSError, SyntaxError, bombs...)
        return f"unreadable ({e})"
    return None


def first_bad_frame(run_dir: str | os.PathLike, ts: str, n_frames: int, size: tuple[int, int]
                    ) -> tuple[int, str] | None:
    """The first of frames 0..n_frames-1 that is missing, broken or of another size, and why.
    Decoded on a few threads (Pillow's decoders release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        problems = pool.map(lambda i: frame_problem(frame_path(run_dir, ts, i), size), range(n_frames))
        return next(((i, p) for i, p in enumerate(problems) if p is not None), None)


_STOP = object()


class FrameWriter:
    """Writes ``{ts}_{i:09}.png`` frames on a background thread.

    ``put`` copies the frame and blocks while ``max_queued`` frames wait, so memory
    stays flat (at most max_queued + 1 frames held) however fast frames arrive. A write
    error stops the writer; the next ``put``/``after``/``close`` raises it in the
    caller's thread (OSErrors as a one-line WanError). ``sync=True`` writes inline.

    Each file is fsynced but its folder is not: save the manifest (same folder,
    fsynced) through ``after()``, so the frames a manifest counts are on disk.
    """

    def __init__(self, run_dir: str | os.PathLike, timestring: str, *, max_queued: int = 8,
                 sync: bool = False, compress_level: int = PNG_COMPRESSION, fsync: bool = True):
        if max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        self.run_dir = Path(run_dir)
        self.timestring = timestring
        self.max_queued = max_queued
        self.sync = sync
        self.compress_level = compress_level
        self.fsync = fsync
        self.written = 0  # frames on disk (read it in an after() callback or after close)
        self.high_water = 0  # most frames ever waiting in the queue
        self._error: BaseException | None = None  # sticky: every later call raises it
        self._closed = False
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._thread = None
        if not sync:
            self._thread = threading.Thread(target=self._run, name="deforum-wan-frames", daemon=True)
            self._thread.start()

    def put(self, index: int, frame: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("FrameWriter is closed")
        self._raise_error()
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"frame index must be an int >= 0, got {index!r}")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (H,W,3) RGB, got {frame.dtype} {frame.shape}")
        # Copy: the caller may reuse its buffer, and a view would pin a whole window.
        frame = np.array(frame, copy=True, order="C")
        if self.sync:
            self._call(self._write, int(index), frame)
            return
        self._queue.put((int(index), frame))  # blocks while full
        self.high_water = max(self.high_water, self._queue.qsize())

    def after(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once every frame put so far is on disk: on the writer thread, so
        the caller goes on (the next window generates while this one's frames and
        checkpoint are written); inline in sync mode. Its errors surface like write errors,
        and a write error stays the answer after close too."""
        self._raise_error()
        if self._closed:
            raise RuntimeError("FrameWriter is closed")
        if self.sync:
            self._call(fn)
            return
        self._queue.put((None, fn))

    def close(self) -> None:
        """Write what is queued, stop the thread, raise any write error."""
        if not self._closed:
            self._closed = True
            if self._thread is not None:
                self._queue.put(_STOP)
                self._thread.join()
        self._raise_error()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except Exception:
            if exc_type is None:  # don't hide the error that is already unwinding
                raise

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if self._error is None:  # after an error, drain so put() never deadlocks
                    index, payload = item
                    if index is None:
                        payload()
                    else:
                        self._write(index, payload)
            except BaseException as e:
                self._error = e
            finally:
                self._queue.task_done()

    def _write(self, index: int, frame: np.ndarray) -> None:
        data = encode_png(frame, self.compress_level)
        atomic_write_bytes(frame_path(self.run_dir, self.timestring, index), data,
                           fsync=self.fsync, fsync_dir=False)
        self.written += 1

    def _call(self, fn, *args) -> None:
        """Sync mode: run inline, keeping the error sticky as the thread does."""
        try:
            fn(*args)
        except BaseException as e:
            self._error = e
            self._raise_error()

    def _raise_error(self) -> None:
        e = self._error
        if e is None:
            return
        if isinstance(e, OSError):
            raise WanError(f"could not write to {self.run_dir}: {e.strerror or e} "
                           f"({self.written} frames written are kept)") from e
        raise e
