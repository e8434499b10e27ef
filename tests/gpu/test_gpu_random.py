"""Full-size random Wan models on a CUDA GPU (skipped elsewhere): built on the device in the target
dtype, no float32 copy and no weight files, and one real-size window renders. The CPU tests
(tests/models/test_random_full.py) prove the configs and the scaled build; these the full one."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deforum_wan.backends.base import BackendOptions, GenerateRequest  # noqa: E402
from deforum_wan.backends.diffusers_backend import DiffusersBackend  # noqa: E402
from deforum_wan.models import random_full  # noqa: E402
from deforum_wan.models.registry import get_model  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_full_size_t2v_is_built_on_the_gpu_in_bfloat16_and_renders_a_window(tmp_path):
    random_full.write_random_model("wan2.1-t2v-1.3b", tmp_path / "wan2.1-t2v-1.3b")
    torch.cuda.reset_peak_memory_stats()
    backend = DiffusersBackend(get_model("wan2.1-t2v-1.3b"), BackendOptions(models_dir=str(tmp_path)))
    with backend:
        weights = list(backend.pipe.transformer.parameters())
        assert all(p.device.type == "cuda" for p in weights)
        assert sum(p.numel() for p in weights if p.dtype == torch.bfloat16) > 0.95 * sum(p.numel() for p in weights)
        assert sum(p.numel() for p in weights) == random_full.parameter_count("wan2.1-t2v-1.3b")["transformer"]
        # Built in bf16 where it runs: the peak stays near the bf16 size (no float32 copy of the 5.7 B encoder).
        bf16_bytes = 2 * sum(random_full.parameter_count("wan2.1-t2v-1.3b").values())
        assert torch.cuda.max_memory_allocated() < 1.3 * bf16_bytes
        frames = backend.generate(GenerateRequest(mode="t2v", prompt="a red fox", negative_prompt="", num_frames=17,
                                                  width=832, height=480, seed=1, guidance_scale=6.0, steps=2))
    assert np.asarray(frames).shape == (17, 480, 832, 3) and np.isfinite(np.asarray(frames)).all()
