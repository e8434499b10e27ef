"""Speed presets: pure resolution, every preset rendering on the tiny models, each optional
feature detected and noted (never fatal), the caches really applied, and bench's JSON.

CPU only: nothing here checks a speed target (tests/gpu/test_gpu_presets.py does).
"""
import importlib.util
import json
import shutil

import numpy as np
import pytest
from helpers import EXAMPLE

from deforum_wan.backends import speed
from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.diffusers_backend import DiffusersBackend
from deforum_wan.config import presets
from deforum_wan.config.keys import KEYS
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError, WanError
from deforum_wan.models.registry import get_model
from deforum_wan.render.loop import Renderer

SMALL = {"W": 32, "H": 32, "fps": 16, "max_frames": 8, "seed": 3, "seed_behavior": "fixed", "steps": 2,
         "prompts": {"0": "a red fox --neg blur"}, "wan_model": "tiny-random", "color_coherence": "None",
         "skip_video_creation": True, "batch_name": "preset_{timestring}", "animation_mode": "None"}


def request(**kw):
    base = dict(mode="t2v", prompt="a red fox in the snow", negative_prompt="blurry", num_frames=9,
                width=32, height=32, seed=1, guidance_scale=5.0, steps=6)
    base.update(kw)
    return GenerateRequest(**base)


# --- pure resolution --------------------------------------------------------------------------

def test_every_preset_resolves_to_its_table_row():
    for name in presets.PRESETS:
        fields = presets.resolve(name)
        row = presets.TABLE[name]
        assert fields == {**{f: getattr(row, f) for f in presets.FIELDS}, "preset": name}
        BackendOptions(**fields).check()  # every field is a BackendOptions field
        for key in KEYS:  # with a value its key's reader takes as it is (the options trust it)
            if key.preset_field:
                assert key.read(fields[key.preset_field]) == fields[key.preset_field], key.name
    assert presets.resolve(None)["preset"] == "quality"
    assert presets.resolve("LOW_VRAM")["offload"] == "group"
    quality = presets.resolve("quality")  # the default changes nothing that rendered before presets
    assert (quality["cache"], quality["compile"], quality["offload"], quality["attention"]) == \
        ("none", False, "none", "auto")
    with pytest.raises(WanError, match="wan_preset must be one of"):
        presets.resolve("turbo")


def test_explicit_keys_override_the_preset_defaults_do_not():
    s = load_settings(dict(SMALL, wan_preset="fast", wan_cache="first-block", wan_cache_threshold="0.1",
                           wan_compile=True, wan_attention="sdpa", wan_distill_lora="off"))
    assert s.preset == "fast"
    fields = presets.resolve(s.preset, s.speed_overrides)
    assert (fields["cache"], fields["cache_threshold"], fields["compile"], fields["attention"],
            fields["distill_lora"]) == ("first_block", 0.1, True, "sdpa", "off")
    # Keys at their defaults (what files written before presets and UIs send) keep the preset.
    s = load_settings(dict(SMALL, wan_preset="low-vram", wan_offload="none", wan_vae_tiling=False,
                           wan_attention="auto", wan_cache=None))
    assert s.speed_overrides == {}
    assert presets.resolve(s.preset, s.speed_overrides)["offload"] == "group"
    # A settings file written back re-imports to the same choice.
    again = load_settings(s.to_dict())
    assert (again.preset, again.speed_overrides) == ("low-vram", {})


@pytest.mark.parametrize("bad", [{"wan_preset": "turbo"}, {"wan_cache": "tea"}, {"wan_cache_threshold": -1},
                                 {"wan_cache_threshold": "x"}, {"wan_compile": "maybe"},
                                 {"wan_distill_lora": "lora.bin"}])
def test_bad_speed_keys_stop_at_the_settings(bad):
    with pytest.raises(SettingsError):
        load_settings(dict(SMALL, **bad))


def test_cache_plan_per_model():
    plan = speed.plan_cache("mag", None, "wan2.1-t2v-1.3b", blocks=30)
    assert plan.kind == "mag" and plan.params["threshold"] == 0.12 and len(plan.params["mag_ratios"]) == 50
    assert speed.plan_cache("mag", 0.3, "wan2.1-t2v-14b", blocks=40).params["threshold"] == 0.3
    plan = speed.plan_cache("mag", None, "wan2.2-ti2v-5b", blocks=30)
    assert plan.kind == "first_block" and "no published MagCache ratios" in plan.notes[0]
    assert speed.plan_cache("first_block", None, "tiny-random", blocks=1).kind == "none"
    plan = speed.plan_cache("first_block", None, "wan2.1-vace-1.3b", blocks=30, vace=True)
    assert plan.kind == "none" and "VACE" in plan.notes[0]
    assert speed.plan_cache("taylorseer", None, "wan2.1-vace-1.3b", blocks=30, vace=True).kind == "taylorseer"
    assert speed.plan_cache("faster", None, "wan2.1-t2v-1.3b", blocks=30).kind == "none"


