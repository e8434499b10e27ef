"""``bench --random-weights``: the bench on full-size random models (models/random_full.py).

What the weights' values do not decide stays meaningful: time per window and per step, load
time, the loop over bare diffusers, peak VRAM and RSS, compile, attention kernels, float8
storage, offload, VAE tiling, and MagCache's skips (its published ratios fix them, not the
frames). What they do decide is marked ``not_meaningful`` with the reason: PSNR/SSIM/LPIPS
between presets, and every figure of a first-block cache, whose skips follow the residuals of
these weights. ``--pair`` adds the warm pair's memory (the model and its continuation partner
loaded together), with the shared text encoder and VAE and without. ``bench official`` runs
the official backend's first window on such a model (a step of benchmarks/run_gpu_random.sh).
"""
from __future__ import annotations

from pathlib import Path

QUALITY_FIELDS = ("psnr_db", "ssim", "lpips")
WHY_QUALITY = "random weights: the frames hold no picture, so how they differ between presets says nothing of quality"
WHY_FIRST_BLOCK = "first-block cache: its skips follow the residuals of random weights, not of Wan's"
FIRST_BLOCK_FIELDS = ("time_s", "first_run_s", "speedup_vs_quality", "transformer_passes", "passes_skipped")
WHY_SCALED = "scaled architecture (no CUDA here): small widths and depths, so times and memory are not Wan's"


def random_size(args) -> str:
    from ...models.random_full import default_size

    return getattr(args, "random_size", None) or default_size()


def models_of(args) -> list[str]:
    """The bench model and, unless one window is rendered, its continuation partner."""
    from ...models.random_full import RECIPES
    from ...models.registry import continuation_model, get_model

    spec = get_model(args.model)
    models = [spec.id]
    if not getattr(args, "window", False) or getattr(args, "pair", False):
        partner = continuation_model(spec, args.size)
        if partner.id != spec.id and partner.id in RECIPES:
            models.append(partner.id)
    return models


def prepare(args, out: str) -> tuple[str, dict]:
    """Writes the random models the bench renders with (kilobytes: configs only);
    (the models dir to render from, the result's ``random_weights`` entry)."""
    from ...errors import WanError
    from ...models.random_full import RECIPES, parameter_count, write_random_model

    if args.model not in RECIPES:
        raise WanError(f"--random-weights: no full-size random build of {args.model}; these have one:"
                       f" {', '.join(RECIPES)}")
    size = random_size(args)
    models_dir = args.models_dir or str(Path(out) / "random-models")
    models = models_of(args)
    for model_id in models:
        write_random_model(model_id, Path(models_dir) / model_id, size)
    info = {"size": size, "models": models,
            "parameters": {m: parameter_count(m, size) for m in models},
            "meaningful": "time, load, loop over bare diffusers, VRAM/RSS, compile, attention, float8, offload,"
                          " VAE tiling, MagCache's skips (fixed by its published ratios)",
            "not_meaningful": {"quality": WHY_QUALITY, "first_block": WHY_FIRST_BLOCK}}
    if size == "scaled":
        info["not_meaningful"]["scaled"] = WHY_SCALED
    return models_dir, info


def mark(result: dict) -> None:
    """Marks what random weights make meaningless, in the rows and the targets."""
    for row in result.get("presets", {}).values():
        marks = {k: WHY_QUALITY for k in QUALITY_FIELDS if k in row}
        if "first_block" in row.get("cache", ()):
            marks.update({k: WHY_FIRST_BLOCK for k in FIRST_BLOCK_FIELDS if k in row})
        if marks:
            row["not_meaningful"] = marks
    targets = result.get("targets") or {}
    fast = result.get("presets", {}).get("fast", {})
    for key, check in targets.items():
        if not isinstance(check, dict) or "met" not in check:
            continue
        why = (WHY_QUALITY if key in ("fast_lpips", "fast_ssim") else
               WHY_FIRST_BLOCK if key in ("fast_speedup", "distill_speedup") and "first_block" in fast.get("cache", ())
               else None)
        if why:
            check.update(applies=False, not_meaningful=why)


def _unique_bytes(pipes) -> int:
    """Bytes of every parameter and buffer the pipelines hold, each tensor counted once."""
    seen, total = set(), 0
    for pipe in pipes:
        for module in pipe.components.values():
            for tensor in list(getattr(module, "parameters", lambda: [])()) + list(
                    getattr(module, "buffers", lambda: [])()):
                key = (tensor.device, tensor.data_ptr())
                if key not in seen:
                    seen.add(key)
                    total += tensor.numel() * tensor.element_size()
    return total


