"""``python -m deforum_wan bench``: the render loop, the speed presets and the camera, measured
(run.py), and the steps of benchmarks/run_gpu_random.sh (``bench official``, ``bench report``).

The package's modules import only downward: this command wiring, then run.py and report.py,
then one module per measurement (loop, presets, camera, drift, random_weights), then targets.py and
measure.py, which import nothing of the package (pyproject.toml's import-linter contract).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ...errors import WanError


def size_arg(text: str) -> tuple[int, int]:
    """``--size WxH``, read as the ``wan_size`` key reads it (one line when it is not a size)."""
    from ...config.keys import BY_NAME
    from ...config.schedule import ExprError

    try:
        return BY_NAME["wan_size"].read(text)
    except ExprError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("wan_size", "--size", 1)) from None


def count_arg(least: int):
    """An int option of at least ``least`` (``--repeat 0`` would measure nothing, then fail)."""
    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is less than {least}")
        return value
    return read


def check_output_file(path: str | None, flag: str) -> None:
    """A file the bench writes at its end, checked before the run (minutes) rather than after."""
    if not path:
        return
    import os

    target = Path(path).expanduser()
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise WanError(f"{flag} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise WanError(f"{flag} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise WanError(f"{flag} {path} cannot be written")


def cmd_bench(args) -> int:
    from . import report
    from .run import run_bench

    check_output_file(args.json_file, "--json-file")
    check_output_file(args.md, "--md")
    r = run_bench(args)
    if args.md:
        report.write_markdown(args.md, r)
    if args.json_file:
        report.write_json(args.json_file, r)
    print(json.dumps(r, indent=2) if args.json else "\n".join(report.text(r)))
    return 0


def cmd_official(args) -> int:
    from .random_weights import official_first_window

    result = official_first_window(args.size)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


def cmd_report(args) -> int:
    from .report import write_gpu_report

    for path in write_gpu_report(args.outdir):
        print(f"wrote {path}")
    return 0


def add_bench_command(sub) -> None:
    # An optional STEP reads as a required one in argparse's own usage line: spelled out instead.
    p = sub.add_parser("bench", help="measure the render loop and the speed presets (prints ratios)",
                       usage="%(prog)s [options]\n       %(prog)s official OUT [WxH]\n       %(prog)s report OUTDIR")
    p.add_argument("--model", default="tiny-random", help="model id (default tiny-random)")
    p.add_argument("--size", type=size_arg, help="WxH (default: 64x64 for the tiny models; another model"
                   " renders its trained size nearest to square)")
    p.add_argument("--frames", type=count_arg(1), help="output frames of the short render (default 48; --window: the"
                   " model's window)")
    p.add_argument("--steps", type=count_arg(1), help="denoising steps per window (default: the model's; 2 for the tiny"
                   " models)")
    p.add_argument("--repeat", type=count_arg(1), default=3, help="runs of each variant; the fastest counts")
    p.add_argument("--threads", type=count_arg(1), help="torch CPU threads")
    p.add_argument("--models-dir", help="folder with model weights")
    p.add_argument("--preset", action="append", metavar="NAME",
                   help="also bench this preset (quality, balanced, fast, low-vram, or all), or a preset with"
                        " settings keys on top (quality+wan_layerwise_fp8=true); repeatable; quality is always"
                        " included as the reference")
    p.add_argument("--presets-only", action="store_true",
                   help="skip the loop/bare, async/sync and RSS long/short measurements")
    p.add_argument("--window", action="store_true",
                   help="one text-to-video window at the model's native fps, steps and guidance"
                        " (what the GPU targets are stated for)")
    p.add_argument("--prompt", help="prompt of the rendered windows")
    p.add_argument("--warmup", type=count_arg(0), default=1,
                   help="untimed runs of each preset before timing (the first compiles; default 1)")
    p.add_argument("--tiny-layers", type=count_arg(1), metavar="N",
                   help="tiny-random with N transformer blocks (block caches need 2 or more)")
    p.add_argument("--camera", action="store_true",
                   help="instead: wan_camera off, guide and vace side by side on the same settings (time,"
                        " camera adherence in px/deg, PSNR/SSIM against off)")
    p.add_argument("--settings", metavar="FILE", help="--camera: a Deforum settings file whose camera and"
                   " prompts are used (default: a 2D zoom, pan and turn)")
    p.add_argument("--grid", metavar="FREE:LOCK,...", help="--camera: also guide at these free/lock shares of"
                   " the steps (e.g. 0.02:0.05,0.04:0.1,0.08:0.2)")
    p.add_argument("--drift", action="store_true",
                   help="instead: one long still shot (one prompt, --windows windows) with each wan_color_match"
                        " (off, deforum, lab) side by side: drift per window, VDE, time per window")
    p.add_argument("--windows", type=count_arg(2), default=8, help="--drift: windows of the shot (default 8)")
    p.add_argument("--svi", choices=("film", "shot", "pro"), help="--drift: also a row with wan_svi MODE (Stable Video"
                   " Infinity's conditioning; its LoRA belongs in wan_loras of a real run)")
    p.add_argument("--vace-model", help="--camera: the VACE model of the vace row (default: the family's)")
    p.add_argument("--skip-rss", action="store_true",
                   help="skip the peak RSS of a short and a 4x longer render (two more whole renders)")
    p.add_argument("--random-weights", action="store_true",
                   help="render with full-size random models (tiny-models --full-size), built where they run:"
                        " time and memory stay meaningful, quality and first-block cache figures are marked not")
    p.add_argument("--random-size", choices=("full", "scaled"),
                   help="--random-weights: the architecture's size (default: full on CUDA, scaled elsewhere)")
    p.add_argument("--formats", action="store_true",
                   help="instead, with --random-weights: the model's random transformer written as a bf16 folder,"
                        " an fp8 file and GGUF Q8_0 and Q4_K, each loaded and run side by side (load time, peak RSS"
                        " while loading, time per step, peak VRAM)")
    p.add_argument("--pair", action="store_true",
                   help="also the warm pair's memory: the model and its continuation partner loaded together,"
                        " sharing their text encoder and VAE and not")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--json-file", metavar="FILE", help="also write the JSON result to FILE")
    p.add_argument("--md", metavar="FILE", help="also write a Markdown table (presets, or --camera's) to FILE")
    p.set_defaults(func=cmd_bench)

    steps = p.add_subparsers(title="steps of benchmarks/run_gpu_random.sh (instead of a bench)", metavar="STEP")
    o = steps.add_parser("official", help="the official backend's first window on a random T2V-1.3B, or its"
                                          " exact failure, written to OUT as JSON")
    o.add_argument("out", metavar="OUT", help="the JSON file to write")
    o.add_argument("size", nargs="?", metavar="WxH", type=size_arg, default=(832, 480),
                   help="the window's size (default 832x480)")
    o.set_defaults(func=cmd_official)
    r = steps.add_parser("report", help="combine the step JSONs in OUTDIR into <date>-<gpu>-random.json and .md")
    r.add_argument("outdir", metavar="OUTDIR", help="the folder run_gpu_random.sh wrote its steps to")
    r.set_defaults(func=cmd_report)