def test_distill_lora_lookup(tmp_path):
    assert speed.find_distill_lora("wan2.1-t2v-14b", tmp_path) is None
    (tmp_path / "loras").mkdir()
    for rank in (32, 64):
        (tmp_path / "loras" / f"Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank{rank}.safetensors").touch()
    found = speed.find_distill_lora("wan2.1-t2v-14b", tmp_path)
    assert found.name.endswith("rank64.safetensors")
    assert speed.find_distill_lora("wan2.1-t2v-1.3b", tmp_path) is None  # no published one
    # ranks compare as numbers (rank8 is not above rank64)
    (tmp_path / "loras" / "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank8.safetensors").touch()
    assert speed.find_distill_lora("wan2.1-t2v-14b", tmp_path).name.endswith("rank64.safetensors")


def test_distill_lora_lookup_finds_the_renamed_shared_files(tmp_path):
    (tmp_path / "lightx2v_T2V_14B_cfg_step_distill_v2_lora_rank128_bf16.safetensors").touch()
    (tmp_path / "lightx2v_T2V_14B_cfg_step_distill_v2_lora_rank16_bf16.safetensors").touch()
    (tmp_path / "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors").touch()
    assert speed.find_distill_lora("wan2.1-t2v-14b", tmp_path).name.startswith("lightx2v_T2V_14B")
    assert "rank128" in speed.find_distill_lora("wan2.1-t2v-14b", tmp_path).name
    assert "I2V_14B_480p" in speed.find_distill_lora("wan2.1-i2v-14b-480p", tmp_path).name
    assert speed.find_distill_lora("wan2.1-i2v-14b-720p", tmp_path) is None


def test_pure_front_imports_without_torch():
    from deforum_wan.cli.bench.measure import import_cost

    cost = import_cost()  # a fresh interpreter: sys.modules there, not this test session's
    assert cost["imports_torch"] is False, cost
    assert "deforum_wan.config.presets" in cost["modules"]


# --- on the tiny models --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("preset", presets.PRESETS)
def test_every_preset_renders_valid_frames(preset, tiny_models_dir, tmp_path):
    events = []
    result = Renderer(load_settings(dict(SMALL, wan_preset=preset)), tmp_path, models_dir=str(tiny_models_dir),
                      on_event=events.append).run()
    assert result.status == "done" and result.frames == 8
    from PIL import Image

    frames = [np.asarray(Image.open(result.run_dir / f"{result.timestring}_{i:09d}.png")) for i in range(8)]
    assert all(f.shape == (32, 32, 3) and f.dtype == np.uint8 for f in frames)
    assert np.std(np.stack(frames)) > 0
    loaded = [e for e in events if e["event"] == "loaded"]
    assert loaded and all(isinstance(e["notes"], list) for e in loaded)
    if preset == "fast":
        assert any(n.startswith("fast: ") for n in loaded[0]["notes"])  # what it could not do, said


