"""Fixtures and hooks only; what tests import by name lives in helpers.py."""
import os
from pathlib import Path

import pytest
from helpers import DEFORUM_DIR


@pytest.fixture
def deforum_dir() -> Path:
    if DEFORUM_DIR is None:
        pytest.skip("real Deforum settings not found (set DEFORUM_SETTINGS_DIR)")
    return DEFORUM_DIR


# Fuzzing depth: HYPOTHESIS_PROFILE=deep for a long local run.
from hypothesis import settings as _hsettings  # noqa: E402

_hsettings.register_profile("default", max_examples=300, deadline=None)
_hsettings.register_profile("deep", max_examples=5000, deadline=None)
_hsettings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- Wan backends: tiny models, a tiny LoRA, an isolated hub cache -------------------


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models dir holding every tiny Wan model, built once per session (one torch thread)."""
    import torch

    from deforum_wan.models.tiny import build_tiny_models

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    build_tiny_models(root)
    return root


@pytest.fixture(scope="session")
def tiny_lora(tiny_models_dir, tmp_path_factory) -> Path:
    """A LoRA for the tiny T2V transformer with random (non-zero) weights, as .safetensors.

    Made with peft and diffusers' own LoRA saver, so it has the layout real Wan LoRAs have.
    """
    pytest.importorskip("peft")
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = WanPipeline.from_pretrained(str(tiny_models_dir / "tiny-random"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        # init_lora_weights=False: B is random too, so the LoRA changes the output.
        pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    folder = tmp_path_factory.mktemp("lora")
    WanPipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
                                  safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture
def isolated_hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache for this test (the hub reads its cache path per call)."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    (home / "hub").mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


@pytest.fixture(scope="module")
def idle_manager(tmp_path_factory):
    """A real job queue whose worker cannot start (``false``): jobs fail fast, nothing renders."""
    from deforum_wan.service.jobs import JobManager

    root = tmp_path_factory.mktemp("idle-queue")
    jobs = JobManager(root / "jobs.db", root / "out", python="false")
    yield jobs
    jobs.shutdown()
