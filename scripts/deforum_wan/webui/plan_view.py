"""The plan as the tab shows it: a timeline of prompt segments and Wan windows over the output
frames, a short table of the essentials per window (one line each, to fit the tab's right
column), and the full table one click away in a details element, scrolled sideways rather
than wrapped (plain HTML: the same in gradio 3, 4 and 6)."""
from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from html import escape
from pathlib import Path

from ..config.files import read_limited
from ..config.planner import ClipPlan, mode_label
from ..errors import WanError

WIDTH = 1000  # SVG user units across the video
THUMB = 40  # a guided image's thumbnail on the timeline, in SVG units (the timeline is stretched to fit)
MAX_THUMBNAILS = 32  # they travel inside the page (data URIs): a few KB each
COLOURS = ("#4f7cac", "#c0764f", "#5e9c6a", "#9a6fb0", "#b59a3c", "#4fa3a5")


TABLE_STYLE = "width:100%;border-collapse:collapse;font-size:12px;table-layout:auto"
# one line per cell: a long prompt or camera runs on sideways (the box scrolls), never down
CELL_STYLE = "padding:2px 6px;border-bottom:1px solid #8884;vertical-align:top;white-space:nowrap"
SCROLL_STYLE = "overflow-x:auto;max-width:100%"
PROMPT_CHARS = 48  # the summary's prompt, cut (the full one is in its tooltip and the full table)


def plan_html(plan: ClipPlan, memory: Sequence[str] = ()) -> str:
    """``memory``: one short line per model (config/memory_plan.memory_summary), under the summary."""
    notes = "".join(f"<li>{escape(text)}</li>" for text in plan.warnings)
    parseq = (f'<p class="wan-plan-parseq">{escape(plan.parseq)}: the values marked (Parseq) come from it</p>'
              if plan.parseq else "")
    held = (f'<p class="wan-plan-memory" style="font-size:12px">in memory (from the weight files\' headers):'
            f' {escape("; ".join(memory))}</p>' if memory else "")
    return (f'<div class="wan-plan">{parseq}{timeline_svg(plan)}'
            f'<div class="wan-plan-summary" style="{SCROLL_STYLE}">{summary_table(plan)}</div>{held}'
            f'<details class="wan-plan-full"><summary>Full table: seed, guidance, steps, camera, whole prompts'
            f'</summary><div style="{SCROLL_STYLE}">{windows_table(plan)}</div></details>'
            + (f"<ul>{notes}</ul>" if notes else "") + "</div>")


def summary_table(plan: ClipPlan) -> str:
    """Per window what tells the windows apart: its frames, mode, model, the prompt's start."""
    head = ("window", "frames", "mode", "model", "prompt")
    rows = [_head(head)]
    for w in plan.windows:
        prompt = w.prompt if len(w.prompt) <= PROMPT_CHARS else w.prompt[:PROMPT_CHARS - 1].rstrip() + "…"
        cells = (w.index, f"{w.start_frame}-{max(w.end_frame - 1, w.start_frame)}", mode_label(w),
                 w.model)
        rows.append("<tr>" + "".join(f'<td style="{CELL_STYLE}">{escape(str(c))}</td>' for c in cells)
                    + f'<td style="{CELL_STYLE}" title="{escape(w.prompt)}">{escape(prompt)}</td></tr>')
    return "".join(rows) + "</tbody></table>"


def _head(names) -> str:
    return (f'<table style="{TABLE_STYLE}"><thead><tr>'
            + "".join(f'<th style="{CELL_STYLE};text-align:left">{h}</th>' for h in names) + "</tr></thead><tbody>")


