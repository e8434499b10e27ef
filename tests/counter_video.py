"""Synthetic source videos for the Video Input tests: each frame carries its own index as
black/white blocks (10 bits, most significant first), so which source frame ended up where
is read back from the pixels, through a real encode and decode."""
from __future__ import annotations

import numpy as np

BITS = 10
BLOCK = 16  # px per bit: survives h264 at its default quality


def counter_frame(index: int, width: int = BITS * BLOCK, height: int = 32) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    cell = width // BITS
    for bit in range(BITS):
        if index >> (BITS - 1 - bit) & 1:
            frame[:, bit * cell:(bit + 1) * cell] = 255
    return frame


def read_counter(frame: np.ndarray) -> int:
    """The index drawn by ``counter_frame`` into a (possibly resized) frame, uint8 or [0, 1] float."""
    arr = np.asarray(frame, np.float32)
    if arr.max() <= 1.0:
        arr = arr * 255
    width = arr.shape[1]
    value = 0
    for bit in range(BITS):
        lo, hi = bit * width // BITS, (bit + 1) * width // BITS
        centre = arr[:, lo + (hi - lo) // 4: hi - (hi - lo) // 4].mean()
        value = value * 2 + int(centre > 127)
    return value


def write_counter_video(path, frames: int, fps: float = 30, width: int = BITS * BLOCK, height: int = 32) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=16, quality=9)
    writer.send(None)
    for i in range(frames):
        writer.send(np.ascontiguousarray(counter_frame(i, width, height)))
    writer.close()
