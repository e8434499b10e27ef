"""``bench --preset``: each speed preset renders the same windows in this process: warm time,
load time, first-run time (compile happens there), peak RSS, peak VRAM, the passes the
transformer blocks really ran, and for every preset but ``quality`` PSNR/SSIM/LPIPS of its
frames against ``quality``'s."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .measure import Lpips, psnr, read_frames, render, reset_rss_peak, rss_peak_mb, ssim, ssim_available


def preset_names(values: list[str] | None) -> list[str]:
    """Rows to bench: presets (``all``), or a preset with settings keys on top
    (``quality+wan_layerwise_fp8=true``: float8 storage beside plain quality, in the same run)."""
    from ...config.presets import PRESETS, get_preset

    names: list[str] = []
    for value in values or []:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            base, plus, keys = item.partition("+")
            if plus:
                _variant(item)  # an unknown key is refused here, before anything renders
                rows = (f"{get_preset(base).name}+{keys}",)
            else:
                rows = PRESETS if item.lower() == "all" else (get_preset(item).name,)
            names += [name for name in rows if name not in names]
    if names and "quality" not in names:
        names.insert(0, "quality")  # the reference every other preset is compared with
    return sorted(names, key=lambda n: n != "quality")


def _variant(name: str) -> tuple[str, dict]:
    """``preset+key=value+...`` -> (preset, the settings keys it sets, read as ``--set`` reads them)."""
    from ...config.keys import BY_NAME
    from ...config.settings import parse_override
    from ...errors import WanError

    preset, *pairs = name.split("+")
    keys = {}
    for pair in pairs:
        try:
            key, value = parse_override(pair)
        except WanError:
            key = None
        if key not in BY_NAME:
            raise WanError(f"--preset {name}: {pair!r} is not KEY=VALUE with a settings key (e.g. wan_vae_tiling=true)")
        keys[key] = value
    return preset, keys


def build_layered_tiny(models_dir: str | os.PathLike, layers: int) -> Path:
    """``tiny-random`` with ``layers`` transformer blocks under ``models_dir``.

    The standard tiny model has one block, which block caches cannot skip; the marker
    file is the one tiny.py checks, so the normal loader takes this folder as it is.
    """
    from ...models import tiny

    folder = Path(models_dir) / "tiny-random"
    try:
        marker = json.loads((folder / tiny.MARKER).read_text(encoding="utf-8"))
        if marker.get("versions") == tiny._versions() and marker.get("layers") == layers:
            return folder
    except (OSError, ValueError):
        pass
    return tiny.build_tiny_model("tiny-random", folder, layers=layers)


@contextlib.contextmanager
def _counting_passes(pool):
    """Counts the passes the transformers' blocks really run (a cache that skips the blocks
    skips the last one's attention too): yields a list that holds the count once the block
    ends, or stays empty where nothing could be counted."""
    counts = [0]
    handles = []
    for backend in pool.backends():
        if getattr(backend, "compiled", False):
            continue  # a compiled block runs its hooks at trace time only: not counted
        pipe = getattr(backend, "pipe", None)
        for name in ("transformer", "transformer_2"):
            blocks = getattr(getattr(pipe, name, None), "blocks", None)
            if blocks:  # the last block's attention runs only when the cache does not skip the blocks
                handles.append(blocks[-1].attn1.register_forward_pre_hook(
                    lambda *_: counts.__setitem__(0, counts[0] + 1)))
    out: list = []
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
        if handles:
            out.append(counts[0])


def _bench_preset(name: str, settings: dict, outdir: str, models_dir: str | None, repeat: int,
                  warmup: int) -> tuple[dict, object]:
    import torch

    from ...backends.base import free_memory
    from ...backends.pool import BackendPool
    from ...config.presets import resolve
    from ...config.settings import load_settings

    cuda = torch.cuda.is_available()
    loads: list[float] = []
    started: dict = {}
    notes: list[str] = []

    steps_run: list[int] = []

    def on_event(event: dict) -> None:
        if event["event"] == "step":
            steps_run.append(event["steps"])  # a distilled LoRA runs its own count
        elif event["event"] == "loading":
            started[event["model"]] = event["time"]
        elif event["event"] == "loaded" and event["model"] in started:
            loads.append(event["time"] - started.pop(event["model"]))
            notes.extend(n for n in event.get("notes", []) if n not in notes)

    preset, keys = _variant(name)
    data = dict(settings, wan_preset=preset, **keys)
    s = load_settings(data)
    pool = BackendPool()
    free_memory()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    scope = reset_rss_peak()
    first, result = render(data, outdir, models_dir, pool, on_event=on_event)
    for _ in range(max(0, warmup - 1)):
        render(data, outdir, models_dir, pool)
    times = []
    for _ in range(repeat):
        with _counting_passes(pool) as passes:
            seconds, result = render(data, outdir, models_dir, pool)
        times.append(seconds)
    frames = read_frames(result)
    row = {
        "preset": name, "time_s": round(min(times), 3), "first_run_s": round(first, 3),
        "load_s": round(sum(loads), 3), "peak_rss_mb": round(rss_peak_mb(), 1), "peak_rss_scope": scope,
        "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_vram_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1) if cuda else None,
        "frames": int(frames.shape[0]), "steps_run": max(steps_run, default=None), "notes": notes,
        "options": resolve(s.preset, s.speed_overrides),
        # what the backends did: the cache in use, and how many passes the blocks really ran
        "cache": sorted({b.cache_plan.kind for b in pool.backends() if hasattr(b, "cache_plan")}),
        "transformer_passes": passes[0] if passes else None,
    }
    pool.close()
    return row, frames


def bench_presets(names: list[str], settings: dict, outdir: str, models_dir: str | None, repeat: int,
                  warmup: int) -> tuple[dict, dict]:
    """(one row per preset, the metrics used to compare frames)."""
    import torch

    rows: dict = {}
    reference = None
    lpips = Lpips("cuda" if torch.cuda.is_available() else "cpu")
    for name in names:
        row, frames = _bench_preset(name, settings, os.path.join(outdir, name), models_dir, repeat, warmup)
        if name == "quality":
            reference = frames
        else:
            q = rows["quality"]
            row["speedup_vs_quality"] = round(q["time_s"] / row["time_s"], 3) if row["time_s"] else None
            row["psnr_db"] = round(psnr(reference, frames), 2) if frames.shape == reference.shape else None
            value = ssim(reference, frames) if frames.shape == reference.shape else None
            row["ssim"] = None if value is None else round(value, 4)
            value = lpips(reference, frames) if frames.shape == reference.shape else None
            row["lpips"] = None if value is None else round(value, 4)
            if row["transformer_passes"] is not None and q["transformer_passes"]:
                row["passes_skipped"] = round(1 - row["transformer_passes"] / q["transformer_passes"], 3)
        rows[name] = row
    metrics = {"psnr": "numpy", "ssim": "skimage.metrics.structural_similarity" if ssim_available()
               else "unavailable: scikit-image is not installed", "lpips": lpips.status}
    return rows, metrics