@pytest.mark.slow
def test_missing_kernel_packages_are_noted_and_skipped(tiny_models_dir, monkeypatch):
    spec = get_model("tiny-random")
    missing = [name for name in ("sageattention", "flash_attn") if importlib.util.find_spec(name) is None]
    backend = DiffusersBackend(spec, BackendOptions(models_dir=str(tiny_models_dir), preset="fast",
                                                    attention="fastest"))
    with backend:
        note = [n for n in backend.notes if "using SDPA" in n]
        assert note and note[0].startswith("fast: ")
        for name in missing:
            assert {"sageattention": "sageattention not installed",
                    "flash_attn": "flash-attn not installed"}[name] in note[0]
        assert backend.generate(request(steps=2)).shape == (9, 32, 32, 3)
    # Installed but no CUDA: also a note, not a crash.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "sageattention" else real(name, *a))
    backend = DiffusersBackend(spec, BackendOptions(models_dir=str(tiny_models_dir), attention="sage"))
    with backend:
        assert "sage attention needs CUDA, using SDPA" in backend.notes


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="no C++ compiler")
def test_compile_and_float8_storage_run_on_the_cpu_offload_is_noted(tiny_models_dir):
    """Regional compile (inductor's C++ backend) and float8 weight storage are the same
    code on the CPU as on CUDA: run them here, against the plain pipeline's frames."""
    import torch

    spec = get_model("tiny-random")
    with DiffusersBackend(spec, BackendOptions(models_dir=str(tiny_models_dir))) as plain:
        reference = plain.generate(request(steps=2))
    backend = DiffusersBackend(spec, BackendOptions(models_dir=str(tiny_models_dir), preset="balanced", compile=True,
                                                    layerwise_fp8=True, offload="group"))
    with backend:
        text = "\n".join(backend.notes)
        assert "balanced: regional torch.compile of the transformer blocks" in text
        assert "balanced: float8 weight storage, computing in float32" in text
        assert "offload 'group' does not apply on the CPU" in text
        assert backend.compiled
        assert torch.float8_e4m3fn in {p.dtype for p in backend.pipe.transformer.parameters()}
        frames = backend.generate(request(steps=2))
        assert backend.compiled  # the first call compiled without falling back
        assert any(getattr(m, "_compiled_call_impl", None) is not None for m in backend.pipe.transformer.modules())
    assert frames.shape == reference.shape == (9, 32, 32, 3)
    # float8 storage rounds the weights: close to the plain frames, not equal
    assert 0 < np.abs(frames - reference).mean() < 0.02


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """tiny-random with 4 transformer blocks: block caches have blocks to skip."""
    from deforum_wan.cli.bench.presets import build_layered_tiny

    root = tmp_path_factory.mktemp("layered")
    return root, build_layered_tiny(root, 4)


def _attn_calls(backend, block=1):
    calls = []
    backend.pipe.transformer.blocks[block].attn1.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.slow
def test_first_block_cache_is_registered_and_skips_blocks(layered):
    from diffusers.hooks import HookRegistry

    root, folder = layered
    spec = get_model("tiny-random")
    plain = DiffusersBackend(spec, BackendOptions(models_dir=str(root)), path=folder)
    with plain:
        calls = _attn_calls(plain)
        reference = plain.generate(request())
        full = len(calls)
    # A high threshold: every step after the first reuses the cached residual of blocks 1..3.
    cached = DiffusersBackend(spec, BackendOptions(models_dir=str(root), cache="first_block", cache_threshold=5.0),
                              path=folder)
    with cached:
        blocks = cached.pipe.transformer.blocks
        assert "fbc_leader_block_hook" in HookRegistry.check_if_exists_or_initialize(blocks[0]).hooks
        for block in blocks[1:]:
            assert "fbc_block_hook" in HookRegistry.check_if_exists_or_initialize(block).hooks
        assert cached.cache_plan.kind == "first_block"
        calls = _attn_calls(cached)
        frames = cached.generate(request())
        assert full == 2 * 6  # 6 steps, conditional and unconditional branch
        assert len(calls) == 2  # only the first step ran the skipped blocks
        assert not np.allclose(frames, reference)
        again = cached.generate(request())  # state is reset between calls: same frames again
        np.testing.assert_array_equal(again, frames)


@pytest.mark.slow
def test_mag_cache_follows_the_step_count(layered, monkeypatch):
    from diffusers.hooks import HookRegistry

    root, folder = layered
    profile = speed.MagProfile(tuple([1.0] + [0.99] * 9), threshold=0.5, max_skip_steps=3, retention_ratio=0.2)
    monkeypatch.setitem(speed.MAG_PROFILES, "tiny-random", profile)
    backend = DiffusersBackend(get_model("tiny-random"), BackendOptions(models_dir=str(root), preset="fast",
                                                                        cache="mag"), path=folder)
    with backend:
        assert backend.cache_plan.kind == "mag"
        calls = _attn_calls(backend)
        backend.generate(request(steps=6))
        head = HookRegistry.check_if_exists_or_initialize(backend.pipe.transformer.blocks[0])
        assert "mag_cache_leader_block_hook" in head.hooks
        assert head.hooks["mag_cache_leader_block_hook"].config.num_inference_steps == 6
        assert len(calls) < 12  # some steps reused the residual
        backend.generate(request(steps=8))
        head = HookRegistry.check_if_exists_or_initialize(backend.pipe.transformer.blocks[0])
        assert head.hooks["mag_cache_leader_block_hook"].config.num_inference_steps == 8


