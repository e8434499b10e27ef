"""``bench --drift``: how far one long shot drifts with each ``wan_color_match`` setting (and,
with ``--svi``, with Stable Video Infinity's conditioning), side by side in one run. The shot: a still camera, one prompt, ``--windows`` chained windows. Per
setting: each window's shift against the first (chroma, sharpness; render.drift), LV-Bench's
VDE for colour and clarity, the seams against the motion inside windows, and the time per
window (from the render's own events, the model load left out), and what the drift measure and
the row's colour correction cost per window (timed again here on the run's own frames).

The tiny models' numbers say nothing about Wan's drift: the same command on real weights on a
GPU is the calibration. On full-size random weights (benchmarks/run_gpu_random.sh) the row
measures cost only: those times at the real size.
"""
from __future__ import annotations

import time

from .measure import render

SETTINGS = ("off", "deforum", "lab")  # wan_color_match, in the order shown
# The shot: no camera (animation_mode None), one prompt; Deforum's LAB matching for `deforum`.
SHOT = {"animation_mode": "None", "prompts": {"0": "a lighthouse on a cliff above the sea, overcast"},
        "color_coherence": "LAB", "seed_behavior": "fixed"}
TINY_NOTE = ("tiny or random models: these numbers say nothing about Wan's drift (random weights);"
             " run the same command with real weights on a GPU to calibrate")
RANDOM_NOTE = ("random weights: the drift figures say nothing about Wan's drift; this row measures cost:"
               " the time per window of rendering, of the drift measure and of the colour correction")


def shot_settings(base: dict, windows: int) -> dict:
    """``base`` as one still shot of exactly ``windows`` windows (its max_frames cut at the end
    of the last one)."""
    from ...config.planner import make_plan
    from ...config.settings import load_settings

    data = {**base, **SHOT}
    long = make_plan(load_settings({**data, "max_frames": 100_000}))
    if len(long.windows) >= windows:
        # the planner spreads the frames over the windows: the most frames that still plan `windows`
        for frames in range(long.windows[windows - 1].end_frame, 0, -1):
            if len(make_plan(load_settings({**data, "max_frames": frames})).windows) == windows:
                return {**data, "max_frames": frames}
    from ...errors import WanError

    raise WanError(f"--windows {windows}: this shot cannot be planned as {windows} windows")


def _window_times(events: list[dict]) -> list[float]:
    """Seconds each window took: from the model being loaded (or the last window) to its end."""
    times, last = [], None
    for event in events:
        if event["event"] == "loaded":
            last = event["time"]
        elif event["event"] == "window_done" and last is not None:
            times.append(event["time"] - last)
            last = event["time"]
    return times


def variants(settings: dict, svi: str | None) -> list[tuple[str, dict]]:
    """Each wan_color_match setting; with ``svi``, also SVI's conditioning (no colour match)."""
    rows = [(name, {**settings, "wan_color_match": name}) for name in SETTINGS]
    if svi and svi != "off":  # a seed per window, as SVI advises
        rows.append((f"svi {svi}", {**settings, "wan_color_match": "off", "wan_svi": svi, "seed_behavior": "iter"}))
    return rows


def costs(data: dict, result) -> tuple[float, float | None]:
    """Milliseconds per window of the drift measure and of ``data``'s colour correction (None
    when it corrects nothing), timed on the run's frames: each window matched to the first frame."""
    import numpy as np

    from ...config.planner import make_plan
    from ...config.settings import load_settings
    from ...render.color_match import ColorCorrection
    from ...render.drift import measure
    from .measure import read_frames

    settings = load_settings(data)
    plan = make_plan(settings)
    frames = read_frames(result)
    start = time.perf_counter()
    measure(list(frames), [(w.segment, w.start_frame, w.end_frame, w.index == 0 or w.cut) for w in plan.windows])
    measure_ms = 1000 * (time.perf_counter() - start) / len(plan.windows)
    colors = ColorCorrection(settings.color_match, settings.color_coherence, 1.0, "shot")
    if not colors.active:
        return round(measure_ms, 2), None
    later = plan.windows[1:]
    start = time.perf_counter()
    for w in later:
        colors.correct(list(frames[w.start_frame:w.end_frame].astype(np.float32) / 255.0), frames[0])
    return round(measure_ms, 2), round(1000 * (time.perf_counter() - start) / max(len(later), 1), 2)


