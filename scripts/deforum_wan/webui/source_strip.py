"""The tab's preview of what conditions each window of a Video Input or control-video plan: a
small strip of the source frames of its segment (first to last, a few evenly between), decoded
from the checked (confined) video at thumbnail size, inline as PNG data, next to the plan."""
from __future__ import annotations

import base64
import io
from html import escape

import numpy as np

from ..config.planner import ClipPlan
from ..config.source_video import SourceReader

PER_WINDOW = 4  # frames shown per window
THUMB_WIDTH = 96  # px


def strip_frames(source_frames: list[int], count: int = PER_WINDOW) -> list[int]:
    """Up to ``count`` of a window's source frames, its first and last among them, evenly spaced."""
    if len(source_frames) <= count:
        return list(source_frames)
    picks = np.linspace(0, len(source_frames) - 1, count).round().astype(int)
    return [source_frames[i] for i in picks]


def _png(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(frame * 255), 0, 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def source_strips(plan: ClipPlan) -> str:
    """One row per window: its number, its source frames, and the strip; "" without a video.
    A video that cannot be read here is said in one line (the plan itself was checked)."""
    path = plan.control_video or plan.video_input
    windows = [w for w in plan.windows if w.source_frames]
    if not path or not windows:
        return ""
    height = max(2, round(THUMB_WIDTH * plan.height / plan.width / 2) * 2)
    reader = SourceReader(path, THUMB_WIDTH, height)
    what = f"{plan.control} control video" if plan.control else "Video Input source"
    rows = []
    try:
        for w in windows:
            picks = strip_frames(w.source_frames)
            images = "".join(f'<img src="data:image/png;base64,{_png(frame)}" width="{THUMB_WIDTH}"'
                             f' height="{height}" title="source frame {c}" alt="source frame {c}"'
                             ' style="margin-right:2px">'
                             for c, frame in zip(picks, reader.frames(picks)))
            rows.append(f'<div class="wan-source-window" data-window="{w.index}"'
                        f' data-frames="{",".join(map(str, picks))}">'
                        f'<span style="display:inline-block;min-width:11em;font-size:12px">window {w.index}:'
                        f" frames {w.source_frames[0]}-{w.source_frames[-1]}</span>{images}</div>")
    except Exception as exc:  # shown in the view: the plan stands without its preview
        return f'<p class="wan-source-strip">{escape(what)} preview: {escape(str(exc).splitlines()[0])}</p>'
    finally:
        reader.close()
    return (f'<details class="wan-source-strip" open><summary>{escape(what)} per window (what conditions it)'
            f"</summary>{''.join(rows)}</details>")