def pair_memory(model_id: str, models_dir: str, size: tuple[int, int] | None = None) -> dict:
    """The warm pair's memory (a model and its continuation partner loaded side by side, as a
    chained render holds them), with the partner reusing the shared components and without."""
    import torch

    from ...backends.base import BackendOptions, free_memory
    from ...backends.diffusers_backend import DiffusersBackend
    from ...models.registry import continuation_model, get_model

    spec = get_model(model_id)
    partner = continuation_model(spec, size)
    if partner.id == spec.id:
        return {"models": [spec.id], "skipped": f"{spec.id} continues its own windows: there is no pair"}
    cuda = torch.cuda.is_available()
    out: dict = {"models": [spec.id, partner.id]}
    for label, share in (("shared", True), ("separate", False)):
        free_memory()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        first = DiffusersBackend(spec, BackendOptions(models_dir=models_dir))
        try:
            second = DiffusersBackend(partner, BackendOptions(models_dir=models_dir),
                                      share_from=[first] if share else ())
            try:
                out[label] = {"components_shared": sorted(second.shared),
                              "tensors_mb": round(_unique_bytes([first.pipe, second.pipe]) / 2**20, 1),
                              "vram_allocated_mb": round(torch.cuda.memory_allocated() / 2**20, 1) if cuda else None,
                              "peak_vram_reserved_mb":
                                  round(torch.cuda.max_memory_reserved() / 2**20, 1) if cuda else None}
            finally:
                second.close()
        finally:
            first.close()
    out["saved_by_sharing_mb"] = round(out["separate"]["tensors_mb"] - out["shared"]["tensors_mb"], 1)
    out["shared_over_separate"] = (round(out["shared"]["tensors_mb"] / out["separate"]["tensors_mb"], 3)
                                   if out["separate"]["tensors_mb"] else None)
    return out


def lines(result: dict) -> list[str]:
    """The random-weights and warm-pair part of bench's terminal report."""
    info = result.get("random_weights")
    out = [f"  random weights ({info['size']} architecture: {', '.join(info['models'])});"
           f" quality figures and first-block cache figures are not meaningful"] if info else []
    pair = result.get("pair")
    if pair and pair.get("skipped"):
        out.append(f"  warm pair: {pair['skipped']}")
    elif pair:
        s, p = pair["shared"], pair["separate"]
        out.append(f"  warm pair {' + '.join(pair['models'])}: {s['tensors_mb']:.0f} MiB shared"
                   f" ({', '.join(s['components_shared']) or 'nothing'}) vs {p['tensors_mb']:.0f} MiB separate"
                   f" = {pair['shared_over_separate']}" + (f"; VRAM {s['vram_allocated_mb']:.0f} vs"
                                                            f" {p['vram_allocated_mb']:.0f} MiB"
                                                            if s["vram_allocated_mb"] is not None else ""))
    return out


def markdown(result: dict) -> list[str]:
    """The random-weights and warm-pair lines of bench's ``--md``."""
    info = result.get("random_weights")
    out = ["", f"Random weights ({info['size']} architecture of {', '.join(info['models'])}; parameters: "
           + "; ".join(f"{m} " + ", ".join(f"{k} {count(v)}" for k, v in c.items())
                       for m, c in info["parameters"].items()) + ").",
           f"Meaningful here: {info['meaningful']}.",
           "† not meaningful on random weights: " + "; ".join(info["not_meaningful"].values()) + "."] if info else []
    pair = result.get("pair")
    if pair and pair.get("skipped"):
        out += ["", f"Warm pair: {pair['skipped']}."]
    elif pair:
        out += ["", "| warm pair | components shared | tensors MiB | VRAM allocated MiB | peak VRAM reserved MiB |",
                "|---|---|---:|---:|---:|"]
        for label in ("shared", "separate"):
            r = pair[label]
            out.append(f"| {' + '.join(pair['models'])} ({label}) | {', '.join(r['components_shared']) or '-'} |"
                       f" {r['tensors_mb']:.0f} | {_or_dash(r['vram_allocated_mb'])} |"
                       f" {_or_dash(r['peak_vram_reserved_mb'])} |")
        out.append(f"\nShared over separate: {pair['shared_over_separate']} ({pair['saved_by_sharing_mb']:.0f} MiB"
                   " saved).")
    return out


def count(n: int) -> str:
    """A parameter count: ``1.42 B``, ``8.2 M``."""
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _or_dash(value) -> str:
    return "-" if value is None else f"{value:.0f}"


# --- a step of the GPU script (benchmarks/run_gpu_random.sh): ``bench official`` ------------------

def official_first_window(size: tuple[int, int] = (832, 480), frames: int = 81, steps: int = 10) -> dict:
    """The official backend's first window on a random T2V-1.3B, or its exact failure."""
    import tempfile
    import time

    from ...backends.base import BackendOptions, GenerateRequest
    from ...backends.chain import load_backend
    from ...models.random_full import default_size, write_random_model
    from ...models.registry import get_model

    w, h = size
    spec = get_model("wan2.1-t2v-1.3b")
    with tempfile.TemporaryDirectory() as root:
        write_random_model(spec.id, Path(root) / spec.id, default_size())
        start = time.perf_counter()
        try:
            backend, report = load_backend(spec, "official", BackendOptions(models_dir=root))
            loaded = time.perf_counter()
            backend.generate(GenerateRequest(mode="t2v", prompt="a red fox in snow", negative_prompt="",
                                             num_frames=frames, width=w, height=h, seed=1,
                                             guidance_scale=spec.guidance, steps=steps))
            backend.close()
            return {"ran": True, "load_s": round(loaded - start, 2), "window_s": round(time.perf_counter() - loaded, 2),
                    "steps": steps, "report": [list(r) for r in report]}
        except Exception as e:  # the point: its exact failure, whatever it is
            return {"ran": False, "failure": f"{type(e).__name__}: {e}"}
