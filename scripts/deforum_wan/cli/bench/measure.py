"""What every bench measures with: a timed render, its frames, PSNR/SSIM/LPIPS between two
renders, this process's peak RSS, the pure front's import cost and the library versions.

The bottom of the bench package: it imports nothing of the package back.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

# What ``import deforum_wan.<these>`` costs: the pure front must not pull torch.
IMPORT_MODULES = ("deforum_wan.config.settings", "deforum_wan.config.planner", "deforum_wan.config.presets")


def render(settings: dict, outdir: str, models_dir: str | None, pool, sync: bool = False, on_event=None):
    """One whole render; (seconds, RenderResult)."""
    from ...config.settings import load_settings
    from ...render.loop import Renderer

    start = time.perf_counter()
    result = Renderer(load_settings(settings), outdir, models_dir=models_dir,
                      pool=pool, sync_writes=sync, on_event=on_event).run()
    return time.perf_counter() - start, result


def read_frames(result):
    """A render's frames from its run folder, as one uint8 array (frames, H, W, 3)."""
    import numpy as np
    from PIL import Image

    from ...render.run_folder import RunFolder

    frames = []
    for i in range(result.frames):
        with Image.open(RunFolder.at(result.run_dir, result.timestring).frame(i)) as img:
            frames.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
    return np.stack(frames)


def psnr(ref, other) -> float:
    import numpy as np

    mse = float(np.mean((ref.astype(np.float64) - other.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("skimage") is not None


def ssim(ref, other) -> float | None:
    if not ssim_available():
        return None
    import numpy as np
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(a, b, channel_axis=-1, data_range=255)
                          for a, b in zip(ref, other)]))


class Lpips:
    """LPIPS (AlexNet) when the lpips package and its pretrained weights are available."""

    def __init__(self, device: str):
        import importlib.util

        self.model, self.device = None, device
        if importlib.util.find_spec("lpips") is None:
            self.status = "unavailable: the lpips package is not installed"
            return
        try:
            import lpips

            self.model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
            self.status = "lpips (AlexNet)"
        except Exception as e:  # its backbone weights are downloaded on first use
            first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
            self.status = f"unavailable: {type(e).__name__}: {first}"

    def __call__(self, ref, other) -> float | None:
        if self.model is None:
            return None
        import torch

        def tensor(frames):
            return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(self.device)

        with torch.no_grad():
            values = [self.model(tensor(ref[i:i + 8]), tensor(other[i:i + 8])).flatten()
                      for i in range(0, len(ref), 8)]
        return float(torch.cat(values).mean())


def reset_rss_peak() -> str:
    """Reset this process's peak RSS (Linux: writing 5 to clear_refs resets VmHWM).

    Returns the scope the next reading covers: "preset", or "process" where the peak
    cannot be reset and ``resource`` gives the process's lifetime peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "preset"
    except OSError:
        return "process"


def rss_peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def import_cost() -> dict:
    """Seconds to import the pure front in a fresh interpreter, and whether torch came along."""
    code = ("import json, sys, time\n"
            "t = time.perf_counter()\n"
            f"import {', '.join(IMPORT_MODULES)}\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'imports_torch': 'torch' in sys.modules}))")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[3])  # scripts/: works without an installed package too
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return {"modules": list(IMPORT_MODULES), "seconds": round(data["seconds"], 4),
            "imports_torch": data["imports_torch"]}


def versions() -> dict:
    import diffusers
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}
