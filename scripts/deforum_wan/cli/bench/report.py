"""A bench result written out: the terminal report, the Markdown table (``--md``), the JSON
file (``--json-file``), and ``bench report``: the steps of benchmarks/run_gpu_random.sh
combined into one JSON and one Markdown file."""
from __future__ import annotations

import json
from pathlib import Path

from . import random_weights
from .camera import camera_lines, camera_markdown
from .drift import drift_lines, drift_markdown
from .formats import format_lines, format_markdown


def _fmt(value, spec: str = ".3f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def _mark(row: dict, key: str, spec: str, none: str = "-") -> str:
    """A cell, with † where random weights make the figure meaningless."""
    return _fmt(row.get(key), spec, none) + (" †" if key in row.get("not_meaningful", {}) else "")


def header(r: dict) -> str:
    return (f"{r['model']} {r['size']}, {r['windows']} windows, {r['frames']} frames, {r['steps']} steps,"
            f" {r['gpu'] or r['device']}, best of {r['repeat']}")


def target_lines(targets: dict) -> list[str]:
    """One line per target: value, bound, verdict (or why it is not judged here)."""
    lines = []
    for key, check in targets.items():
        if not (isinstance(check, dict) and "met" in check):
            continue
        bound = f">= {check['min']}" if "min" in check else f"<= {check['max']}"
        if check["met"] is None:
            verdict = "not measured"
        elif not check["applies"]:
            verdict = "not judged (stated for another model, size or GPU)"
        else:
            verdict = "met" if check["met"] else "NOT met"
        lines.append(f"{key}: {_fmt(check['value'], '')} ({bound}): {verdict}")
    return lines


def _notes(r: dict) -> list[str]:
    """Each preset's notes; those of a preset's own features start with its name."""
    return [note if note.startswith(name + ":") else f"{name}: {note}"
            for name, row in r.get("presets", {}).items() for note in row["notes"]]


def markdown(r: dict) -> str:
    """The presets of a bench result as a Markdown table (benchmarks/results/*.md)."""
    where = r.get("gpu") or f"CPU ({r['torch_threads']} threads)"
    v = r.get("versions", {})
    lines = [f"# deforum-wan presets on {where}", "",
             f"{r['model']} {r['size']}, {r['frames']} frames, {r['windows']} window(s), {r['steps']} steps;"
             f" best of {r['repeat']}; torch {v.get('torch')}, diffusers {v.get('diffusers')},"
             f" CUDA {v.get('cuda')}", "",
             "| preset | time s | speedup | passes skipped | load s | first run s |"
             " peak VRAM MiB (alloc / reserved) | peak RSS MiB | PSNR dB | SSIM | LPIPS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in r.get("presets", {}).items():
        vram = "-" if row["peak_vram_mb"] is None else f"{row['peak_vram_mb']:.0f} / {row['peak_vram_reserved_mb']:.0f}"
        lines.append(f"| {name} | {_mark(row, 'time_s', '.2f')} | {_mark(row, 'speedup_vs_quality', '.2f', '1.00')} |"
                     f" {_mark(row, 'passes_skipped', '.0%')} | {row['load_s']:.2f} | {_mark(row, 'first_run_s', '.2f')} |"
                     f" {vram} | {row['peak_rss_mb']:.0f} | {_mark(row, 'psnr_db', '.2f')} | {_mark(row, 'ssim', '.4f')} |"
                     f" {_mark(row, 'lpips', '.4f')} |")
    lines += random_weights.markdown(r)
    lines.append("")
    lines += [f"- {note}" for note in _notes(r)]
    t = r.get("targets")
    if t:
        lines += ["", f"Targets (the preset targets are stated for {t['case']['model']}"
                      f" {t['case']['size']}x{t['case']['frames']} on CUDA):"]
        lines += [f"- {line}" for line in target_lines(t)]
    lines.append("")
    return "\n".join(lines)


def _loop_lines(r: dict) -> list[str]:
    lines = [f"  bare diffusers calls   {r['bare_diffusers_s']:8.3f} s",
             f"  render loop (frames)   {r['loop_s']:8.3f} s   loop/bare = {r['loop_over_bare']:.3f}",
             f"  ... plus the mp4       {r['loop_with_video_s']:8.3f} s",
             f"  loop, sync PNG writes  {r['loop_sync_writes_s']:8.3f} s   async/sync = {r['async_over_sync_writes']:.3f}"]
    if r["rss_skipped"]:
        lines.append(f"  peak RSS: not measured ({r['rss_skipped']})")
    else:
        lines += [f"  peak RSS {r['frames']} frames   {r['peak_rss_short_mb']:8.1f} MB",
                  f"  peak RSS {r['long_frames']} frames  {r['peak_rss_long_mb']:8.1f} MB"
                  f"   long/short = {r['rss_long_over_short']:.3f}"]
    return lines


def _preset_lines(r: dict) -> list[str]:
    lines = [f"  presets (PSNR/SSIM/LPIPS against quality; LPIPS: {r['quality_metrics']['lpips']})",
             "    preset      time s  speedup  load s  first s  VRAM MiB  RSS MiB  PSNR dB    SSIM   LPIPS"]
    for name, row in r["presets"].items():
        lines.append(f"    {name:<10}{row['time_s']:8.3f}{_fmt(row.get('speedup_vs_quality'), '.2f', '1.00'):>9}"
                     f"{row['load_s']:8.2f}{row['first_run_s']:9.2f}{_fmt(row['peak_vram_mb'], '.0f'):>10}"
                     f"{row['peak_rss_mb']:9.0f}{_fmt(row.get('psnr_db'), '.2f'):>9}{_fmt(row.get('ssim'), '.4f'):>8}"
                     f"{_fmt(row.get('lpips'), '.4f'):>8}")
    return lines + [f"    {note}" for note in _notes(r)]


def text(r: dict) -> list[str]:
    """The terminal report of a bench result."""
    lines = [header(r)]
    if "camera" in r:
        return lines + camera_lines(r["camera"])
    if "drift" in r:
        return lines + drift_lines(r["drift"])
    if "formats" in r:
        return lines + format_lines(r["formats"])
    if "loop_s" in r:
        lines += _loop_lines(r)
    if r.get("presets"):
        lines += _preset_lines(r)
    lines += random_weights.lines(r)
    imp = r["import"]
    lines.append(f"  import {', '.join(imp['modules'])}: {imp['seconds'] * 1000:.1f} ms"
                 f" ({'pulls torch!' if imp['imports_torch'] else 'no torch'})")
    return lines + [f"  target {line}" for line in target_lines(r["targets"])]


def write_markdown(path: str, r: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if "camera" in r:
        body = camera_markdown(r["camera"], header(r))
    elif "formats" in r:
        body = "\n".join([f"# deforum-wan weight formats on {r['gpu'] or r['device']}", "",
                           *format_markdown(r["formats"]), ""])
    else:
        body = drift_markdown(r["drift"], header(r)) if "drift" in r else markdown(r)
    Path(path).write_text(body, encoding="utf-8")


def write_json(path: str, data: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- ``bench report``: the last step of benchmarks/run_gpu_random.sh -------------------------------

GPU_STEPS = ("t2v-presets", "t2v-loop", "ti2v", "formats", "drift", "official")  # the script's step names, its JSON files


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_gpu_report(outdir: str) -> tuple[Path, Path]:
    """Combines the script's steps into ``<date>-<gpu>-random.json`` and ``.md`` in ``outdir``."""
    import datetime
    import re

    folder = Path(outdir)
    parts = {name: _load(folder / f"{name}.json") for name in GPU_STEPS}
    first = next((p for p in parts.values() if p and "device" in p), {}) or {}
    where = first.get("gpu") or first.get("device") or "unknown"
    slug = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
    stem = folder / f"{datetime.date.today().isoformat()}-{slug}-random"
    report = {"gpu": first.get("gpu"), "device": first.get("device"), "versions": first.get("versions"), **parts}
    Path(f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = [f"# deforum-wan on {where}: full-size random weights", "",
          "Random weights: time and memory are the real architecture's; figures marked † say nothing here.", ""]
    for name, title in (("t2v-presets", "T2V-1.3B: presets"), ("ti2v", "TI2V-5B")):
        r = parts[name]
        if r and r.get("presets"):
            body = markdown(r).split("\n", 2)[2]  # without its own title
            md += [f"## {title}", "", body]
        else:
            md += [f"## {title}", "", "not measured (skipped or failed; see its log)", ""]
    loop = parts["t2v-loop"]
    md += ["## T2V-1.3B: the loop over bare diffusers", ""]
    if loop and "loop_over_bare" in loop:
        md += [f"{loop['loop_s']} s / {loop['bare_diffusers_s']} s = {loop['loop_over_bare']}"
               f" ({loop['size']}, {loop['frames']} frames, {loop['steps']} steps)", ""]
        md += [f"- {line}" for line in target_lines(loop.get("targets", {})) if line.startswith("loop_over_bare")]
    else:
        md += ["not measured (skipped or failed; see its log)"]
    fmt = parts["formats"]
    md += ["", "## T2V-1.3B: weight formats", ""]
    md += format_markdown(fmt["formats"]) if fmt and "formats" in fmt else ["not measured (skipped or failed; see its log)"]
    drift = (parts["drift"] or {}).get("drift")
    md += ["", "## T2V-1.3B: what measuring and correcting drift cost", ""]
    if drift:  # its note says what random weights leave out: the drift itself
        md += [drift_markdown(drift, "").split("\n", 2)[2].rstrip("\n")]
    else:
        md += ["not measured (skipped or failed; see its log)"]
    off = parts["official"]
    md += ["", "## The official backend's first window", ""]
    if off is None:
        md.append("not measured")
    elif off.get("ran"):
        md.append(f"ran: load {off['load_s']} s, window {off['window_s']} s ({off['steps']} steps)")
    else:
        md.append("failed: `" + " / ".join(line.strip() for line in off["failure"].splitlines()) + "`")
    Path(f"{stem}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return Path(f"{stem}.json"), Path(f"{stem}.md")
