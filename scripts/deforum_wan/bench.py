"""``python -m deforum_wan bench``: the render loop measured against bare diffusers calls.

Everything is measured side by side in one run, on the same windows:
- loop overhead: ``Renderer.run`` (warm pipelines) over bare diffusers pipeline calls
  for exactly the plan's windows (same frames, steps, seeds, sizes);
- frame writing: background writer vs synchronous writes inside the loop;
- memory: peak RSS of a short and a 4x longer render, each in its own process.
Ratios are printed; nothing here asserts a target (targets are for people to read).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = {
    "W": 64, "H": 64, "fps": 16, "max_frames": 48, "seed": 7, "seed_behavior": "fixed",
    "steps": 2, "cfg_scale_schedule": "0: (5)", "batch_name": "bench_{timestring}",
    "prompts": {"0": "a red boat --neg blur", "24": "a blue boat"}, "color_coherence": "LAB",
    "wan_clip_duration": 1.0, "wan_overlap": 2, "wan_retime": "blend",
}


def _settings(args, **extra) -> dict:
    data = dict(EXAMPLE, wan_model=args.model, **extra)
    if args.size:
        w, _, h = args.size.lower().partition("x")
        data["W"], data["H"] = int(w), int(h)
    if args.frames:
        data["max_frames"] = args.frames
    if args.steps:
        data["steps"] = args.steps
    return data


_PIPES: dict = {}


def _bare_diffusers(plan, models_dir: str | None) -> float:
    """The plan's windows as plain diffusers calls: the floor our loop is compared with."""
    import numpy as np
    import torch
    from PIL import Image

    from .backends.base import BackendOptions
    from .backends.diffusers_backend import _dtype_kwargs, weights_folder
    from .models import get_model

    pipes = _PIPES  # loaded once, like the loop's warm cache
    for model_id in {w.model for w in plan.windows} - set(pipes):
        spec = get_model(model_id)
        import diffusers

        cls = getattr(diffusers, "WanPipeline" if model_id == plan.model and spec.can_t2v
                      else "WanImageToVideoPipeline")
        pipe = cls.from_pretrained(weights_folder(spec, BackendOptions(models_dir=models_dir)),
                                   **_dtype_kwargs(torch.float32))
        pipe.set_progress_bar_config(disable=True)
        pipes[model_id] = pipe
    last = None
    start = time.perf_counter()
    for w in plan.windows:
        kwargs = dict(prompt=w.prompt, negative_prompt=w.negative_prompt, height=plan.height,
                      width=plan.width, num_frames=w.native_frames, num_inference_steps=w.steps,
                      guidance_scale=w.guidance_scale, output_type="np",
                      generator=torch.Generator("cpu").manual_seed(w.seed))
        if w.mode == "i2v":
            kwargs["image"] = Image.fromarray((last * 255).astype(np.uint8))
        frames = pipes[w.model](**kwargs).frames[0]
        last = frames[-1 - w.overlap] if w.index else frames[-1]
    return time.perf_counter() - start


def _loop(settings: dict, outdir: str, models_dir: str | None, cache: dict, sync: bool) -> float:
    from .render import Renderer
    from .settings import load_settings

    start = time.perf_counter()
    Renderer(load_settings(settings), outdir, models_dir=models_dir, progress=False,
             backend_cache=cache, sync_writes=sync).run()
    return time.perf_counter() - start


def _peak_rss_mb(settings: dict, outdir: str, models_dir: str | None) -> float:
    """Peak RSS of a whole render in its own process (os.wait4 gives that child's own)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        json.dump(settings, f)
    cmd = [sys.executable, "-m", "deforum_wan", "render", f.name, "--outdir", outdir]
    if models_dir:
        cmd += ["--models-dir", models_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.unlink(f.name)
    if proc.returncode != 0:
        raise RuntimeError(f"render for the memory check failed (exit {proc.returncode})")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def run_bench(args) -> dict:
    import torch

    from .planner import make_plan
    from .settings import load_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = _settings(args)
    plan = make_plan(load_settings(settings))
    out = tempfile.mkdtemp(prefix="deforum-wan-bench-")
    cache: dict = {}
    _loop(settings, out, args.models_dir, cache, sync=False)  # warm-up: loads and caches pipelines
    _bare_diffusers(plan, args.models_dir)  # warm-up of the bare side too
    bare, ours, sync = [], [], []
    for _ in range(args.repeat):
        bare.append(_bare_diffusers(plan, args.models_dir))
        ours.append(_loop(settings, out, args.models_dir, cache, sync=False))
        sync.append(_loop(settings, out, args.models_dir, cache, sync=True))
    for backend in cache.values():
        backend.close()
    short = _peak_rss_mb(settings, out, args.models_dir)
    long = _peak_rss_mb(dict(settings, max_frames=settings["max_frames"] * 4), out, args.models_dir)
    result = {
        "model": plan.model, "size": f"{plan.width}x{plan.height}", "windows": len(plan.windows),
        "frames": plan.max_frames, "steps": plan.windows[0].steps, "repeat": args.repeat,
        "bare_diffusers_s": round(min(bare), 3), "loop_s": round(min(ours), 3),
        "loop_over_bare": round(min(ours) / min(bare), 3),
        "loop_sync_writes_s": round(min(sync), 3),
        "async_over_sync_writes": round(min(ours) / min(sync), 3),
        "peak_rss_short_mb": round(short, 1), "peak_rss_long_mb": round(long, 1),
        "rss_long_over_short": round(long / short, 3), "long_frames": plan.max_frames * 4,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "torch_threads": torch.get_num_threads(),
    }
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    return result


def add_bench_command(sub) -> None:
    p = sub.add_parser("bench", help="measure the render loop against bare diffusers (prints ratios)")
    p.add_argument("--model", default="tiny-random", help="model id (default tiny-random)")
    p.add_argument("--size", help="WxH (default 64x64)")
    p.add_argument("--frames", type=int, help="output frames of the short render (default 48)")
    p.add_argument("--steps", type=int, help="denoising steps per window (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each variant; the fastest counts")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--models-dir", help="folder with model weights")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    r = run_bench(args)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['model']} {r['size']}, {r['windows']} windows, {r['frames']} frames, {r['steps']} steps,"
          f" {r['device']}, best of {r['repeat']}")
    print(f"  bare diffusers calls   {r['bare_diffusers_s']:8.3f} s")
    print(f"  render loop            {r['loop_s']:8.3f} s   loop/bare = {r['loop_over_bare']:.3f}")
    print(f"  loop, sync PNG writes  {r['loop_sync_writes_s']:8.3f} s   async/sync = {r['async_over_sync_writes']:.3f}")
    print(f"  peak RSS {r['frames']} frames   {r['peak_rss_short_mb']:8.1f} MB")
    print(f"  peak RSS {r['long_frames']} frames  {r['peak_rss_long_mb']:8.1f} MB   long/short = {r['rss_long_over_short']:.3f}")
    return 0