@pytest.mark.slow
def test_distill_lora_in_the_models_dir_sets_steps_and_guidance(tiny_models_dir, tiny_lora, tmp_path):
    spec = get_model("tiny-random")
    options = BackendOptions(models_dir=str(tmp_path), preset="fast", distill_lora="auto", cache="first_block")
    backend = DiffusersBackend(spec, options, path=tiny_models_dir / "tiny-random")
    with backend:  # not there: said, and the full steps are kept
        assert backend.distill_lora is None
        assert any("step-distilled LoRA not available" in n for n in backend.notes)
        steps = []
        backend.generate(request(steps=3), on_step=lambda done, total: steps.append(total))
        assert steps == [3, 3, 3]
    (tmp_path / "loras").mkdir()
    shutil.copy(tiny_lora, tmp_path / "loras" / "tiny-random-distill.safetensors")
    backend = DiffusersBackend(spec, options, path=tiny_models_dir / "tiny-random")
    with backend:
        assert backend.distill_lora.name == "tiny-random-distill.safetensors"
        assert any("4 steps at guidance 1" in n for n in backend.notes)
        steps = []
        backend.generate(request(steps=3), on_step=lambda done, total: steps.append(total))
        assert steps == [4, 4, 4, 4]
        assert backend.pipe.guidance_scale == 1.0  # no classifier-free guidance branch


# --- bench ---------------------------------------------------------------------------------------

TOP_FIELDS = {"model", "size", "windows", "frames", "steps", "repeat", "device", "gpu", "torch_threads",
              "versions", "bare_diffusers_s", "loop_s", "loop_over_bare", "loop_with_video_s", "loop_sync_writes_s",
              "async_over_sync_writes", "peak_rss_short_mb", "peak_rss_long_mb", "rss_long_over_short",
              "long_frames", "rss_skipped", "presets", "quality_metrics", "targets", "import"}
PRESET_FIELDS = {"preset", "time_s", "first_run_s", "load_s", "peak_rss_mb", "peak_rss_scope", "peak_vram_mb",
                 "peak_vram_reserved_mb", "frames", "steps_run", "notes", "options", "cache", "transformer_passes"}
COMPARED_FIELDS = {"speedup_vs_quality", "psnr_db", "ssim", "lpips"}


@pytest.mark.slow
def test_bench_json_has_every_field(tiny_models_dir, tmp_path, capsys):
    from deforum_wan.cli.bench.report import markdown
    from deforum_wan.cli.main import build_parser

    md = tmp_path / "bench.md"
    args = build_parser().parse_args(
        ["bench", "--json", "--repeat", "1", "--preset", "all", "--size", "32x32", "--frames", "8", "--steps", "2",
         "--threads", "1", "--models-dir", str(tiny_models_dir), "--md", str(md)])
    assert args.func(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert TOP_FIELDS <= set(r), TOP_FIELDS - set(r)
    assert list(r["presets"]) == list(presets.PRESETS)
    for name, row in r["presets"].items():
        assert PRESET_FIELDS <= set(row), (name, PRESET_FIELDS - set(row))
        assert row["time_s"] > 0 and row["frames"] == 8 and row["peak_rss_mb"] > 0
        assert row["peak_vram_mb"] is None  # CPU
        assert row["steps_run"] == 2  # no distilled LoRA in the tiny models folder
        if name != "quality":
            assert COMPARED_FIELDS <= set(row)
            assert row["psnr_db"] > 0
            assert 0 < row["ssim"] <= 1  # scikit-image is a test requirement
    assert r["quality_metrics"]["lpips"].startswith(("unavailable", "lpips"))
    t = r["targets"]
    assert t["applies"] is False  # the preset targets are stated for 1.3B 832x480x81 on CUDA
    assert t["fast_speedup"]["applies"] is False and "distill_speedup" not in t
    for key in ("loop_over_bare", "rss_long_over_short", "import_s"):  # judged on any machine
        assert t[key]["applies"] is True and isinstance(t[key]["met"], bool), (key, t[key])
    assert t["loop_over_bare"]["max"] == 1.10 and t["loop_over_bare"]["value"] == r["loop_over_bare"]
    assert "- loop_over_bare: " in md.read_text()
    assert r["import"]["imports_torch"] is False and r["import"]["seconds"] > 0
    assert r["gpu"] is None and r["device"] == "cpu"
    assert "| quality |" in md.read_text() and md.read_text() == markdown(r)


def test_bench_rows_can_add_settings_keys_to_a_preset(tiny_models_dir, capsys):
    from deforum_wan.cli.bench.presets import preset_names
    from deforum_wan.cli.main import build_parser
    from deforum_wan.errors import WanError

    assert preset_names(["low-vram+wan_vae_tiling=false,fast"]) == ["quality", "low-vram+wan_vae_tiling=false",
                                                                    "fast"]
    with pytest.raises(WanError, match="not KEY=VALUE with a settings key"):
        preset_names(["quality+no_such_key=1"])
    args = build_parser().parse_args(
        ["bench", "--json", "--repeat", "1", "--presets-only", "--preset", "quality+wan_vae_tiling=true",
         "--size", "32x32", "--frames", "8", "--steps", "2", "--models-dir", str(tiny_models_dir)])
    assert args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)["presets"]
    assert list(rows) == ["quality", "quality+wan_vae_tiling=true"]
    assert rows["quality"]["options"]["vae_tiling"] is False
    assert rows["quality+wan_vae_tiling=true"]["options"]["vae_tiling"] is True
    assert rows["quality+wan_vae_tiling=true"]["options"]["preset"] == "quality"
    # No cache: both rows run every pass, a conditional and an unconditional one per step.
    assert rows["quality"]["transformer_passes"] == 2 * rows["quality"]["steps_run"] == 4
    assert rows["quality+wan_vae_tiling=true"]["passes_skipped"] == 0


