"""``bench --random-weights --formats``: the same random transformer in each format users have,
side by side in one run: a bf16 diffusers folder, a plain fp8 e4m3fn single file, and GGUF Q8_0
and Q4_K (Wan's original key names, as ComfyUI's files have them), written at bench time into the
bench's temporary folder from the full-size random model (or the scaled one off CUDA), then each
loaded by the extension's loaders and run for ``--steps`` denoising steps (two transformer passes
each: guidance) at the window's latent size. Per format: load time, peak RSS growth while loading,
time per step, peak VRAM (CUDA), the bytes its weights hold and how they are held.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path

from .measure import reset_rss_peak, rss_peak_mb

FORMATS = ("bf16 folder", "fp8 file", "GGUF Q8_0", "GGUF Q4_K")
TEXT_TOKENS = 512  # the UMT5 prompt length the pipelines pad to
# The scaled architecture is too narrow for a K-quant block (256): off CUDA the formats are
# written at the narrowest width every format quantises (2 heads of 128).
SCALED_WIDTH = {"num_attention_heads": 2, "attention_head_dim": 128, "ffn_dim": 512}


def write_formats(model_id: str, size: str, folder: Path) -> dict[str, Path]:
    """The random transformer of ``model_id`` in each format under ``folder``: format -> path."""
    from safetensors.torch import save_file

    from ...models.random_full import random_transformer
    from ...models.wan_files import comfy_pick, fp8_state, to_original_name, write_gguf

    model = random_transformer(model_id, size, SCALED_WIDTH if size == "scaled" else None)
    paths = {"bf16 folder": folder / "bf16"}
    model.save_pretrained(paths["bf16 folder"] / "transformer")
    original = {to_original_name(k): v for k, v in model.state_dict().items()}
    del model
    paths["fp8 file"] = folder / "wan_random_fp8_e4m3fn.safetensors"
    save_file(fp8_state(original), paths["fp8 file"])
    for qtype in ("Q8_0", "Q4_K"):
        paths[f"GGUF {qtype}"] = write_gguf(folder / f"wan_random-{qtype}.gguf", original, comfy_pick(qtype))
    return paths


def _load(fmt: str, path: Path, hint: Path, dtype):
    from diffusers import WanTransformer3DModel

    from ...backends.single_file import load_transformer
    from ...models.detect import detect
    from ...models.headers import read_header

    if fmt == "bf16 folder":
        return WanTransformer3DModel.from_pretrained(path / "transformer", torch_dtype=dtype).eval()
    return load_transformer(path, detect(read_header(path)), dtype, hint).eval()


def _held(model) -> dict:
    """The bytes its weights hold, and how: the ggml types still quantised, float8 or not."""
    import torch

    params = list(model.parameters())
    return {"weights_mb": round(sum(p.numel() * p.element_size() for p in params) / 2**20, 1),
            "quantised": sorted({p.quant_type.name for p in params if hasattr(p, "quant_type")}),
            "float8": any(p.dtype == torch.float8_e4m3fn for p in params)}


def measure(fmt: str, path: Path, hint: Path, device, dtype, latent: tuple, steps: int) -> dict:
    """One format: loaded onto ``device``, then ``steps`` steps of two passes at ``latent``."""
    import torch

    from ...backends.base import free_memory

    free_memory()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    scope = reset_rss_peak()
    before = rss_peak_mb()
    start = time.perf_counter()
    model = _load(fmt, path, hint, dtype).to(device)
    if cuda:
        torch.cuda.synchronize()
    load_s = time.perf_counter() - start
    rss = rss_peak_mb() - before
    c = model.config
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((1, c.in_channels, *latent), generator=generator).to(device, dtype)
    text = torch.randn((1, TEXT_TOKENS, c.text_dim), generator=generator).to(device, dtype)
    t = torch.tensor([500.0], device=device)
    with torch.no_grad():
        model(x, t, text, return_dict=False)  # first pass: kernels chosen, caches filled
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            for _guidance in range(2):
                model(x, t, text, return_dict=False)
        if cuda:
            torch.cuda.synchronize()
    step_s = (time.perf_counter() - start) / steps
    row = {"load_s": round(load_s, 3), "peak_rss_load_mb": round(rss, 1), "rss_scope": scope,
           "step_s": round(step_s, 4), "peak_vram_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
           if cuda else None, "file_mb": round(_disk(path) / 2**20, 1), **_held(model)}
    del model, x, text
    gc.collect()
    free_memory()
    return row


def _disk(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bench_formats(model_id: str, size: str, window: tuple[int, int, int], steps: int, out: str) -> dict:
    """Each format of ``model_id``'s random transformer: ``window`` is (width, height, frames)."""

    from ...backends.base import torch_device, torch_dtype

    device = torch_device("auto")
    dtype = torch_dtype("auto", device.type)
    folder = Path(out) / "formats"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = write_formats(model_id, size, folder)
    written = time.perf_counter() - start
    w, h, frames = window
    latent = ((frames - 1) // 4 + 1, h // 8, w // 8)
    rows = {fmt: measure(fmt, paths[fmt], paths["bf16 folder"], device, dtype, latent, steps) for fmt in FORMATS}
    return {"model": model_id, "size": size, "dtype": str(dtype).replace("torch.", ""), "latent": list(latent),
            "steps": steps, "written_s": round(written, 1), "rows": rows}


def format_lines(r: dict) -> list[str]:
    lines = [f"  formats of {r['model']}'s random transformer ({r['size']}, latent {'x'.join(map(str, r['latent']))},"
             f" {r['steps']} steps of 2 passes, computed in {r['dtype']}; written in {r['written_s']} s)",
             "    format        file MiB  held MiB  load s  RSS load MiB  s/step  VRAM MiB  held as"]
    for fmt, row in r["rows"].items():
        held = ", ".join(row["quantised"]) or ("float8" if row["float8"] else r["dtype"])
        vram = "-" if row["peak_vram_mb"] is None else f"{row['peak_vram_mb']:.0f}"
        lines.append(f"    {fmt:<12}{row['file_mb']:10.1f}{row['weights_mb']:10.1f}{row['load_s']:8.2f}"
                     f"{row['peak_rss_load_mb']:14.1f}{row['step_s']:8.3f}{vram:>10}  {held}")
    return lines


def format_markdown(r: dict) -> list[str]:
    lines = [f"{r['model']}'s random transformer ({r['size']} architecture), latent"
             f" {'x'.join(map(str, r['latent']))}, {r['steps']} steps of two passes, computed in {r['dtype']}.", "",
             "| format | file MiB | weights MiB | load s | peak RSS while loading MiB | s / step | peak VRAM MiB |"
             " held as |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for fmt, row in r["rows"].items():
        held = ", ".join(row["quantised"]) or ("float8" if row["float8"] else r["dtype"])
        vram = "-" if row["peak_vram_mb"] is None else f"{row['peak_vram_mb']:.0f}"
        lines.append(f"| {fmt} | {row['file_mb']:.0f} | {row['weights_mb']:.0f} | {row['load_s']:.2f} |"
                     f" {row['peak_rss_load_mb']:.0f} | {row['step_s']:.3f} | {vram} | {held} |")
    return lines
