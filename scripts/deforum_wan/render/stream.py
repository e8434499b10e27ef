"""The carry stream: native frames from the windows -> crossfaded overlaps -> retimed output
frames -> the frame writer; what the next window needs is carried (and saved for a resume)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from ..config.planner import ClipPlan
from ..errors import WanError
from . import output
from .color import crossfade, to_uint8
from .retime import Retimer


class CarryStream:
    """The video's native frames on their way out: the held-back tail (the next window's
    overlap and conditioning frame) plus one Retimer per segment; saved after each window."""

    def __init__(self, plan: ClipPlan, writer: output.FrameWriter, on_frame: Callable[[int, np.ndarray], None]):
        self.plan = plan
        self.writer = writer
        self.on_frame = on_frame
        self.offsets = np.cumsum([0] + [s.native_frames for s in plan.segments]).tolist()
        self.tail: list[np.ndarray] = []  # last native frames, float32
        self.tail_start = 0  # global native index of tail[0]
        self.final = 0  # native frames handed to the retimers
        self.segment = 0
        self.retimer = self._retimer(0, 0)
        self.written = 0  # output frames sent to the writer

    def _retimer(self, seg: int, next_out: int) -> Retimer:
        s = self.plan.segments[seg]
        mode = "nearest" if self.plan.retime == "native" else self.plan.retime
        return Retimer(s.native_frames, s.end - s.start, mode, next_out)

    def add(self, frames: list[np.ndarray], overlap: int, hold: int) -> None:
        """Merge a window's frames (its first ``overlap`` crossfaded with the tail), then
        finalize everything but the last ``hold`` frames (the next window's overlap)."""
        if overlap:
            n = len(self.tail)
            old = np.stack(self.tail[n - overlap:])
            blended = crossfade(old, np.stack(frames[:overlap]))
            self.tail[n - overlap:] = list(blended)
            frames = frames[overlap:]
        self.tail.extend(frames)
        end = self.tail_start + len(self.tail)
        self._finalize(end - hold)
        keep = max(hold + 1, 2)  # the next conditioning frame sits just before the held ones
        drop = max(0, len(self.tail) - keep)
        self.tail, self.tail_start = self.tail[drop:], self.tail_start + drop

    def _finalize(self, upto: int) -> None:
        while self.final < upto:
            frame = self.tail[self.final - self.tail_start]
            seg = self.segment
            for j, out in self.retimer.push(self.final - self.offsets[seg], frame):
                index = self.plan.segments[seg].start + j
                u8 = to_uint8(out)
                self.writer.put(index, u8)
                self.on_frame(index, u8)
                self.written = index + 1
            self.final += 1
            if self.final == self.offsets[seg + 1] and seg + 1 < len(self.plan.segments):
                self.segment = seg + 1
                self.retimer = self._retimer(seg + 1, 0)

    def conditioning(self, overlap: int) -> np.ndarray:
        """The frame a continuation window starts from: ``overlap`` frames before the end."""
        return self.tail[len(self.tail) - 1 - overlap]

    def context(self, overlap: int) -> np.ndarray:
        """The conditioning frame and the overlap after it: what a VACE window keeps (N, H, W, 3)."""
        return np.stack(self.tail[len(self.tail) - 1 - overlap:])

    # Carry: what the next window needs, saved after each window for resume.
    def carry_bytes(self, next_window: int) -> bytes:
        """A snapshot of the carry (npz), taken now and written later by the frame writer."""
        ret = sorted(self.retimer.frames)
        arrays = {
            "tail": np.stack(self.tail) if self.tail else np.zeros((0, 1, 1, 3), np.float32),
            "ret_index": np.array(ret, dtype=np.int64),
            "ret_frames": (np.stack([self.retimer.frames[k] for k in ret]) if ret
                           else np.zeros((0, 1, 1, 3), np.float32)),
            "state": np.array([self.tail_start, self.final, self.segment, self.retimer.next_out,
                               self.retimer.available, self.written, next_window], dtype=np.int64),
        }
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def load(self, path: Path) -> int | None:
        """Restore the carry; returns the window it was saved for (None: an older carry)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                tail, state = data["tail"], data["state"].tolist()
                ret_index, ret_frames = data["ret_index"].tolist(), data["ret_frames"]
        except (OSError, KeyError, ValueError) as exc:
            raise WanError(f"cannot resume: {path.name} is unreadable ({exc})") from None
        self.tail = list(tail)
        self.tail_start, self.final, self.segment, next_out, available, self.written = state[:6]
        self.retimer = self._retimer(self.segment, next_out)
        self.retimer.available = available
        self.retimer.frames = {k: ret_frames[i] for i, k in enumerate(ret_index)}
        return state[6] if len(state) > 6 else None
