"""Real Wan2.1-T2V-1.3B through both backends on a CUDA GPU (skipped elsewhere).

Needs the weights on disk (``python -m deforum_wan download wan2.1-t2v-1.3b`` and, for
the official backend, ``--layout official``) in DEFORUM_WAN_MODELS_DIR or the hub cache;
the official backend also needs the ``wan`` package of a Wan2.1 clone (DEFORUM_WAN_OFFICIAL_REPO;
the ``wan22`` wheel is refused).
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deforum_wan.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from deforum_wan.backends.chain import load_backend  # noqa: E402
from deforum_wan.errors import Interrupted  # noqa: E402
from deforum_wan.models.registry import get_model  # noqa: E402
from deforum_wan.models.weights import locate_weights

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

MODEL = "wan2.1-t2v-1.3b"


def options() -> BackendOptions:
    return BackendOptions(models_dir=os.environ.get("DEFORUM_WAN_MODELS_DIR"),
                          official_repo_path=os.environ.get("DEFORUM_WAN_OFFICIAL_REPO"))


@pytest.fixture(params=["diffusers", "official"])
def backend(request):
    spec = get_model(MODEL)
    opts = options()
    if locate_weights(spec, opts.models_dir, request.param) is None:
        pytest.skip(f"{MODEL} weights in the {request.param} layout are not on disk")
    if request.param == "official" and not opts.official_repo_path:
        pytest.importorskip("wan", reason="the official wan package is not installed")
    loaded, report = load_backend(spec, request.param, opts)
    assert loaded.name == request.param, report
    yield loaded
    loaded.close()
    assert torch.cuda.memory_allocated() < 1 << 30  # close() gave the GPU back


def req(**kw):
    base = dict(mode="t2v", prompt="a red fox running through fresh snow, cinematic",
                negative_prompt="", num_frames=17, width=832, height=480, seed=42,
                guidance_scale=6.0, steps=20)
    base.update(kw)
    return GenerateRequest(**base)


def test_generates_17_frames_at_480p(backend):
    steps = []
    frames = backend.generate(req(), on_step=lambda done, total: steps.append((done, total)))
    assert frames.shape == (17, 480, 832, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    assert frames.std() > 0.05  # a picture, not a flat field
    # Neighbouring frames of a real video are close; unrelated noise would not be.
    assert np.abs(frames[1:] - frames[:-1]).mean() < 0.1
    assert steps[-1] == (20, 20) and len(steps) == 20


def test_same_seed_same_video_and_interrupt(backend):
    a = backend.generate(req(steps=4, num_frames=5))
    b = backend.generate(req(steps=4, num_frames=5))
    assert np.abs(a - b).max() < 2e-2  # bf16 kernels may differ in the last bits
    steps = []
    with pytest.raises(Interrupted):
        backend.generate(req(steps=10, num_frames=5), on_step=lambda d, n: steps.append(d),
                         should_stop=lambda: len(steps) >= 2)
    assert steps[-1] <= 3


def test_t2v_then_vace_render_shares_the_encoder_and_keeps_context(tmp_path):
    """Two windows, T2V-1.3B then VACE-1.3B: the VACE window reuses the T5 encoder and VAE
    (loaded once), keeps the previous window's frames as context; peak VRAM is printed."""
    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.loop import Renderer

    opts = options()
    for model in (MODEL, "wan2.1-vace-1.3b"):
        if locate_weights(get_model(model), opts.models_dir) is None:
            pytest.skip(f"{model} weights are not on disk")
    settings = load_settings({"wan_model": MODEL, "wan_backend": "diffusers", "fps": 16, "max_frames": 40,
                              "wan_clip_duration": 1.5, "wan_overlap": 4, "seed": 7, "W": 832, "H": 480,
                              "prompts": {"0": "a red fox running through fresh snow, cinematic"}})
    events = []
    torch.cuda.reset_peak_memory_stats()
    result = Renderer(settings, tmp_path, models_dir=opts.models_dir, on_event=events.append).run()
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"T2V-1.3B -> VACE-1.3B, 2+ windows at 832x480: peak VRAM {peak:.1f} GiB")
    loaded = {e["model"]: e for e in events if e["event"] == "loaded"}
    assert any(n.startswith("shares") and "text_encoder" in n for n in loaded["wan2.1-vace-1.3b"]["notes"])
    assert result.frames == 40
    assert peak < 20  # one UMT5-XXL (11 GB in bf16) plus two 1.3B transformers, not two encoders
