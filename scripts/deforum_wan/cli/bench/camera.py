"""``bench --camera``: how Wan follows Deforum's camera, each way side by side on the same
settings: ``wan_camera off``, ``guide`` (at its defaults, and at every ``--grid`` free/lock
pair) and ``vace``. Per row: the render's time and its ratio to ``off``, the camera adherence
(render.adherence: pixels and degrees between the motion in the frames and the path) and how
far the frames stray from the uncamera'd render (PSNR/SSIM against ``off``: the price in
Wan's own picture). ``--md``/``--json-file`` write the table (benchmarks/results/).
"""
from __future__ import annotations

import json
import time

from ...errors import WanError
from .measure import psnr, read_frames, render, ssim

# A Deforum 2D move for settings without one of their own: zoom in, pan, a slow turn.
CAMERA_MOVE = {"animation_mode": "2D", "zoom": "0: (1.01)", "translation_x": "0: (1.5)", "angle": "0: (0.3)"}
CAMERA_KEYS = ("animation_mode", "zoom", "angle", "translation_x", "translation_y", "translation_z",
               "rotation_3d_x", "rotation_3d_y", "rotation_3d_z", "transform_center_x", "transform_center_y",
               "strength_schedule", "border", "use_depth_warping", "depth_algorithm", "fov_schedule",
               "near_schedule", "far_schedule", "enable_perspective_flip", "perspective_flip_theta",
               "perspective_flip_phi", "perspective_flip_gamma", "perspective_flip_fv", "aspect_ratio_schedule",
               "aspect_ratio_use_old_formula", "padding_mode", "sampling_mode", "wan_depth_model")


def parse_grid(text: str | None) -> list[tuple[float, float]]:
    """``0.02:0.05,0.04:0.1`` -> [(0.02, 0.05), (0.04, 0.1)]: free and lock shares of the steps."""
    pairs = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        free, sep, lock = item.partition(":")
        try:
            pair = (float(free), float(lock))
        except ValueError:
            raise WanError(f"--grid takes FREE:LOCK pairs of numbers, like 0.04:0.1, not {item.strip()!r}") from None
        if not sep or not 0 <= pair[0] <= pair[1] <= 1:
            raise WanError(f"--grid pair {item.strip()!r}: FREE:LOCK with 0 <= FREE <= LOCK <= 1")
        pairs.append(pair)
    return pairs


def camera_settings(base: dict, settings_file: str | None) -> dict:
    """The bench's settings with a camera: the file's camera (and prompts) when given, else
    CAMERA_MOVE."""
    if not settings_file:
        return {**base, **CAMERA_MOVE}
    from ...config.settings import read_settings_file

    raw = read_settings_file(settings_file)
    camera = {k: raw[k] for k in CAMERA_KEYS if k in raw}
    if raw.get("prompts"):
        camera["prompts"] = raw["prompts"]
    return {**base, **camera}


def variants(settings: dict, grid: list[tuple[float, float]], vace_model: str | None) -> list[tuple[str, dict]]:
    rows = [("off", {**settings, "wan_camera": "off"}), ("guide", {**settings, "wan_camera": "guide"})]
    rows += [(f"guide {free:g}/{lock:g}", {**settings, "wan_camera": "guide", "wan_camera_free": free,
                                           "wan_camera_lock": lock}) for free, lock in grid]
    if vace_model:
        rows.append(("vace", {**settings, "wan_camera": "vace", "wan_continue_model": vace_model}))
    return rows


def default_vace_model(model_id: str) -> str | None:
    from ...models.registry import MODELS

    if model_id.startswith("tiny-"):
        return "tiny-random-vace"
    family = MODELS[model_id].family if model_id in MODELS else None
    return "wan2.1-vace-1.3b" if family == "wan2.1" else None


def run_camera_bench(args, base: dict, outdir: str, models_dir: str | None) -> dict:
    from ...backends.pool import BackendPool

    settings = camera_settings(base, getattr(args, "settings", None))
    vace = getattr(args, "vace_model", None) or default_vace_model(settings["wan_model"])
    pool = BackendPool()
    rows: dict[str, dict] = {}
    reference = None
    try:
        for name, data in variants(settings, parse_grid(getattr(args, "grid", None)), vace):
            render(data, outdir, models_dir, pool)  # warm: loaded once, not timed
            times, result = [], None
            for _ in range(max(1, args.repeat)):
                start = time.perf_counter()
                result = render(data, outdir, models_dir, pool)[1]
                times.append(time.perf_counter() - start)
            frames = read_frames(result)
            if reference is None:
                reference = frames
            adherence = result.camera_adherence or {}
            rows[name] = {"time_s": round(min(times), 3), "px": adherence.get("pairs") and adherence["px"],
                          "deg": adherence.get("pairs") and adherence["deg"], "pairs": adherence.get("pairs", 0),
                          "psnr_db_vs_off": None if name == "off" else round(psnr(reference, frames), 2),
                          "ssim_vs_off": None if name == "off" else ssim(reference, frames)}
    finally:
        pool.close()
    off = rows["off"]["time_s"]
    for row in rows.values():
        row["time_over_off"] = round(row["time_s"] / off, 3) if off else None
    return {"camera": {k: settings[k] for k in CAMERA_KEYS if k in settings}, "vace_model": vace, "rows": rows}


def camera_lines(result: dict) -> list[str]:
    lines = ["  camera (adherence: OpenCV's motion against Deforum's path; PSNR/SSIM against off)",
             "    wan_camera          time s  x off   px err  deg err  PSNR dB    SSIM"]
    for name, row in result["rows"].items():
        lines.append(f"    {name:<18}{row['time_s']:8.3f}{_num(row['time_over_off'], '.2f'):>7}"
                     f"{_num(row['px'], '.2f'):>9}{_num(row['deg'], '.2f'):>9}"
                     f"{_num(row['psnr_db_vs_off'], '.2f'):>9}{_num(row['ssim_vs_off'], '.4f'):>8}")
    return lines


def camera_markdown(result: dict, header: str) -> str:
    lines = [f"# wan_camera side by side: {header}", "",
             f"camera: `{json.dumps(result['camera'])}`; VACE rows with {result['vace_model'] or '-'}", "",
             "| wan_camera | time s | x off | px error | deg error | PSNR dB vs off | SSIM vs off |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | {row['time_s']:.2f} | {_num(row['time_over_off'], '.2f')} | {_num(row['px'], '.2f')}"
                     f" | {_num(row['deg'], '.2f')} | {_num(row['psnr_db_vs_off'], '.2f')} |"
                     f" {_num(row['ssim_vs_off'], '.4f')} |")
    return "\n".join(lines) + "\n"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
