"""wan_gpus=2: one clip on two GPUs through torchrun (skipped without 2 CUDA devices).

The diffusers engine runs on the tiny model (built locally, no download): context
parallel must give what one GPU gives. The official engine needs Wan2.1-T2V-1.3B in the
official layout (12 heads: 2 GPUs split them) and the wan package or a clone in
DEFORUM_WAN_OFFICIAL_REPO, plus xfuser for Wan2.1's sequence parallel.
"""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deforum_wan.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from deforum_wan.backends.chain import load_backend  # noqa: E402
from deforum_wan.models.registry import get_model  # noqa: E402
from deforum_wan.models.weights import locate_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                       reason="needs 2 CUDA devices"),
]


def _req(**kw):
    base = dict(mode="t2v", prompt="a red boat on a calm lake", negative_prompt="blur", num_frames=9,
                width=64, height=64, seed=7, guidance_scale=5.0, steps=3)
    return GenerateRequest(**{**base, **kw})


def test_diffusers_context_parallel_matches_one_gpu(tiny_models_dir):
    opts = dict(models_dir=str(tiny_models_dir), dtype="float32")
    one, _ = load_backend(get_model("tiny-random"), "diffusers", BackendOptions(**opts))
    try:
        expected = one.generate(_req())
    finally:
        one.close()
    two, report = load_backend(get_model("tiny-random"), "diffusers", BackendOptions(gpus=2, **opts))
    steps = []
    try:
        assert two.name == "diffusers on 2 GPUs", report
        frames = two.generate(_req(), on_step=lambda d, t: steps.append(d))
        pid = two.group.proc.pid
        assert two.generate(_req(seed=8)).shape == (9, 64, 64, 3)
        assert two.group.proc.pid == pid  # the next window ran on the same group, model loaded once
    finally:
        two.close()
    assert frames.shape == expected.shape == (9, 64, 64, 3)
    assert steps[-1] == 3
    # Same seed and latents; only the attention's reduction order differs across GPUs.
    assert np.abs(frames - expected).max() < 2e-2


def test_render_with_wan_gpus_2(tiny_models_dir, tmp_path):
    from helpers import EXAMPLE

    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.loop import Renderer

    data = json.loads(EXAMPLE.read_text())
    data.update(max_frames=24, wan_gpus=2, wan_backend="diffusers")
    result = Renderer(load_settings(data), tmp_path, models_dir=str(tiny_models_dir)).run()
    assert result.frames == 24 and result.status == "done"
    assert any("2 GPUs" in line for _, line in result.backend_report)


def test_official_engine_on_two_gpus():
    spec = get_model("wan2.1-t2v-1.3b")
    opts = BackendOptions(gpus=2, models_dir=os.environ.get("DEFORUM_WAN_MODELS_DIR"),
                          official_repo_path=os.environ.get("DEFORUM_WAN_OFFICIAL_REPO"))
    if locate_weights(spec, opts.models_dir, "official") is None:
        pytest.skip("Wan2.1-T2V-1.3B weights in the official layout are not on disk")
    if not opts.official_repo_path:
        pytest.importorskip("wan", reason="the official wan package is not installed")
    pytest.importorskip("xfuser", reason="Wan2.1 sequence parallel needs xfuser")
    backend, report = load_backend(spec, "official", opts)
    try:
        frames = backend.generate(_req(width=832, height=480, num_frames=17, steps=10))
    finally:
        backend.close()
    assert frames.shape == (17, 480, 832, 3) and frames.std() > 0.05, report