def timeline_svg(plan: ClipPlan) -> str:
    """Segments on the top row, windows below (the overlap each shares with the one before in
    a lighter shade), frame 0 to the last at the full width."""
    total = max(plan.max_frames, 1)

    def x(frame: float) -> float:
        return round(frame / total * WIDTH, 2)

    # stretched to the column's width at a fixed height; names and frames are in each bar's tooltip
    parts = [f'<svg viewBox="0 0 {WIDTH} 64" width="100%" height="56" preserveAspectRatio="none" role="img"'
             ' aria-label="timeline of the plan: prompt segments above, windows below">']
    for seg in plan.segments:
        colour = COLOURS[seg.index % len(COLOURS)]
        parts.append(f'<rect x="{x(seg.start)}" y="2" width="{max(x(seg.end) - x(seg.start), 1)}" height="24"'
                     f' fill="{colour}"><title>{escape(f"frames {seg.start}-{seg.end - 1}: {seg.prompt}")}</title>'
                     '</rect>')
    parts += [f'<image href="{uri}" x="{x(frame)}" y="2" width="{THUMB}" height="24" preserveAspectRatio="xMinYMid meet">'
              f'<title>{escape(f"guided image {Path(image).name} at frame {frame}")}</title></image>'
              for frame, image, uri in thumbnails(plan)]
    for w in plan.windows:
        colour = COLOURS[w.segment % len(COLOURS)]
        start, end = x(w.start_frame), x(w.end_frame)
        parts.append(f'<rect x="{start}" y="34" width="{max(end - start - 1, 1)}" height="22" fill="{colour}"'
                     f' opacity="0.85"><title>{escape(_window_title(plan, w))}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def thumbnails(plan: ClipPlan) -> list[tuple[int, str, str]]:
    """(frame, image, data URI) of each guided image's small thumbnail; an image that cannot be
    read here (a name the job resolves elsewhere) has none."""
    from ..render.images import MAX_IMAGE_BYTES, open_raster

    out = []
    for frame, image in sorted(plan.anchors.items())[:MAX_THUMBNAILS]:
        try:
            with open_raster(read_limited(image, MAX_IMAGE_BYTES, "guided image"), "guided image") as img:
                small = img.convert("RGB")
                small.thumbnail((THUMB * 2, 48))
                buf = io.BytesIO()
                small.save(buf, "PNG")
        except (OSError, WanError):
            continue
        out.append((frame, image, "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()))
    return out


def _window_title(plan: ClipPlan, w) -> str:
    return (f"window {w.index}: frames {w.start_frame}-{max(w.end_frame - 1, w.start_frame)}, {mode_label(w)},"
            f" {w.model}, {w.native_frames} native frames")


def windows_table(plan: ClipPlan) -> str:
    columns = {"guidance_scale": "guidance"}  # a sources key -> its column, where they differ
    given = {columns.get(key, key) for w in plan.windows for key, source in w.sources.items()
             if source.startswith("Parseq")}
    head = tuple(h + (" (Parseq)" if h in given else "") for h in
                 ("window", "frames", "seconds", "mode", "model", "seed", "guidance", "steps", "camera", "prompt"))
    rows = [_head(head)]
    for w in plan.windows:
        last = max(w.end_frame - 1, w.start_frame)
        cells = (w.index, f"{w.start_frame}-{last}", f"{w.start_frame / plan.fps:.2f}-{w.end_frame / plan.fps:.2f}",
                 mode_label(w), w.model, w.seed, f"{w.guidance_scale:g}", w.steps,
                 _camera_cell(w), w.prompt)
        rows.append("<tr>" + "".join(f'<td style="{CELL_STYLE}">{escape(str(c))}</td>' for c in cells) + "</tr>")
    rows.append("</tbody></table>")
    return "".join(rows)


def _camera_cell(w) -> str:
    c = w.camera
    if not c:
        return "-"
    moves = f"zoom {c['zoom']:.3f}, pan {c['pan_x']:+.1f}% {c['pan_y']:+.1f}%, rot {c['rotation']:+.1f}"
    source = f" ({w.motion})" if w.motion and w.motion != "camera" else ""  # a hybrid video moves it too
    return f"{w.wan_camera or 'not followed'}{source}: {moves}, cover {c['coverage']:.0%}"
