"""Tiny random Wan pipelines: built locally, real diffusers layout, version-bound."""
import argparse
import json

import pytest
from safetensors.torch import load_file

from deforum_wan.cli.models import add_model_commands
from deforum_wan.errors import WanError
from deforum_wan.models.registry import MODELS
from deforum_wan.models.tiny import MARKER, build_tiny_model, ensure_tiny_model, tiny_model_ids
from deforum_wan.models.weights import locate_weights

EXPECTED_CLASS = {
    "tiny-random": "WanPipeline",
    "tiny-random-i2v": "WanImageToVideoPipeline",
    "tiny-random-flf2v": "WanImageToVideoPipeline",
    "tiny-random-ti2v": "WanPipeline",
    "tiny-random-vace": "WanVACEPipeline",
    "tiny-random-a14b": "WanPipeline",
    "tiny-random-a14b-i2v": "WanImageToVideoPipeline",
}


def test_every_tiny_registry_entry_is_built(tiny_models_dir):
    assert set(tiny_model_ids()) == {m.id for m in MODELS.values() if m.tiny} == set(EXPECTED_CLASS)
    for model_id, cls in EXPECTED_CLASS.items():
        folder = tiny_models_dir / model_id
        index = json.loads((folder / "model_index.json").read_text())
        assert index["_class_name"] == cls
        marker = json.loads((folder / MARKER).read_text())
        assert marker["model"] == model_id and set(marker["versions"]) >= {"diffusers", "transformers"}
        # diffusers layout, weights as safetensors only: no pickles anywhere.
        files = [p.name for p in folder.rglob("*") if p.is_file()]
        assert any(n.endswith(".safetensors") for n in files)
        assert not [n for n in files if n.endswith((".bin", ".pth", ".pt", ".ckpt"))]
        assert locate_weights(MODELS[model_id], tiny_models_dir) == folder


def test_model_shapes_follow_the_real_architectures(tiny_models_dir):
    def config(model_id, part):
        return json.loads((tiny_models_dir / model_id / part / "config.json").read_text())

    z = config("tiny-random", "vae")["z_dim"]
    assert config("tiny-random", "transformer")["in_channels"] == z
    # Wan2.1 I2V: noise + condition latents + 4 mask channels; image_dim = CLIP hidden size.
    i2v = config("tiny-random-i2v", "transformer")
    assert i2v["in_channels"] == 2 * z + 4
    assert i2v["image_dim"] == config("tiny-random-i2v", "image_encoder")["hidden_size"]
    assert config("tiny-random-flf2v", "transformer")["pos_embed_seq_len"] is not None
    # Wan2.2 TI2V: residual VAE with 2x2 pixel patches, timesteps expanded per token.
    ti2v_vae = config("tiny-random-ti2v", "vae")
    assert ti2v_vae["is_residual"] and ti2v_vae["patch_size"] == 2
    assert config("tiny-random-ti2v", "transformer")["in_channels"] == ti2v_vae["z_dim"]
    assert json.loads((tiny_models_dir / "tiny-random-ti2v" / "model_index.json").read_text())["expand_timesteps"]
    a14b = json.loads((tiny_models_dir / "tiny-random-a14b" / "model_index.json").read_text())
    assert a14b["boundary_ratio"] == 0.875 and a14b["transformer_2"][1] == "WanTransformer3DModel"
    # Wan2.2 I2V-A14B: two I2V experts and no CLIP image encoder.
    a14b_i2v = json.loads((tiny_models_dir / "tiny-random-a14b-i2v" / "model_index.json").read_text())
    assert a14b_i2v["boundary_ratio"] == 0.9 and a14b_i2v["image_encoder"] == [None, None]
    assert config("tiny-random-a14b-i2v", "transformer_2")["in_channels"] == 2 * z + 4


def test_builds_are_deterministic(tiny_models_dir, tmp_path):
    again = build_tiny_model("tiny-random", tmp_path / "tiny-random")
    name = "transformer/diffusion_pytorch_model.safetensors"
    a, b = load_file(tiny_models_dir / "tiny-random" / name), load_file(again / name)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_ensure_reuses_a_current_build_and_rebuilds_a_stale_one(tiny_models_dir, tmp_path):
    folder = ensure_tiny_model("tiny-random", tmp_path)
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_tiny_model("tiny-random", tmp_path) == folder
    assert weights.stat().st_mtime_ns == stamp  # not rebuilt
    marker = json.loads((folder / MARKER).read_text())
    marker["versions"]["diffusers"] = "0.0.1"  # as if written by another diffusers
    (folder / MARKER).write_text(json.dumps(marker))
    assert ensure_tiny_model("tiny-random", tmp_path) == folder
    assert json.loads((folder / MARKER).read_text())["versions"]["diffusers"] != "0.0.1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_real_models_are_not_built(tmp_path):
    with pytest.raises(WanError, match="not a tiny model"):
        ensure_tiny_model("wan2.1-t2v-1.3b", tmp_path)


def test_tiny_models_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_model_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tiny-models", str(tmp_path / "built")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for model_id in EXPECTED_CLASS:
        assert f"{model_id}: " in out and (tmp_path / "built" / model_id / "model_index.json").is_file()
