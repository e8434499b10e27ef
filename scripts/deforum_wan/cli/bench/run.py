"""One ``bench`` run: the settings every measurement renders, then side by side in one run,
on the same windows:
- the loop's own cost (loop.py): our loop over bare diffusers calls, the background frame
  writer over synchronous writes, peak RSS of a short and a 4x longer render;
- the presets (``--preset``, presets.py), each against ``quality``;
- the warm pair's memory (``--pair``) on the random models of ``--random-weights``
  (random_weights.py);
- the import cost of the pure front (settings, planner, presets), in a fresh interpreter;
- ``--camera`` (instead): wan_camera off, guide (and a free/lock ``--grid``) and vace on the
  same settings (camera.py);
- ``--drift`` (instead): one long still shot with each wan_color_match setting (drift.py);
- ``--formats`` (instead, random weights): the transformer as a bf16 folder, an fp8 file and
  GGUF Q8_0 and Q4_K (formats.py).
Ratios are kept; targets are judged as met or not (targets.py), never asserted here.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ...errors import WanError
from . import formats, random_weights
from .camera import run_camera_bench
from .drift import run_drift_bench
from .loop import bench_loop
from .measure import import_cost, versions
from .presets import bench_presets, build_layered_tiny, preset_names
from .targets import judge

EXAMPLE = {
    "W": 64, "H": 64, "fps": 16, "max_frames": 48, "seed": 7, "seed_behavior": "fixed",
    "steps": 2, "cfg_scale_schedule": "0: (5)", "batch_name": "bench_{timestring}",
    "prompts": {"0": "a red boat --neg blur", "24": "a blue boat"}, "color_coherence": "LAB",
    "wan_clip_duration": 1.0, "wan_overlap": 2, "wan_retime": "blend",
    "wan_camera": "off",  # the loop's own cost; --camera benches the camera
}
WINDOW_PROMPT = ("a red fox running through fresh snow at dawn, cinematic, detailed fur"
                 " --neg blurry, low quality, distorted")


def _settings(args, **extra) -> dict:
    data = dict(EXAMPLE, wan_model=args.model, **extra)
    if getattr(args, "window", False):
        # One T2V window at the model's native fps: nothing chained, nothing retimed.
        from ...models.registry import get_model

        spec = get_model(args.model)
        data.update(fps=spec.native_fps, max_frames=spec.max_frames, prompts={"0": args.prompt or WINDOW_PROMPT},
                    cfg_scale_schedule=f"0: ({spec.guidance:g})", wan_clip_duration=0, wan_overlap=0,
                    color_coherence="None", steps=spec.steps)
    elif getattr(args, "prompt", None):
        data["prompts"] = {"0": args.prompt}
    if args.size:
        data["W"], data["H"] = args.size
        data["wan_size"] = "{}x{}".format(*args.size)  # what was asked, even off the model's trained sizes
    if args.frames:
        data["max_frames"] = args.frames
    if args.steps:
        data["wan_steps"] = args.steps  # Deforum's own `steps` does not drive Wan's windows
    return data


def run_bench(args) -> dict:
    import torch

    from ...config.planner import make_plan
    from ...config.settings import load_settings

    if args.threads:
        torch.set_num_threads(args.threads)
    presets = preset_names(getattr(args, "preset", None))
    out = tempfile.mkdtemp(prefix="deforum-wan-bench-")
    models_dir = args.models_dir
    random_info = None
    if getattr(args, "random_weights", False):
        models_dir, random_info = random_weights.prepare(args, out)
    if getattr(args, "tiny_layers", None) and args.model == "tiny-random":
        models_dir = models_dir or os.path.join(out, "models")
        Path(models_dir).mkdir(parents=True, exist_ok=True)
        build_layered_tiny(models_dir, args.tiny_layers)
    settings = _settings(args)
    plan = make_plan(load_settings(settings))
    cuda = torch.cuda.is_available()
    result = {
        "model": plan.model, "size": f"{plan.width}x{plan.height}", "windows": len(plan.windows),
        "frames": plan.max_frames, "steps": plan.windows[0].steps, "repeat": args.repeat,
        "device": "cuda" if cuda else "cpu", "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }
    if random_info:
        result["random_weights"] = random_info
    if getattr(args, "drift", False):
        result["drift"] = run_drift_bench(args, settings, out, models_dir)
        # the shot's, each setting rendered once (the drift of a seeded render does not vary)
        result.update(windows=result["drift"]["windows"], frames=result["drift"]["frames"], repeat=1)
        shutil.rmtree(out, ignore_errors=True)
        return result
    if getattr(args, "formats", False):
        if not random_info:
            raise WanError("--formats writes the files from a random model: add --random-weights")
        w = plan.windows[0]
        result["formats"] = formats.bench_formats(plan.model, random_info["size"], (plan.width, plan.height,
                                                  w.native_frames), w.steps, out)
        result.update(windows=1, frames=w.native_frames, repeat=1)
        shutil.rmtree(out, ignore_errors=True)
        return result
    if getattr(args, "camera", False):
        result["camera"] = run_camera_bench(args, settings, out, models_dir)
        shutil.rmtree(out, ignore_errors=True)
        return result
    if not getattr(args, "presets_only", False):
        result.update(bench_loop(settings, plan, out, models_dir, args.repeat, getattr(args, "skip_rss", False)))
    if presets:
        rows, metrics = bench_presets(presets, settings, out, models_dir, args.repeat, getattr(args, "warmup", 1))
        result["presets"] = rows
        result["quality_metrics"] = metrics
    if getattr(args, "pair", False):
        result["pair"] = random_weights.pair_memory(plan.model, models_dir, (plan.width, plan.height))
    result["import"] = import_cost()
    result["targets"] = judge(result)
    if random_info:
        random_weights.mark(result)
    shutil.rmtree(out, ignore_errors=True)
    return result