def test_bench_size_is_read_as_wan_size_reads_it(capsys):
    from deforum_wan.cli.main import build_parser

    assert build_parser().parse_args(["bench", "--size", "832*480"]).size == (832, 480)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--size", "foo"])
    assert "error: argument --size: --size must be WxH" in capsys.readouterr().err


def test_bench_targets_judge_only_their_configuration():
    from deforum_wan.cli.bench.targets import TARGETS, judge

    def row(time_s, steps_run, **extra):
        return {"time_s": time_s, "steps_run": steps_run, "peak_vram_reserved_mb": None, **extra}

    base = {"device": "cuda", "gpu": "NVIDIA H100 80GB HBM3", "model": "wan2.1-t2v-1.3b", "size": "832x480",
            "frames": 81, "steps": 50}
    fast = row(40.0, 50, speedup_vs_quality=2.6, lpips=0.12, ssim=0.9)
    t = judge({**base, "presets": {"quality": row(104.0, 50), "fast": fast}})
    assert t["applies"] and t["fast_speedup"]["met"] is True
    assert t["fast_lpips"] == {"value": 0.12, "max": 0.10, "met": False, "applies": True}
    assert "fast_ssim" not in t  # SSIM stands in only where LPIPS is missing
    assert t["wan21_table_s"]["met"] is True and t["wan21_table_s"]["applies"] is False  # not a 4090
    # A fast preset that ran the distilled LoRA's 4 steps is held to the 8x target instead.
    t = judge({**base, "gpu": "NVIDIA GeForce RTX 4090",
               "presets": {"quality": row(300.0, 50), "fast": row(50.0, 4, speedup_vs_quality=6.0, lpips=None,
                                                                ssim=0.85)}})
    assert t["distill_speedup"]["met"] is False and t["distill_speedup"]["min"] == TARGETS["distill_speedup_min"]
    assert "fast_speedup" not in t and t["fast_ssim"]["met"] is True
    assert t["wan21_table_s"] == {"value": 300.0, "max": 261.4, "met": False, "applies": True}
    # 14B at 480p: the leanest preset's peak within 24 GiB.
    t = judge({**base, "model": "wan2.1-t2v-14b",
               "presets": {"quality": row(1, 50, peak_vram_reserved_mb=40 * 1024),
                           "low-vram": row(2, 50, peak_vram_reserved_mb=20 * 1024)}})
    assert t["a14b_480p_peak_gib"]["value"] == 20.0 and t["a14b_480p_peak_gib"]["met"] is True
    assert t["low_vram_peak_gib"]["applies"] is False  # the 8 GiB bound is for 1.3B


def test_compile_without_a_cpu_compiler_is_a_note(tiny_models_dir, monkeypatch):
    from deforum_wan.backends import speed

    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    with DiffusersBackend(get_model("tiny-random"), BackendOptions(models_dir=str(tiny_models_dir),
                                                                   compile=True)) as backend:
        assert "torch.compile on the CPU needs a C++ compiler (none on PATH); not compiled" in backend.notes
        assert not backend.compiled
        assert backend.generate(request(steps=2)).shape == (9, 32, 32, 3)


def test_bench_skips_the_memory_check_when_the_longer_render_lacks_weights(tmp_path):
    """On a GPU box with only Wan2.1 T2V-1.3B, the 4x longer render would chain into VACE-1.3B."""
    from deforum_wan.cli.bench.loop import missing_weights

    data = json.loads(EXAMPLE.read_text())
    real = dict(data, wan_model="wan2.1-t2v-1.3b", W=832, H=480, max_frames=324)
    assert missing_weights(real, str(tmp_path)) == ["wan2.1-t2v-1.3b", "wan2.1-vace-1.3b"]
    assert missing_weights(dict(data, max_frames=192), str(tmp_path)) == []  # tiny models are built

