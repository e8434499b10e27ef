"""Where single weight files are found: the models folder and extra folders, flat or in
ComfyUI's layout; files outside them, or linked out of them, refused in one line."""
from __future__ import annotations

import os

import pytest

from deforum_wan.errors import WanError
from deforum_wan.models.places import EXTRA_DIRS_ENV, find_weight_file, model_roots, weight_files


def test_roots_from_the_argument_and_the_environment(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    monkeypatch.setenv(EXTRA_DIRS_ENV, os.pathsep.join([str(b), str(c), str(b)]))
    assert model_roots(tmp_path / "models", [str(a)]) == [tmp_path / "models", a, b, c]
    monkeypatch.delenv(EXTRA_DIRS_ENV)
    assert model_roots(tmp_path / "models", os.pathsep.join([str(a), str(b)])) == [tmp_path / "models", a, b]


def test_flat_and_comfyui_folders_are_searched(tmp_path):
    models, comfy = tmp_path / "models", tmp_path / "ComfyUI" / "models"
    for folder in (models, comfy / "diffusion_models", comfy / "unet", comfy / "text_encoders", comfy / "vae",
                   comfy / "clip_vision", comfy / "loras", comfy / "checkpoints"):
        folder.mkdir(parents=True)
    (models / "flat.safetensors").write_bytes(b"x")
    (comfy / "diffusion_models" / "wan.safetensors").write_bytes(b"x")
    (comfy / "unet" / "old.gguf").write_bytes(b"x")
    (comfy / "vae" / "wan_2.1_vae.safetensors").write_bytes(b"x")
    (comfy / "checkpoints" / "sd.safetensors").write_bytes(b"x")  # not a folder Wan files live in
    (comfy / "vae" / "notes.txt").write_text("x")
    roots = [models, comfy]
    found = {p.name: kind for p, kind in weight_files(roots)}
    assert found == {"flat.safetensors": None, "wan.safetensors": "transformer", "old.gguf": "transformer",
                     "wan_2.1_vae.safetensors": "vae"}
    assert find_weight_file("wan_2.1_vae.safetensors", roots) == comfy / "vae" / "wan_2.1_vae.safetensors"
    assert find_weight_file("diffusion_models/wan.safetensors", roots) == comfy / "diffusion_models" / "wan.safetensors"
    with pytest.raises(WanError, match="not in the model folders"):
        find_weight_file("missing.safetensors", roots)


def test_outside_files_and_links_out_are_refused(tmp_path):
    models, outside = tmp_path / "models", tmp_path / "elsewhere"
    (models / "vae").mkdir(parents=True)
    outside.mkdir()
    secret = outside / "secret.safetensors"
    secret.write_bytes(b"x")
    (models / "vae" / "link.safetensors").symlink_to(secret)
    inside = models / "real.safetensors"
    inside.write_bytes(b"x")
    (models / "vae" / "inner_link.safetensors").symlink_to(inside)
    assert find_weight_file("inner_link.safetensors", [models]) == models / "vae" / "inner_link.safetensors"
    for name, words in (("link.safetensors", "links out of"), (str(secret), "is outside"),
                        ("../elsewhere/secret.safetensors", "is outside")):
        with pytest.raises(WanError, match=words) as err:
            find_weight_file(name, [models])
        assert "\n" not in str(err.value)
