"""Full-size random Wan models (models/random_full.py), bench --random-weights, the GPU script.

The fixture wan_published_configs.json holds the published values, read outside the repository
from diffusers' scripts/convert_wan_to_diffusers.py (get_transformer_config, vae22_diffusers_config,
the AutoencoderKLWan() defaults its convert_vae builds) and from Wan-Video/Wan2.1 and Wan2.2's
wan/configs and wan/modules (the commits are in its "_source" fields).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT

from deforum_wan.cli.bench.drift import RANDOM_NOTE
from deforum_wan.models import random_full as rf

PUBLISHED = json.loads((FIXTURES / "wan_published_configs.json").read_text(encoding="utf-8"))
OFFICIAL = PUBLISHED["official"]


@pytest.mark.parametrize("name", sorted(PUBLISHED["transformer"]))
def test_transformer_configs_equal_the_conversion_scripts_field_by_field(name):
    ours = rf.published_config(name)
    for field, value in PUBLISHED["transformer"][name].items():
        assert ours[field] == value, (name, field)


@pytest.mark.parametrize("name, official", [("transformer-t2v-1.3b", "t2v_1_3B"), ("transformer-vace-1.3b", "t2v_1_3B"),
                                            ("transformer-i2v-14b", "i2v_14B"), ("transformer-ti2v-5b", "ti2v_5B")])
def test_transformer_configs_match_wans_own_configs(name, official):
    ours, theirs = rf.published_config(name), OFFICIAL[official]
    assert ours["num_attention_heads"] * ours["attention_head_dim"] == theirs["dim"]
    assert (ours["num_attention_heads"], ours["ffn_dim"], ours["freq_dim"], ours["num_layers"], ours["eps"]) == (
        theirs["num_heads"], theirs["ffn_dim"], theirs["freq_dim"], theirs["num_layers"], theirs["eps"])
    assert list(ours["patch_size"]) == theirs["patch_size"]
    assert (ours["in_channels"], ours["out_channels"]) == (theirs["in_dim"], theirs["out_dim"])
    assert ours["text_dim"] == OFFICIAL["umt5_xxl"]["dim"]
    if name == "transformer-vace-1.3b":
        assert ours["vace_layers"] == OFFICIAL["vace_1_3B"]["vace_layers"]
        assert ours["vace_in_channels"] == OFFICIAL["vace_1_3B"]["vace_in_dim"]
    if name == "transformer-i2v-14b":
        assert ours["image_dim"] == OFFICIAL["clip_vit_h_14"]["vision_dim"]


def test_encoder_and_vae_configs_match_the_published_ones():
    t5, wan_t5 = rf.published_config("umt5-xxl"), OFFICIAL["umt5_xxl"]
    assert (t5["vocab_size"], t5["d_model"], t5["num_heads"] * t5["d_kv"], t5["d_ff"], t5["num_heads"],
            t5["num_layers"], t5["relative_attention_num_buckets"], t5["relative_attention_max_distance"]) == (
        wan_t5["vocab_size"], wan_t5["dim"], wan_t5["dim_attn"], wan_t5["dim_ffn"], wan_t5["num_heads"],
        wan_t5["encoder_layers"], wan_t5["num_buckets"], wan_t5["max_dist"])
    clip, wan_clip = rf.published_config("clip-vit-h-14"), OFFICIAL["clip_vit_h_14"]
    assert (clip["image_size"], clip["patch_size"], clip["hidden_size"], clip["intermediate_size"],
            clip["num_attention_heads"], clip["num_hidden_layers"], clip["projection_dim"]) == (
        wan_clip["image_size"], wan_clip["patch_size"], wan_clip["vision_dim"],
        wan_clip["vision_dim"] * wan_clip["vision_mlp_ratio"], wan_clip["vision_heads"], wan_clip["vision_layers"],
        wan_clip["embed_dim"])
    vae21, wan_vae = rf.published_config("vae-wan2.1"), OFFICIAL["vae_2_1"]
    assert (vae21["base_dim"], vae21["z_dim"], vae21["dim_mult"], vae21["num_res_blocks"],
            vae21["temperal_downsample"]) == (wan_vae["dim"], wan_vae["z_dim"], wan_vae["dim_mult"],
                                              wan_vae["num_res_blocks"], wan_vae["temperal_downsample"])
    for field, value in PUBLISHED["vae-wan2.1"].items():
        assert vae21[field] == value, field
    vae22 = rf.published_config("vae-wan2.2")
    for field, value in PUBLISHED["vae-wan2.2"].items():
        if field != "clip_output":  # an argument the conversion script passes that AutoencoderKLWan no longer takes
            assert vae22[field] == value, field


def test_full_size_parameter_counts_are_wans():
    # Counted on the meta device from the configs: the sizes the models are known by.
    t2v = rf.parameter_count("wan2.1-t2v-1.3b")
    assert 1.3e9 < t2v["transformer"] < 1.5e9 and 5.6e9 < t2v["text_encoder"] < 5.8e9
    assert 4.9e9 < rf.parameter_count("wan2.2-ti2v-5b")["transformer"] < 5.1e9
    i2v = rf.parameter_count("wan2.1-i2v-14b-720p")
    assert 14e9 < i2v["transformer"] < 17e9 and 0.6e9 < i2v["image_encoder"] < 0.7e9
    scaled = rf.parameter_count("wan2.1-t2v-1.3b", "scaled")
    assert sum(scaled.values()) < 20e6  # the vocabulary stays, widths and depths shrink


def test_scaled_keeps_what_ties_the_parts_together():
    for model_id in rf.RECIPES:
        parts = {part: cfg for part, (_, cfg) in rf.component_configs(model_id, "scaled").items()}
        full = {part: cfg for part, (_, cfg) in rf.component_configs(model_id).items()}
        assert parts["transformer"]["text_dim"] == parts["text_encoder"]["d_model"]
        assert parts["transformer"]["in_channels"] == full["transformer"]["in_channels"]
        assert parts["vae"]["z_dim"] == full["vae"]["z_dim"]
        assert parts["text_encoder"]["vocab_size"] == full["text_encoder"]["vocab_size"]
        if "image_encoder" in parts:
            assert parts["transformer"]["image_dim"] == parts["image_encoder"]["hidden_size"]


def test_models_without_a_recipe_are_refused(tmp_path):
    from deforum_wan.errors import WanError

    with pytest.raises(WanError, match="no full-size random build of 'wan2.2-t2v-a14b'"):
        rf.write_random_model("wan2.2-t2v-a14b", tmp_path / "x")


def test_the_command_writes_configs_only_and_the_models_list_says_random(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    out = subprocess.run([sys.executable, "-m", "deforum_wan", "tiny-models", str(tmp_path), "--full-size",
                          "wan2.1-t2v-1.3b", "--full-size", "wan2.1-i2v-14b-480p"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert "wan2.1-t2v-1.3b (full architecture" in out and "transformer 1.42 B" in out and "image_encoder 0.63 B" in out
    folder = tmp_path / "wan2.1-t2v-1.3b"
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()]
    assert sum(sizes) < 1 << 20 and not list(folder.rglob("*.safetensors"))  # kilobytes: no weights
    listing = subprocess.run([sys.executable, "-m", "deforum_wan", "models", "--models-dir", str(tmp_path), "--json"],
                             capture_output=True, text=True, env=env, check=True).stdout
    rows = {r["id"]: r for r in json.loads(listing)["models"]}
    assert rows["wan2.1-t2v-1.3b"]["random"] and rows["wan2.1-t2v-1.3b"]["present"]
    assert not rows["wan2.1-vace-1.3b"]["random"] and not rows["wan2.1-vace-1.3b"]["present"]


@pytest.mark.slow
def test_a_scaled_build_loads_through_the_normal_loader_and_renders_one_window(tmp_path):
    import numpy as np
    from PIL import Image

    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.loop import Renderer

    rf.write_random_model("wan2.1-t2v-1.3b", tmp_path / "models" / "wan2.1-t2v-1.3b", "scaled")
    settings = {"wan_model": "wan2.1-t2v-1.3b", "wan_size": "64x64", "max_frames": 9, "fps": 16, "wan_steps": 2,
                "prompts": {"0": "a red boat"}, "batch_name": "random", "wan_camera": "off",
                "wan_clip_duration": 0, "wan_overlap": 0}
    result = Renderer(load_settings(settings), str(tmp_path / "out"), models_dir=str(tmp_path / "models")).run()
    frames = sorted(Path(result.run_dir).glob("*.png"))
    assert result.status == "done" and result.frames == 9 and len(frames) == 9 and result.video.is_file()
    pixels = np.asarray(Image.open(frames[-1]))
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0  # a picture came out, not a constant


@pytest.mark.slow
def test_the_i2v_build_takes_an_image_and_two_models_share_their_encoder(tmp_path):
    import numpy as np

    from deforum_wan.backends.base import BackendOptions, GenerateRequest
    from deforum_wan.backends.diffusers_backend import DiffusersBackend
    from deforum_wan.cli.bench.random_weights import pair_memory
    from deforum_wan.models.registry import get_model

    for model_id in ("wan2.1-i2v-14b-480p", "wan2.1-t2v-1.3b", "wan2.1-vace-1.3b"):
        rf.write_random_model(model_id, tmp_path / model_id, "scaled")
    backend = DiffusersBackend(get_model("wan2.1-i2v-14b-480p"), BackendOptions(models_dir=str(tmp_path)))
    frames = backend.generate(GenerateRequest(mode="i2v", prompt="a boat", negative_prompt="", num_frames=5, width=32,
                                              height=32, seed=1, guidance_scale=5.0, steps=1,
                                              image=np.full((32, 32, 3), 0.5, np.float32)))
    backend.close()
    assert np.asarray(frames).shape == (5, 32, 32, 3)
    pair = pair_memory("wan2.1-t2v-1.3b", str(tmp_path))
    assert pair["models"] == ["wan2.1-t2v-1.3b", "wan2.1-vace-1.3b"]
    assert set(pair["shared"]["components_shared"]) == {"text_encoder", "tokenizer", "vae"}
    assert pair["separate"]["components_shared"] == []
    assert pair["shared"]["tensors_mb"] < pair["separate"]["tensors_mb"]


def test_mark_flags_quality_and_first_block_figures():
    from deforum_wan.cli.bench.random_weights import WHY_FIRST_BLOCK, WHY_QUALITY, mark

    result = {"presets": {
        "quality": {"time_s": 2.0, "cache": []},
        "balanced": {"time_s": 1.0, "speedup_vs_quality": 2.0, "psnr_db": 30.0, "ssim": 0.9, "cache": ["first_block"]},
        "fast": {"time_s": 0.8, "speedup_vs_quality": 2.5, "psnr_db": 25.0, "lpips": 0.1, "cache": ["mag"]}},
        "targets": {"fast_speedup": {"value": 2.5, "min": 2.5, "met": True, "applies": True},
                    "fast_lpips": {"value": 0.1, "max": 0.1, "met": True, "applies": True}}}
    mark(result)
    rows = result["presets"]
    assert "not_meaningful" not in rows["quality"]
    assert rows["balanced"]["not_meaningful"] == {"psnr_db": WHY_QUALITY, "ssim": WHY_QUALITY, "time_s": WHY_FIRST_BLOCK,
                                                  "speedup_vs_quality": WHY_FIRST_BLOCK}
    assert rows["fast"]["not_meaningful"] == {"psnr_db": WHY_QUALITY, "lpips": WHY_QUALITY}  # MagCache's time counts
    assert result["targets"]["fast_lpips"]["applies"] is False
    assert result["targets"]["fast_speedup"]["applies"] is True


def _device_command() -> str:
    text = (ROOT / "benchmarks" / "run_gpu_random.sh").read_text(encoding="utf-8")
    return re.search(r"^# device command: (.+)$", text, re.M).group(1)


def test_the_gpu_scripts_command_line_fits_a_device_call():
    command = _device_command()
    assert len(command) <= 2000
    assert command.startswith("bash benchmarks/run_gpu_random.sh ")


def test_the_gpu_scripts_own_steps_are_bench_commands_in_its_help(capsys):
    from deforum_wan.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--help"])
    text = capsys.readouterr().out
    assert re.search(r"^ +official +the official backend's first window", text, re.M), text
    assert re.search(r"^ +report +combine the step JSONs", text, re.M), text
    assert "bench official OUT [WxH]" in text and "bench report OUTDIR" in text
    assert build_parser().parse_args(["bench", "official", "o.json"]).size == (832, 480)


def test_bench_report_combines_the_steps_it_finds(tmp_path, capsys):
    from deforum_wan.cli.main import main

    (tmp_path / "official.json").write_text(json.dumps({"ran": False, "failure": "RuntimeError: needs CUDA\nhere"}))
    (tmp_path / "t2v-loop.json").write_text(json.dumps(
        {"device": "cpu", "gpu": None, "versions": {}, "size": "32x32", "frames": 5, "steps": 2, "loop_s": 1.1,
         "bare_diffusers_s": 1.0, "loop_over_bare": 1.1,
         "targets": {"loop_over_bare": {"value": 1.1, "max": 1.10, "met": True, "applies": True}}}))
    row = {"time_s": 9.0, "window_s": 2.5, "vde_colour": 0.1, "vde_clarity": 0.2, "seam_ratio": 1.5,
           "measure_ms": 12.5, "correct_ms": 40.25, "windows": [{"window": 0, "chroma": 0.0, "sharpness": 0.0}]}
    (tmp_path / "drift.json").write_text(json.dumps({"drift": {
        "windows": 1, "frames": 8, "prompt": "p", "color_coherence": "LAB", "note": RANDOM_NOTE,
        "rows": {"off": {**row, "correct_ms": None}, "lab": row}}}))
    assert main(["bench", "report", str(tmp_path)]) == 0
    (md,) = tmp_path.glob("*-cpu-random.md")
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {md}"
    text = md.read_text(encoding="utf-8")
    assert "1.1 s / 1.0 s = 1.1 (32x32, 5 frames, 2 steps)" in text
    assert "- loop_over_bare: 1.1 (<= 1.1): met" in text
    assert "failed: `RuntimeError: needs CUDA / here`" in text
    drift = text[text.index("## T2V-1.3B: what measuring and correcting drift cost"):text.index("## The official")]
    assert f"**{RANDOM_NOTE}**" in drift and "say nothing about Wan's drift" in drift
    assert "| off | 9.00 | 2.50 | 0.100 | 0.200 | 1.50 | 12.5 | - |" in drift
    assert "| lab | 9.00 | 2.50 | 0.100 | 0.200 | 1.50 | 12.5 | 40.2 |" in drift
    assert text.count("not measured (skipped or failed; see its log)") == 3  # the presets, TI2V and the formats
    report = json.loads(next(tmp_path.glob("*-cpu-random.json")).read_text(encoding="utf-8"))
    assert report["device"] == "cpu" and report["ti2v"] is None and report["official"]["ran"] is False


@pytest.mark.slow
def test_the_gpu_script_runs_scaled_on_the_cpu_and_writes_its_report(tmp_path):
    env = {**os.environ, "ALLOW_CPU": "1", "PYTHON": sys.executable, "SIZE": "32x32", "FRAMES": "5", "STEPS": "2",
           "TI2V_SIZE": "64x64", "TI2V_FRAMES": "5", "TI2V_STEPS": "1", "FORMAT_STEPS": "1", "PRESETS": "fast",
           "DRIFT_WINDOWS": "2", "DRIFT_STEPS": "1"}
    out = tmp_path / "report"
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "run_gpu_random.sh"), str(out)], capture_output=True,
                         text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (md,) = out.glob("*-cpu-random.md")
    (js,) = out.glob("*-cpu-random.json")
    report = json.loads(js.read_text(encoding="utf-8"))
    presets = report["t2v-presets"]["presets"]
    assert set(presets) == {"quality", "fast"} and presets["fast"]["not_meaningful"]["psnr_db"]
    assert report["t2v-presets"]["random_weights"]["size"] == "scaled"
    assert report["t2v-presets"]["pair"]["shared"]["tensors_mb"] < report["t2v-presets"]["pair"]["separate"]["tensors_mb"]
    assert report["t2v-loop"]["loop_over_bare"] > 0 and report["ti2v"]["presets"]["quality"]["time_s"] > 0
    assert report["official"]["ran"] is False and "needs CUDA" in report["official"]["failure"]
    assert report["formats"]["formats"]["rows"]["GGUF Q4_K"]["quantised"] == ["Q4_K"]
    drift = report["drift"]["drift"]
    assert list(drift["rows"]) == ["off", "deforum", "lab"] and drift["note"] == RANDOM_NOTE
    assert all(row["measure_ms"] > 0 for row in drift["rows"].values()) and drift["rows"]["lab"]["correct_ms"] > 0
    text = md.read_text(encoding="utf-8")
    assert "| GGUF Q8_0 |" in text and "| fp8 file |" in text
    assert "| fast |" in text and "†" in text and "warm pair" in text and "official backend" in text


def test_modules_are_made_in_the_target_dtype_as_from_pretrained_keeps_them(tmp_path):
    import torch

    rf.write_random_model("wan2.1-t2v-1.3b", tmp_path / "m", "scaled")
    pipe = rf.build_pipeline(tmp_path / "m", "WanPipeline", "cpu", {"default": torch.bfloat16, "vae": torch.float32})
    assert torch.get_default_dtype() == torch.float32  # the build's default dtype does not leak
    assert {p.dtype for p in pipe.text_encoder.parameters()} == {torch.bfloat16}  # UMT5's "wo" is fp32 only under fp16
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}
    kept = {n for n, p in pipe.transformer.named_parameters() if p.dtype == torch.float32}
    assert kept and all({"time_embedder", "scale_shift_table", "norm2"} & set(n.split(".")) for n in kept)
    assert pipe.transformer.patch_embedding.weight.dtype == torch.bfloat16
    again = rf.build_pipeline(tmp_path / "m", "WanPipeline", "cpu", {"default": torch.bfloat16, "vae": torch.float32})
    assert torch.equal(pipe.transformer.proj_out.weight, again.transformer.proj_out.weight)  # seeded: the same weights


def test_a_folder_built_by_other_library_versions_says_how_to_rebuild(tmp_path):
    import torch

    from deforum_wan.backends.diffusers_backend import load_pipeline
    from deforum_wan.errors import WanError

    folder = rf.write_random_model("wan2.1-t2v-1.3b", tmp_path / "wan2.1-t2v-1.3b", "scaled")
    marker = json.loads((folder / rf.MARKER).read_text(encoding="utf-8"))
    marker["versions"]["diffusers"] = "0.0.1"
    (folder / rf.MARKER).write_text(json.dumps(marker), encoding="utf-8")
    with pytest.raises(WanError, match=r"rebuild it with: python -m deforum_wan tiny-models .* --full-size wan2.1-t2v-1.3b --scaled$"):
        load_pipeline(folder, "WanPipeline", {"default": torch.float32}, "cpu")


def test_a_model_that_continues_itself_has_no_pair(tmp_path):
    from deforum_wan.cli.bench.random_weights import lines, markdown, pair_memory

    pair = pair_memory("wan2.2-ti2v-5b", str(tmp_path))  # nothing is loaded: no weights needed
    assert pair == {"models": ["wan2.2-ti2v-5b"], "skipped": "wan2.2-ti2v-5b continues its own windows: there is no pair"}
    assert lines({"pair": pair}) == [f"  warm pair: {pair['skipped']}"]
    assert markdown({"pair": pair}) == ["", f"Warm pair: {pair['skipped']}."]
