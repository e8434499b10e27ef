"""Setting up the official Wan code against a real local git remote and real wheels: the clone
at the pinned commit, its requirements in a private folder only, the import check, the load
report, no network, a second setup and remove."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from official_repo import git, make_remote, offline_pip

from deforum_wan.backends.base import BackendOptions
from deforum_wan.backends.chain import load_backend
from deforum_wan.errors import BackendError, WanError
from deforum_wan.models.official_code import COMMITS_ENV, MIRROR_ENV, code_for, head_commit, home, repo_dir
from deforum_wan.models.official_setup import import_check, read_requirements, remove, setup, status
from deforum_wan.models.registry import get_model


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    return make_remote(tmp_path_factory.mktemp("remote"))


@pytest.fixture
def pinned(remote, monkeypatch):
    mirror, commit, wheels = remote
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    monkeypatch.setenv(COMMITS_ENV, f"wan2.1={commit}")
    return commit, {**os.environ, **offline_pip(wheels)}


def _found_in_python(module: str) -> bool:
    out = subprocess.run([sys.executable, "-c", f"import importlib.util; print(importlib.util.find_spec({module!r}))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip() != "None"


def test_setup_clones_the_pinned_commit_and_installs_beside_it(tmp_path, pinned):
    commit, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    said = []
    line = setup(code, models, python=sys.executable, env=env, say=lambda text, fraction=None: said.append(text))
    repo = repo_dir(code, models)
    assert head_commit(repo) == commit
    assert "LATER" not in (repo / "wan" / "__init__.py").read_text()  # not the branch head
    packages = home(code, models) / "packages"
    installed = sorted(p.name for p in packages.iterdir() if not p.name.endswith(".dist-info"))
    assert installed == ["wantinyalpha", "wantinybeta", "wantinygamma"]  # gamma: beta's dependency
    assert line.startswith(f"set up Wan-Video/Wan2.1 at {commit[:12]} in {repo}: 3 packages into {packages}")
    assert "skipped flash-attn (needs a CUDA build; PyTorch SDPA replaces it), gradio" in line
    assert line.endswith("the wan package imports in the worker")
    assert any(text.startswith("cloning Wan-Video/Wan2.1") for text in said)
    assert "installing [1/3] wantinyalpha==1.0" in said
    # never into this Python's own packages
    assert not _found_in_python("wantinyalpha")
    assert not list(Path(sysconfig.get_paths()["purelib"]).glob("wantiny*"))

    marker = home(code, models) / "setup.json"
    before = marker.stat().st_mtime_ns
    again = setup(code, models, python=sys.executable, env=env)
    assert again == f"Wan-Video/Wan2.1 is already set up at {commit[:12]} in {repo}; nothing to do"
    assert marker.stat().st_mtime_ns == before


def test_the_import_check_names_what_is_missing(tmp_path, pinned):
    _, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    setup(code, models, python=sys.executable, env=env)
    assert import_check(code, models, sys.executable, env) is None
    packages = home(code, models) / "packages"
    for found in packages.glob("wantinybeta*"):
        subprocess.run(["rm", "-r", str(found)], check=True)
    said = import_check(code, models, sys.executable, env)
    assert said == "the wan package of Wan-Video/Wan2.1 cannot import in the worker: missing wantinybeta"
    assert status(code, models, python=sys.executable, env=env).endswith(said)


def test_the_load_report_names_the_commit_and_warns_for_another(tmp_path, pinned, monkeypatch):
    commit, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    setup(code, models, python=sys.executable, env=env)
    spec = get_model("wan2.1-t2v-1.3b")
    with pytest.raises(BackendError) as found:
        load_backend(spec, "official", BackendOptions(models_dir=str(models)))
    assert f"official code: Wan-Video/Wan2.1 at {commit[:12]} in {repo_dir(code, models)}" in str(found.value)
    assert "not the pinned" not in str(found.value)
    # the project now pins another commit: the clone is still used, with both named
    monkeypatch.setenv(COMMITS_ENV, "wan2.1=" + "ab" * 20)
    with pytest.raises(BackendError) as found:
        load_backend(spec, "official", BackendOptions(models_dir=str(models)))
    assert f"Wan-Video/Wan2.1 at {commit[:12]}, not the pinned abababababab" in str(found.value)


def test_a_clone_named_by_hand_is_used_as_before_with_its_commit_named(tmp_path, pinned, remote):
    commit, _ = pinned
    clone = tmp_path / "Wan2.1"
    git("clone", "-q", str(remote[0] / "Wan2.1"), str(clone), cwd=tmp_path)  # the branch head: a later commit
    later = git("rev-parse", "HEAD", cwd=clone)
    with pytest.raises(BackendError) as found:
        load_backend(get_model("wan2.1-t2v-1.3b"), "official",
                     BackendOptions(models_dir=str(tmp_path / "models"), official_repo_path=str(clone)))
    said = str(found.value)
    assert f"official code: Wan-Video/Wan2.1 at {later[:12]} in {clone}" in said
    assert f"Wan-Video/Wan2.1 at {later[:12]}, not the pinned {commit[:12]}" in said


def test_update_moves_to_the_pinned_commit(tmp_path, pinned, remote, monkeypatch):
    commit, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    assert "not set up" in setup(code, models, python=sys.executable, env=env, update=True)
    assert not (models / "official").exists()
    setup(code, models, python=sys.executable, env=env)
    later = git("rev-parse", "main", cwd=remote[0] / "Wan2.1")
    monkeypatch.setenv(COMMITS_ENV, f"wan2.1={later}")
    line = setup(code_for("wan2.1"), models, python=sys.executable, env=env, update=True)
    assert line.startswith(f"set up Wan-Video/Wan2.1 at {later[:12]}")
    assert head_commit(repo_dir(code, models)) == later
    assert "LATER" in (repo_dir(code, models) / "wan" / "__init__.py").read_text()


def test_remove_leaves_nothing_behind(tmp_path, pinned):
    _, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    models.mkdir()
    setup(code, models, python=sys.executable, env=env)
    assert remove(code, models) == f"removed Wan-Video/Wan2.1 and its packages ({home(code, models)})"
    assert list(models.iterdir()) == []
    assert status(code, models, python=sys.executable, env=env) == "wan2.1: not set up"


def test_no_network_is_one_line(tmp_path, pinned, monkeypatch):
    _, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens there: as offline
    with pytest.raises(WanError) as found:
        setup(code, models, python=sys.executable, env=env)
    said = str(found.value)
    assert said.startswith("no network: cloning Wan-Video/Wan2.1 could not reach http://127.0.0.1:9/Wan2.1 (")
    assert "\n" not in said and "DEFORUM_WAN_OFFICIAL_REPO" in said
    assert list(models.iterdir()) == []


def test_no_package_index_is_one_line(tmp_path, pinned, remote):
    _, env = pinned
    code, models = code_for("wan2.1"), tmp_path / "models"
    offline = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    offline.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="1",
                   PIP_TIMEOUT="2")
    with pytest.raises(WanError) as found:
        setup(code, models, python=sys.executable, env=offline)
    said = str(found.value)
    assert said.startswith("no network: resolving Wan-Video/Wan2.1's requirements could not reach the package index"
                           " (Failed to establish a new connection: [Errno 111] Connection refused); try again online")
    assert "\n" not in said
    assert not (home(code, models) / "setup.json").exists()  # unfinished: Set up again finishes it
    assert status(code, models, python=sys.executable, env=env) == \
        "wan2.1: not set up (an unfinished setup: Set up again finishes it)"


def test_the_command_line(tmp_path, pinned, remote, capsys, monkeypatch):
    from deforum_wan.cli.main import main

    commit, _ = pinned
    for key, value in offline_pip(remote[2]).items():
        monkeypatch.setenv(key, value)
    assert main(["official", "setup", "wan2.1", "--models-dir", str(tmp_path)]) == 0
    assert main(["official", "status", "wan2.1", "--models-dir", str(tmp_path)]) == 0
    assert main(["official", "remove", "wan2.1", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"set up Wan-Video/Wan2.1 at {commit[:12]}")
    repo = repo_dir(code_for("wan2.1"), tmp_path)
    assert out[1] == f"wan2.1: Wan-Video/Wan2.1 at {commit[:12]} (the pinned commit) in {repo}; the wan package imports"
    assert out[2].startswith("removed Wan-Video/Wan2.1")


# Wan-Video/Wan2.1's requirements.txt at 9737cba9c1c3 (git show HEAD:requirements.txt), as shipped.
WAN21_REQUIREMENTS = """torch>=2.4.0
torchvision>=0.19.0
opencv-python>=4.9.0.80
diffusers>=0.31.0
transformers>=4.49.0
tokenizers>=0.20.3
accelerate>=1.1.1
tqdm
imageio
easydict
ftfy
dashscope
imageio-ffmpeg
flash_attn
gradio>=5.0.0
numpy>=1.23.5,<2
"""


def test_what_of_wan21s_requirements_is_installed(tmp_path):
    (tmp_path / "requirements.txt").write_text(WAN21_REQUIREMENTS)
    lines, names, skipped = read_requirements(tmp_path, code_for("wan2.1"))
    # the worker's torch, torchvision and numpy stay; its headless OpenCV is the same cv2
    assert lines == ["opencv-python-headless>=4.9.0.80", "diffusers>=0.31.0", "transformers>=4.49.0",
                     "tokenizers>=0.20.3", "accelerate>=1.1.1", "tqdm", "imageio", "easydict", "ftfy", "dashscope",
                     "imageio-ffmpeg"]
    assert names[0] == "opencv-python-headless" and len(names) == len(lines)
    assert skipped == ["flash-attn (needs a CUDA build; PyTorch SDPA replaces it)",
                       "gradio (Wan's own demo page; the wan package does not import it)"]
