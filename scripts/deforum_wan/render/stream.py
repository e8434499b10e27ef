"""The carry stream: native frames from the windows -> crossfaded overlaps -> retimed output
frames -> the frame writer; what the next window needs is carried (and saved for a resume)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from ..config.files import open_regular
from ..config.planner import ClipPlan
from ..errors import WanError
from ..pixels import to_uint8
from .color import crossfade
from .frame_writer import FrameWriter
from .retime import Retimer


class CarryStream:
    """The video's native frames on their way out: the held-back tail (the next window's
    overlap and conditioning frame) plus one Retimer per segment; saved after each window."""

    def __init__(self, plan: ClipPlan, writer: FrameWriter, on_frame: Callable[[int, np.ndarray], None]):
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
        # wan_svi pro: the last latent of the window before (z, 1, h, w), carried as it is
        self.svi_latent: np.ndarray | None = None

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
            "state": np.array(self.state() + [next_window], dtype=np.int64),
        }
        if self.svi_latent is not None:
            arrays["svi_latent"] = np.asarray(self.svi_latent, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def state(self) -> list[int]:
        return [self.tail_start, self.final, self.segment, self.retimer.next_out, self.retimer.available,
                self.written]

    def load(self, path: Path, window: int) -> int:
        """Restore the carry saved before ``window``, or before ``window + 1`` (killed between
        the carry and the manifest); returns which. A carry that is unreadable or does not
        hold what the plan puts there is a WanError, and the stream is left as it was."""
        try:
            with open_regular(path, path.name, follow=False) as f, np.load(f, allow_pickle=False) as data:
                tail, ret_frames = data["tail"], data["ret_frames"]
                state = [int(x) for x in data["state"].reshape(-1)]
                ret_index = [int(x) for x in data["ret_index"].reshape(-1)]
                svi_latent = data["svi_latent"] if "svi_latent" in data.files else None
        except Exception as exc:  # whatever a truncated or garbage file makes zipfile/zlib/numpy raise
            raise WanError(f"{path.name} is unreadable ({type(exc).__name__}: {exc})") from None
        saved_for = state[6] if len(state) == 7 else window  # a carry of an older version: unnamed
        if len(state) not in (6, 7) or saved_for not in (window, window + 1) \
                or not 0 < saved_for <= len(self.plan.windows):
            raise WanError(f"{path.name} is not the carry of window {window}")
        want_state, want_tail, want_ret = expected_carry(self.plan, saved_for)
        size = (self.plan.height, self.plan.width, 3)
        if state[:6] != want_state or ret_index != want_ret or not _frames(tail, want_tail, size) \
                or not _frames(ret_frames, len(want_ret), size):
            raise WanError(f"{path.name} does not hold the carry the plan has before window {saved_for}")
        if svi_latent is not None and (svi_latent.dtype.kind != "f" or svi_latent.ndim != 4):
            raise WanError(f"{path.name} holds a broken SVI latent {svi_latent.shape}")
        self.tail = list(tail)
        self.tail_start, self.final, self.segment, next_out, available, self.written = state[:6]
        self.retimer = self._retimer(self.segment, next_out)
        self.retimer.available = available
        self.retimer.frames = {k: ret_frames[i] for i, k in enumerate(ret_index)}
        self.svi_latent = svi_latent
        return saved_for


def _frames(a: np.ndarray, n: int, size: tuple[int, int, int]) -> bool:
    """``n`` float frames of the plan's size (an empty list is saved as (0, 1, 1, 3))."""
    return a.dtype.kind == "f" and a.ndim == 4 and len(a) == n and (n == 0 or a.shape[1:] == size)


class _Discard:
    def put(self, index: int, frame: np.ndarray) -> None:
        pass


def expected_carry(plan: ClipPlan, window: int) -> tuple[list[int], int, list[int]]:
    """The bookkeeping a carry saved before ``window`` holds (its state, tail length and the
    retimer's frame indexes): the plan's windows streamed as 1x1 frames, the way the loop
    streams them (a continuation hands over its overlap and new frames, a first or cut
    window its new frames)."""
    sim = CarryStream(plan, _Discard(), lambda i, f: None)
    pixel = np.zeros((1, 1, 3), np.float32)
    for w in plan.windows[:window]:
        n = w.new_frames if w.index == 0 or w.cut else w.overlap + w.new_frames
        nxt = plan.windows[w.index + 1].overlap if w.index + 1 < len(plan.windows) else 0
        sim.add([pixel] * n, w.overlap, nxt)
    return sim.state(), len(sim.tail), sorted(sim.retimer.frames)
