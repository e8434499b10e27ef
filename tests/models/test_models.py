"""Locating and downloading weights: models dir, hub cache, offline refusals (all real)."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deforum_wan.cli.models import add_model_commands
from deforum_wan.errors import WanError
from deforum_wan.models.registry import MODELS, get_model
from deforum_wan.models.weights import (
    default_models_dir,
    download,
    locate_weights,
    model_status,
    weights_missing_message,
)

T2V = "wan2.1-t2v-1.3b"
REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"


def run_python(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter: huggingface_hub reads HF_HOME/HF_HUB_OFFLINE at import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tmp_path))
    assert default_models_dir() == tmp_path
    monkeypatch.delenv("DEFORUM_WAN_MODELS_DIR")
    assert default_models_dir() == Path.home() / ".cache" / "deforum-wan" / "models"


def test_absent_weights_are_none_and_the_error_names_the_command(tmp_path, isolated_hf_cache):
    spec = get_model(T2V)
    assert locate_weights(spec, tmp_path) is None
    assert locate_weights(spec, tmp_path, layout="official") is None
    message = weights_missing_message(spec, tmp_path)
    assert "\n" not in message and REPO in message and f"python -m deforum_wan download {T2V}" in message
    status = model_status(spec, tmp_path)
    assert not status.present and status.size_bytes == 0 and status.path is None


@pytest.mark.parametrize("folder_name", ["Wan2.1-T2V-1.3B-Diffusers", T2V])
def test_models_dir_folder_by_repo_name_or_id(tiny_models_dir, tmp_path, isolated_hf_cache, folder_name):
    target = tmp_path / folder_name
    shutil.copytree(tiny_models_dir / "tiny-random", target)
    spec = get_model(T2V)
    assert locate_weights(spec, tmp_path) == target
    status = model_status(spec, tmp_path)
    assert status.present and status.diffusers_path == target and status.size_bytes > 50_000


def test_incomplete_download_is_not_taken(tiny_models_dir, tmp_path, isolated_hf_cache):
    target = tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
    shutil.copytree(tiny_models_dir / "tiny-random", target)
    (target / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    assert locate_weights(get_model(T2V), tmp_path) is None
    # A sharded checkpoint whose index names a missing shard is incomplete too.
    shutil.copytree(tiny_models_dir / "tiny-random" / "transformer", target / "transformer", dirs_exist_ok=True)
    index = {"metadata": {}, "weight_map": {"a": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    (target / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    assert locate_weights(get_model(T2V), tmp_path) is None


def test_official_layout_counts_only_when_whole(tmp_path, isolated_hf_cache):
    """Encoder, VAE and every DiT shard its index names; an interrupted download is not whole."""
    folder = tmp_path / "Wan2.1-T2V-1.3B"
    folder.mkdir()
    (folder / "config.json").write_text("{}")

    def found():
        return locate_weights(get_model(T2V), tmp_path, layout="official")

    assert found() is None
    (folder / "models_t5_umt5-xxl-enc-bf16.pth").write_bytes(b"x" * 10)
    assert found() is None  # the encoder alone is how an interrupted download starts
    (folder / "Wan2.1_VAE.pth").write_bytes(b"v")
    index = {"weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "diffusion_pytorch_model-00001-of-00002.safetensors").write_bytes(b"s")
    assert found() is None  # one shard missing
    (folder / "diffusion_pytorch_model-00002-of-00002.safetensors").write_bytes(b"s")
    assert found() == folder
    assert locate_weights(get_model(T2V), tmp_path, layout="diffusers") is None
    status = model_status(get_model(T2V), tmp_path)
    assert status.official_path == folder and status.diffusers_path is None
    # Wan2.2 A14B: one VAE and encoder, a DiT per expert
    a14b = tmp_path / "Wan2.2-T2V-A14B"
    for name in ("high_noise_model", "low_noise_model"):
        (a14b / name).mkdir(parents=True)
    (a14b / "models_t5_umt5-xxl-enc-bf16.pth").write_bytes(b"x")
    (a14b / "Wan2.1_VAE.pth").write_bytes(b"v")
    (a14b / "high_noise_model" / "diffusion_pytorch_model.safetensors").write_bytes(b"s")
    assert locate_weights(get_model("wan2.2-t2v-a14b"), tmp_path, layout="official") is None
    (a14b / "low_noise_model" / "diffusion_pytorch_model.safetensors").write_bytes(b"s")
    assert locate_weights(get_model("wan2.2-t2v-a14b"), tmp_path, layout="official") == a14b


def test_hub_cache_snapshot_is_found_offline(tiny_models_dir, tmp_path):
    """A snapshot in the standard hub cache layout, found by huggingface_hub with no network."""
    hub = tmp_path / "hf-home" / "hub" / ("models--" + REPO.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_models_dir / "tiny-random", hub / "snapshots" / commit)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(commit)
    code = f"""
        from deforum_wan.models.registry import get_model
        from deforum_wan.models.weights import locate_weights
        print(locate_weights(get_model({T2V!r}), {str(tmp_path / 'empty')!r}))
    """
    done = run_python(code, {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(hub / "snapshots" / commit)


def test_offline_download_fails_with_one_clear_line(tmp_path):
    code = f"""
        from deforum_wan.errors import WanError
        from deforum_wan.models.registry import get_model
        from deforum_wan.models.weights import cli_advice, download, fetch_repo, locate_weights
        spec = get_model({T2V!r})
        assert locate_weights(spec, {str(tmp_path / 'models')!r}) is None
        for attempt in (lambda: download(spec, {str(tmp_path / 'models')!r}),
                        # the hub client's own offline refusal, mapped to one line
                        lambda: fetch_repo(spec.diffusers_repo, {str(tmp_path / 'models')!r}, "diffusers",
                                           cli_advice(spec))):
            try:
                attempt()
            except WanError as e:
                print("WanError:", e)
            else:
                print("no error")
    """
    done = run_python(code, {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("WanError:") and REPO in line
        assert f"python -m deforum_wan download {T2V}" in line
    assert not any((tmp_path / "models").glob("*/*.safetensors"))


def test_download_cli_reports_offline_as_wan_error(tmp_path):
    code = f"""
        import argparse
        from deforum_wan.cli.models import add_model_commands
        from deforum_wan.errors import WanError
        parser = argparse.ArgumentParser()
        add_model_commands(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["download", {T2V!r}, "--layout", "official",
                                  "--models-dir", {str(tmp_path)!r}])
        try:
            args.func(args)
        except WanError as e:
            print(e)
    """
    done = run_python(code, {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "Wan-AI/Wan2.1-T2V-1.3B" in done.stdout
    assert f"python -m deforum_wan download {T2V} --layout official" in done.stdout


def test_download_of_a_tiny_model_builds_it(tmp_path):
    path = download(get_model("tiny-random"), models_dir=tmp_path)
    assert path == tmp_path / "tiny-random" and (path / "model_index.json").is_file()
    with pytest.raises(WanError, match="diffusers layout only"):
        download(get_model("tiny-random"), models_dir=tmp_path, layout="official")
    with pytest.raises(WanError, match="layout must be"):
        locate_weights(get_model(T2V), tmp_path, layout="gguf")


def test_models_command_lists_the_registry(tiny_models_dir, isolated_hf_cache, capsys):
    parser = argparse.ArgumentParser()
    add_model_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "--models-dir", str(tiny_models_dir)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for spec in MODELS.values():
        assert spec.id in out
    line = next(l for l in out.splitlines() if l.startswith("tiny-random "))
    assert "yes" in line and "KB" in line and "built locally" in line
    line = next(l for l in out.splitlines() if l.startswith("wan2.2-ti2v-5b"))
    assert " 24 " in line and " 121 " in line and "1280x704" in line and " no " in line
    assert "Wan-AI/Wan2.2-TI2V-5B-Diffusers" in line

    args = parser.parse_args(["models", "--models-dir", str(tiny_models_dir), "--json"])
    assert args.func(args) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    assert rows["tiny-random"]["present"] and not rows[T2V]["present"]
    assert rows[T2V]["fps"] == 16 and rows[T2V]["window"] == 81
