"""Issue 7's targets on a CUDA GPU with the real Wan2.1 T2V-1.3B (skipped elsewhere).

One 832x480x81 window at the model's 50 steps, through the same bench code as
``benchmarks/run_gpu.sh``: the fast preset is at least 2.5x quicker than quality with its
frames within the SSIM (and, where the lpips package and weights are present, LPIPS)
bound, and low-vram's peak VRAM stays within 8 GiB. About 10 minutes on an H100.

Needs the weights (``python -m deforum_wan download wan2.1-t2v-1.3b``) in
DEFORUM_WAN_MODELS_DIR or the hub cache; sageattention makes the fast target reachable.
"""
import argparse
import os

import pytest

torch = pytest.importorskip("torch")

from deforum_wan.bench import TARGET_CASE, TARGETS, run_bench  # noqa: E402
from deforum_wan.models import get_model, locate_weights  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def bench():
    models_dir = os.environ.get("DEFORUM_WAN_MODELS_DIR")
    if locate_weights(get_model(TARGET_CASE["model"]), models_dir) is None:
        pytest.skip(f"{TARGET_CASE['model']} weights are not on disk")
    w, _, h = TARGET_CASE["size"].partition("x")
    args = argparse.Namespace(
        model=TARGET_CASE["model"], size=f"{w}x{h}", frames=TARGET_CASE["frames"], steps=None, repeat=1,
        threads=None, models_dir=models_dir, preset=["quality,fast,low-vram"], presets_only=True,
        window=True, prompt=None, warmup=1, tiny_layers=None)
    result = run_bench(args)
    assert result["targets"]["applies"], result["targets"]
    return result


def test_fast_is_at_least_2_5x_quicker_than_quality(bench):
    fast = bench["presets"]["fast"]
    assert fast["speedup_vs_quality"] >= TARGETS["fast_speedup_min"], (fast, bench["presets"]["quality"])


def test_fast_frames_stay_close_to_quality(bench):
    fast = bench["presets"]["fast"]
    assert fast["ssim"] is not None, "scikit-image is needed for SSIM"
    assert fast["ssim"] >= TARGETS["fast_ssim_min"], fast
    if fast["lpips"] is not None:
        assert fast["lpips"] <= TARGETS["fast_lpips_max"], fast


def test_low_vram_peak_within_8_gib(bench):
    low = bench["presets"]["low-vram"]
    assert low["peak_vram_reserved_mb"] / 1024 <= TARGETS["low_vram_peak_gib_max"], low
