"""The plan as the tab shows it: a timeline of prompt segments and Wan windows over the output
frames, then one table row per window (plain HTML: the same in gradio 3, 4 and 6, and it
wraps instead of running off the right edge as monospaced text does)."""
from __future__ import annotations

from html import escape

from ..config.planner import ClipPlan

WIDTH = 1000  # SVG user units across the video
COLOURS = ("#4f7cac", "#c0764f", "#5e9c6a", "#9a6fb0", "#b59a3c", "#4fa3a5")


TABLE_STYLE = "width:100%;border-collapse:collapse;font-size:12px;table-layout:auto"
CELL_STYLE = "padding:2px 6px;border-bottom:1px solid #8884;vertical-align:top"


def plan_html(plan: ClipPlan) -> str:
    # scrolls sideways in a narrow column instead of cutting the table off
    return f'<div class="wan-plan" style="overflow-x:auto">{timeline_svg(plan)}{windows_table(plan)}</div>'


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
    for w in plan.windows:
        colour = COLOURS[w.segment % len(COLOURS)]
        start, end = x(w.start_frame), x(w.end_frame)
        parts.append(f'<rect x="{start}" y="34" width="{max(end - start - 1, 1)}" height="22" fill="{colour}"'
                     f' opacity="0.85"><title>{escape(_window_title(plan, w))}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _window_title(plan: ClipPlan, w) -> str:
    return (f"window {w.index}: frames {w.start_frame}-{max(w.end_frame - 1, w.start_frame)}, {w.mode},"
            f" {w.model}, {w.native_frames} native frames")


def windows_table(plan: ClipPlan) -> str:
    head = ("window", "frames", "seconds", "mode", "model", "seed", "guidance", "steps", "camera", "prompt")
    rows = [f'<table style="{TABLE_STYLE}"><thead><tr>'
            + "".join(f'<th style="{CELL_STYLE};text-align:left">{h}</th>' for h in head) + "</tr></thead><tbody>"]
    for w in plan.windows:
        last = max(w.end_frame - 1, w.start_frame)
        cells = (w.index, f"{w.start_frame}-{last}", f"{w.start_frame / plan.fps:.2f}-{w.end_frame / plan.fps:.2f}",
                 w.mode + (" (cut)" if w.cut else ""), w.model, w.seed, f"{w.guidance_scale:g}", w.steps,
                 _camera_cell(w), w.prompt)
        rows.append("<tr>" + "".join(f'<td style="{CELL_STYLE}">{escape(str(c))}</td>' for c in cells) + "</tr>")
    rows.append("</tbody></table>")
    notes = [f"<li>{escape(text)}</li>" for text in plan.warnings]
    return "".join(rows) + (f"<ul>{''.join(notes)}</ul>" if notes else "")


def _camera_cell(w) -> str:
    c = w.camera
    if not c:
        return "-"
    moves = f"zoom {c['zoom']:.3f}, pan {c['pan_x']:+.1f}% {c['pan_y']:+.1f}%, rot {c['rotation']:+.1f}"
    return f"{w.wan_camera or 'not followed'}: {moves}, cover {c['coverage']:.0%}"
