"""The render loop's own cost: ``Renderer.run`` (warm pipelines) over bare diffusers pipeline
calls for exactly the plan's windows (same frames, steps, seeds, sizes), the background frame
writer over synchronous writes, and the peak RSS of a short and a 4x longer render, each in
its own process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from .measure import render

_PIPES: dict = {}


def _bare_diffusers(plan, models_dir: str | None) -> float:
    """The plan's windows as plain diffusers calls: the floor our loop is compared with.

    Same pipeline classes, device and dtypes as the diffusers backend's defaults, so the
    difference is the loop's own work.
    """
    import torch

    from ...backends.base import BackendOptions, GenerateRequest, to_pil, torch_device, torch_dtype
    from ...backends.diffusers_backend import (
        load_pipeline,
        pipeline_classes,
        sibling_pipeline,
        vace_inputs,
        weights_folder,
    )
    from ...models.registry import get_model

    device = torch_device("auto")
    dtypes = {"default": torch_dtype("auto", device.type), "vae": torch.float32, "image_encoder": torch.float32}
    pipes = _PIPES  # (model id, mode) -> pipeline, loaded once like the loop's warm cache
    for model_id, mode in sorted({(w.model, w.mode) for w in plan.windows} - set(pipes)):
        spec = get_model(model_id)
        class_name = pipeline_classes(spec)[mode]
        loaded = next((p for (m, _), p in pipes.items() if m == model_id), None)
        if loaded is not None:  # TI2V: the other pipeline class over the same modules
            pipe = loaded if type(loaded).__name__ == class_name else sibling_pipeline(loaded, class_name)
        else:
            pipe = load_pipeline(weights_folder(spec, BackendOptions(models_dir=models_dir)), class_name, dtypes,
                                 device).to(device)
        pipes[(model_id, mode)] = pipe
    last = None
    start = time.perf_counter()
    for w in plan.windows:
        kwargs = dict(prompt=w.prompt, negative_prompt=w.negative_prompt, height=plan.height,
                      width=plan.width, num_frames=w.native_frames, num_inference_steps=w.steps,
                      guidance_scale=w.guidance_scale, output_type="np",
                      generator=torch.Generator(device).manual_seed(w.seed))
        if w.mode == "i2v":
            if get_model(w.model).kind == "vace":
                req = GenerateRequest(mode="i2v", prompt=w.prompt, negative_prompt=w.negative_prompt,
                                      num_frames=w.native_frames, width=plan.width, height=plan.height,
                                      seed=w.seed, guidance_scale=w.guidance_scale, steps=w.steps, image=last)
                kwargs["video"], kwargs["mask"] = vace_inputs(req)
            else:
                kwargs["image"] = to_pil(last)
        frames = pipes[(w.model, w.mode)](**kwargs).frames[0]
        last = frames[-1 - w.overlap] if w.index else frames[-1]
    return time.perf_counter() - start


def _loop(settings: dict, outdir: str, models_dir: str | None, pool, sync: bool) -> tuple[float, float]:
    """(seconds until every frame is on disk, seconds including the mp4 encode).

    The bare side makes no video, so the loop is compared with it up to the last frame;
    the encode is reported on its own."""
    last = []
    start = time.perf_counter()
    total = render(settings, outdir, models_dir, pool, sync,
                   on_event=lambda e: last.append(time.perf_counter()) if e["event"] == "window_done" else None)[0]
    return last[-1] - start, total


def missing_weights(settings: dict, models_dir: str | None) -> list[str]:
    """Models the render of ``settings`` needs whose weights are not on disk (tiny ones are built)."""
    from ...config.planner import make_plan
    from ...config.settings import load_settings
    from ...models.registry import get_model
    from ...models.weights import locate_weights

    models = sorted({w.model for w in make_plan(load_settings(settings)).windows})
    return [m for m in models if not get_model(m).tiny and locate_weights(get_model(m), models_dir) is None]


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


def bench_loop(settings: dict, plan, outdir: str, models_dir: str | None, repeat: int, skip_rss: bool) -> dict:
    """The loop against bare diffusers, async against sync writes (best of ``repeat``), and
    the RSS of a short against a 4x longer render: the result's loop fields."""
    from ...backends.pool import BackendPool

    pool = BackendPool()
    _loop(settings, outdir, models_dir, pool, sync=False)  # warm-up: loads and caches pipelines
    _bare_diffusers(plan, models_dir)  # warm-up of the bare side too
    bare, ours, sync, whole = [], [], [], []
    for _ in range(repeat):
        bare.append(_bare_diffusers(plan, models_dir))
        frames_s, total_s = _loop(settings, outdir, models_dir, pool, sync=False)
        ours.append(frames_s)
        whole.append(total_s)
        sync.append(_loop(settings, outdir, models_dir, pool, sync=True)[0])
    pool.close()
    _PIPES.clear()
    out = {
        "bare_diffusers_s": round(min(bare), 3), "loop_s": round(min(ours), 3),
        "loop_over_bare": round(min(ours) / min(bare), 3),
        "loop_with_video_s": round(min(whole), 3),
        "loop_sync_writes_s": round(min(sync), 3),
        "async_over_sync_writes": round(min(ours) / min(sync), 3),
        "peak_rss_short_mb": None, "peak_rss_long_mb": None, "rss_long_over_short": None,
        "long_frames": plan.max_frames * 4, "rss_skipped": None,
    }
    long_settings = dict(settings, max_frames=settings["max_frames"] * 4)
    missing = missing_weights(long_settings, models_dir)
    if skip_rss:
        out["rss_skipped"] = "--skip-rss"
    elif missing:  # the longer render chains into a model that is not here (a GPU box with one model)
        out["rss_skipped"] = f"no weights for {', '.join(missing)}"
    else:
        short = _peak_rss_mb(settings, outdir, models_dir)
        long = _peak_rss_mb(long_settings, outdir, models_dir)
        out.update({"peak_rss_short_mb": round(short, 1), "peak_rss_long_mb": round(long, 1),
                    "rss_long_over_short": round(long / short, 3)})
    return out