def run_drift_bench(args, base: dict, outdir: str, models_dir: str | None) -> dict:
    from ...backends.pool import BackendPool

    settings = shot_settings(base, args.windows)
    pool = BackendPool()
    rows: dict[str, dict] = {}
    try:
        for name, data in variants(settings, getattr(args, "svi", None)):
            events: list[dict] = []
            start = time.perf_counter()
            result = render(data, outdir, models_dir, pool, on_event=events.append)[1]
            total = time.perf_counter() - start
            drift = result.drift or {}
            per_window = _window_times(events)
            shot = (drift.get("shots") or [{}])[0]
            measure_ms, correct_ms = costs(data, result)
            rows[name] = {
                "time_s": round(total, 3),
                "window_s": round(sum(per_window) / len(per_window), 3) if per_window else None,
                "vde_colour": shot.get("vde_colour"), "vde_clarity": shot.get("vde_clarity"),
                "seam_ratio": drift.get("seam_ratio"), "measure_ms": measure_ms, "correct_ms": correct_ms,
                "windows": [{"window": w["window"], "chroma": w["shift"]["chroma"],
                             "sharpness": w["shift"]["sharpness"], "brightness": w["shift"]["brightness"]}
                            for w in drift.get("windows", [])],
            }
    finally:
        pool.close()
    return {"windows": args.windows, "frames": settings["max_frames"], "prompt": settings["prompts"]["0"],
            "color_coherence": settings["color_coherence"], "rows": rows,
            "note": RANDOM_NOTE if getattr(args, "random_weights", False)
            else TINY_NOTE if str(settings.get("wan_model", "")).startswith("tiny-") else None}


def drift_lines(result: dict) -> list[str]:
    lines = [f"  drift of one still shot, {result['windows']} windows, {result['frames']} frames,"
             " per wan_color_match (shift against window 0; VDE: LV-Bench's video drift error)",
             "    (time s: the whole render, the first one's with the model load; s/window: without it;"
             " measure, correct: ms per window)",
             "    wan_color_match  time s  s/window  VDE colour  VDE clarity  seams/motion  measure  correct"]
    for name, row in result["rows"].items():
        lines.append(f"    {name:<16}{row['time_s']:8.2f}{_num(row['window_s'], '.2f'):>10}"
                     f"{_num(row['vde_colour'], '.3f'):>12}{_num(row['vde_clarity'], '.3f'):>13}"
                     f"{_num(row['seam_ratio'], '.2f'):>14}{_num(row.get('measure_ms'), '.1f'):>9}"
                     f"{_num(row.get('correct_ms'), '.1f'):>9}")
    for measure in ("chroma", "sharpness"):
        lines.append(f"    {measure} shift per window:")
        for name, row in result["rows"].items():
            lines.append(f"      {name:<14}" + " ".join(_pct(w[measure]) for w in row["windows"]))
    if result.get("note"):
        lines.append(f"  note: {result['note']}")
    return lines


def drift_markdown(result: dict, header: str) -> str:
    windows = max((len(r["windows"]) for r in result["rows"].values()), default=0)
    lines = [f"# wan_color_match side by side on one still shot: {header}", "",
             f"prompt `{result['prompt']}`, color_coherence `{result['color_coherence']}`", ""]
    if result.get("note"):
        lines += [f"**{result['note']}**", ""]
    lines += ["time s: the whole render, the first one's with the model load; s/window: without it;"
              " measure ms, correct ms: the drift measure and the colour correction per window", "",
              "| wan_color_match | time s | s/window | VDE colour | VDE clarity | seams/motion | measure ms |"
              " correct ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['time_s']:.2f} | {_num(row['window_s'], '.2f')} |"
                     f" {_num(row['vde_colour'], '.3f')} | {_num(row['vde_clarity'], '.3f')} |"
                     f" {_num(row['seam_ratio'], '.2f')} | {_num(row.get('measure_ms'), '.1f')} |"
                     f" {_num(row.get('correct_ms'), '.1f')} |")
    for measure in ("chroma", "sharpness"):
        lines += ["", f"{measure} shift against window 0:", "",
                  "| wan_color_match | " + " | ".join(f"w{i}" for i in range(windows)) + " |",
                  "|---|" + "---:|" * windows]
        for name, row in result["rows"].items():
            lines.append(f"| {name} | " + " | ".join(_pct(w[measure]) for w in row["windows"]) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f}%"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)

