"""Downloads with progress, sizes, stop and resume: the real huggingface_hub client talking HTTP to a
local hub-shaped server (tests/hub_server.py) that serves a tiny Wan model."""
import argparse
import dataclasses
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from helpers import ROOT
from hub_server import HubServer

from deforum_wan.cli.models import _size, add_model_commands
from deforum_wan.errors import DownloadCancelled, WanError
from deforum_wan.models.registry import MODELS, get_model
from deforum_wan.models.weights import _is_complete, download, download_size, locate_weights

REPO = "org/tiny-served"
SPEC = dataclasses.replace(get_model("wan2.1-t2v-1.3b"), id="served-t2v", diffusers_repo=REPO)
COMMAND = "python -m deforum_wan download served-t2v"


@pytest.fixture
def served(tiny_models_dir, tmp_path, isolated_hf_cache, monkeypatch):
    """A copy of the tiny T2V model as the hub repo REPO; the client is pointed at it and reads
    4 KB a chunk (it reads 10 MB by default: a tiny file would be one chunk)."""
    from huggingface_hub import constants

    source = tmp_path / "served"
    shutil.copytree(tiny_models_dir / "tiny-random", source)
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    with HubServer(source, REPO) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def _same_files(a, b) -> bool:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    return not mismatch and not errors and len(match) == len(names)


def test_size_then_download_with_progress_then_size(served, tmp_path):
    models = tmp_path / "models"
    total = sum(f["size"] for f in served.files.values())
    assert total > 100_000
    assert download_size(SPEC, models) == (total, total)
    assert served.bytes_sent == 0  # sizes come from HEAD calls, no file body

    calls = []
    path = download(SPEC, models, progress=lambda done, whole: calls.append((done, whole)))
    assert path == models / "tiny-served"
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert len(calls) > 30  # one a 4 KB chunk, not one at the end
    assert all(whole == total for _, whole in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert served.bytes_sent == total
    assert _is_complete(path, "diffusers") and locate_weights(SPEC, models) == path
    assert _same_files(served.folder, path)

    assert download_size(SPEC, models) == (total, 0)
    calls.clear()
    assert download(SPEC, models, progress=lambda done, whole: calls.append((done, whole))) == path
    assert calls == [(total, total)] and served.bytes_sent == total  # nothing fetched again


def test_stop_midway_then_download_again_resumes(served, tmp_path):
    models = tmp_path / "models"
    served.delay = 0.01  # 10 ms a 4 KB chunk
    total = sum(f["size"] for f in served.files.values())
    stopped_at = []

    def should_stop() -> bool:
        if calls and calls[-1][0] >= total // 2:
            stopped_at.append(time.monotonic())
            return True
        return False

    calls = []
    with pytest.raises(DownloadCancelled) as stop:
        download(SPEC, models, progress=lambda done, whole: calls.append((done, whole)), should_stop=should_stop)
    ended = time.monotonic()
    message = str(stop.value)
    assert "\n" not in message and REPO in message and "Download again resumes it" in message
    assert ended - stopped_at[0] < 1.0  # the other download threads stop at their next chunk
    assert served.wait_idle()
    first = served.bytes_sent
    assert total // 2 <= calls[-1][0] < total and first < total
    assert locate_weights(SPEC, models) is None

    whole, missing = download_size(SPEC, models)
    assert whole == total and 0 < missing < total  # the finished files stay
    # huggingface_hub 1.x keeps a cut file's bytes (.incomplete) and resumes it with a Range request;
    # 2.x drops them and fetches that file again.
    kept = list(models.rglob("*.incomplete"))

    calls.clear()
    served.delay = 0.0
    path = download(SPEC, models, progress=lambda done, whole: calls.append((done, whole)))
    assert calls[0] == (total - missing, total) and calls[-1] == (total, total)
    fetched = served.bytes_sent - first
    assert fetched < missing if kept else fetched == missing  # only what was missing is fetched again
    assert locate_weights(SPEC, models) == path and _same_files(served.folder, path)


def test_a_stop_asked_before_the_start_fetches_nothing(served, tmp_path):
    with pytest.raises(DownloadCancelled):
        download(SPEC, tmp_path / "models", should_stop=lambda: True)
    assert served.requests == []


@pytest.mark.parametrize("status, says", [
    (401, "was not found on the Hugging Face hub"),  # the hub's answer to a missing or private repo
    (404, "was not found on the Hugging Face hub"),
    (403, "is gated"),
    (500, "unreachable"),
])
def test_hub_errors_are_one_line_naming_the_repo(served, tmp_path, status, says):
    served.status = status
    models = tmp_path / "models"
    for attempt in (lambda: download_size(SPEC, models), lambda: download(SPEC, models),
                    lambda: download(SPEC, models, progress=lambda *_: None)):
        with pytest.raises(WanError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and REPO in message and says in message, message
        assert not isinstance(error.value, DownloadCancelled)
    assert served.requests and served.bytes_sent == 0
    assert not any(models.rglob("*.safetensors"))


def test_an_unreachable_hub_is_one_line(served, tmp_path, monkeypatch):
    served.__exit__()  # nothing listens on the port any more
    models = tmp_path / "models"
    for attempt in (lambda: download_size(SPEC, models), lambda: download(SPEC, models)):
        with pytest.raises(WanError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and REPO in message, message
        assert "unreachable" in message or "ConnectError" in message, message


def test_offline_refuses_before_any_request(served, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for attempt in (lambda: download_size(SPEC, tmp_path), lambda: download(SPEC, tmp_path)):
        with pytest.raises(WanError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message and REPO in message and COMMAND in message and "HF_HUB_OFFLINE" in message
    assert served.requests == []


def test_tiny_models_are_built_not_downloaded(tmp_path):
    assert download_size(get_model("tiny-random"), tmp_path) == (0, 0)


def test_download_command_shows_the_size_first(served, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(MODELS, SPEC.id, SPEC)
    parser = argparse.ArgumentParser()
    add_model_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["download", SPEC.id, "--models-dir", str(tmp_path)])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    size = _size(sum(f["size"] for f in served.files.values()))
    assert size.endswith(" KB") and lines[0] == f"downloading served-t2v: {size} ({size} to fetch)"
    assert lines[-1] == f"served-t2v: {tmp_path / 'tiny-served'}"
    assert "100%" in err  # the bar, on stderr
    assert locate_weights(SPEC, tmp_path) == tmp_path / "tiny-served"


def test_server_serves_ranges(served):
    """The server's resume support (206 from an offset), which the client uses after a dropped connection."""
    import httpx

    name = "vae/diffusion_pytorch_model.safetensors"
    data = (served.folder / name).read_bytes()
    url = f"{served.url}/{REPO}/resolve/main/{name}"
    whole = httpx.get(url)
    part = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert whole.status_code == 200 and whole.content == data
    assert part.status_code == 206 and part.content == data[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    assert whole.headers["X-Repo-Commit"] == served.commit
    assert whole.headers["ETag"] == f'"{served.files[name]["sha256"]}"'


def test_the_tabs_download_button_shows_size_progress_and_stop(served, tmp_path, monkeypatch):
    """The tab's Download and Stop download on the served model: the size first, a moving
    <progress> bar, stop keeps what is finished, Download again completes it."""
    import types

    from deforum_wan.webui.tab_handlers import WanTab

    spec = dataclasses.replace(SPEC, continue_with=None, continue_with_480p=None)
    monkeypatch.setitem(MODELS, spec.id, spec)
    models = tmp_path / "models"
    tab = WanTab(types.SimpleNamespace(outdir=tmp_path / "out", models_dir=str(models)))
    total = sum(f["size"] for f in served.files.values())
    served.delay = 0.01
    said, stop = tab.download(f"{spec.id} [not downloaded]")
    assert stop["visible"] is True  # Stop download shows while it runs
    assert said == f"downloading {spec.id}: {total / 1e6:.1f} MB ({total / 1e6:.1f} MB to fetch) into {models}"
    assert tab.download(spec.id)[0].startswith("a download is running")
    bars = []
    deadline = time.monotonic() + 30
    while tab.downloads.running and time.monotonic() < deadline:
        bars.append(tab.downloads.html())
        if len(bars) == 5:
            assert tab.stop_download().startswith("stopping the download")
        time.sleep(0.05)
    assert any("<progress" in b and f'max="{total}"' in b and "MB/s" in b for b in bars)
    assert "stopped; Download again resumes it" in tab.downloads.html()
    assert locate_weights(spec, models) is None
    served.delay = 0.0
    tab.download(spec.id)
    tab.downloads._thread.join(30)
    assert tab.downloads.html().endswith(f"downloaded {spec.id}: press Refresh models</div>")
    assert tab.refresh_models(spec.id)["value"].startswith(f"{spec.id} [installed, ")
    assert tab.download(spec.id) == (f"{spec.id} and its continuation model are already in {models}",
                                     {"__type__": "update", "visible": False})


# The WebUIs' own huggingface_hub, which the tab's Download runs with: A1111 v1.10.1 and Forge,
# each in its venv made by .ci/gradio-envs.sh (skipped when that venv is missing).
WEBUI_HUBS = {"0.36.2": ROOT / ".venv-gradio3", "0.26.2": ROOT / ".venv-gradio4"}


def _in_webui_python(version, models, mode, **env):
    venv = WEBUI_HUBS[version]
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    if not python.exists():
        pytest.skip(f"{venv.name} is missing; create it with .ci/gradio-envs.sh")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts"), **env}
    env.pop("PYTHONHOME", None)
    proc = subprocess.run([str(python), str(ROOT / "tests" / "webui_download_check.py"), str(models), REPO, mode],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["hub"] == version and not result["running"]
    return result


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@pytest.mark.parametrize("version", list(WEBUI_HUBS))
def test_the_tabs_download_runs_with_the_webuis_own_hub(served, tmp_path, version):
    """Download, Stop download midway, Download again: in the WebUI's Python with its
    huggingface_hub, into the models folder's <repo name> folder, where the model is found."""
    models = tmp_path / "webui" / "models" / "wan"
    total = sum(f["size"] for f in served.files.values())
    served.delay = 0.05  # 50 ms a 4 KB chunk: the weights take seconds, the configs do not

    first = _in_webui_python(version, models, "stop")
    assert first["said"] == f"downloading served-t2v: {_mb(total)} ({_mb(total)} to fetch) into {models}"
    assert first["stopped"] == "stopping the download of served-t2v (finished files are kept)"
    moving = [int(m[1]) for b in first["bars"] if (m := re.search(rf'value="(\d+)" max="{total}"', b))]
    assert moving[0] == 0 and 0 < max(moving) < total and all("MB/s" in b for b in first["bars"])
    assert first["final"] == '<div class="wan-download">download of served-t2v stopped; Download again resumes it</div>'
    assert served.wait_idle()
    target = models / "tiny-served"
    kept = {name: (target / name).stat().st_mtime_ns for name in served.files if (target / name).is_file()}
    assert 0 < len(kept) < len(served.files)
    assert all(filecmp.cmp(served.folder / name, target / name, shallow=False) for name in kept)
    assert locate_weights(SPEC, models) is None
    sent = served.bytes_sent
    assert sent < total

    served.delay = 0.0
    second = _in_webui_python(version, models, "go")
    missing = total - sum(served.files[name]["size"] for name in kept)
    assert second["said"] == f"downloading served-t2v: {_mb(total)} ({_mb(missing)} to fetch) into {models}"
    assert second["final"] == '<div class="wan-download">downloaded served-t2v: press Refresh models</div>'
    assert served.bytes_sent - sent <= missing  # the kept files are not fetched again
    assert {name: (target / name).stat().st_mtime_ns for name in kept} == kept
    assert locate_weights(SPEC, models) == target and _same_files(served.folder, target)


@pytest.mark.parametrize("version", list(WEBUI_HUBS))
def test_the_tabs_download_messages_name_its_buttons(served, tmp_path, version):
    """Why Download cannot start, in the tab's words (no command to run), with the WebUI's hub."""
    models = tmp_path / "models"
    said = {}
    for case, status, env in (("offline", None, {"HF_HUB_OFFLINE": "1"}), ("gated", 403, {}),
                              ("unreachable", 500, {})):
        served.status = status
        said[case] = _in_webui_python(version, models, "say", **env)["said"]
    assert said == {
        "offline": f"cannot download {REPO} while HF_HUB_OFFLINE is set; start the WebUI without it to download",
        "gated": f"{REPO} is gated: accept its license on huggingface.co and set HF_TOKEN in the WebUI's environment",
        "unreachable": f"{REPO} is not downloaded and the hub is unreachable or offline; when online press"
                       " Download again",
    }
    assert not models.exists()


def test_a_failure_in_the_tabs_download_process_is_one_line_in_the_tabs_words(served, tmp_path):
    """The hub fails after the size was asked (the stop check between the two turns it off):
    the child process's one line comes back as the error, not a traceback or a command."""
    from deforum_wan.models.download_process import download_in_child

    def hub_fails_now() -> bool:
        served.status = 500
        return False

    with pytest.raises(WanError) as error:
        download_in_child(SPEC, tmp_path / "models", should_stop=hub_fails_now)
    assert not isinstance(error.value, DownloadCancelled)
    assert str(error.value) == (f"{REPO} is not downloaded and the hub is unreachable or offline; when online press"
                                " Download again")
    assert any(path.startswith(f"/{REPO}/resolve/") or "/revision/" in path for _, path in served.requests)


@pytest.fixture
def file_model(served, tmp_path, monkeypatch):
    """A transformer file whose components are the served repo's (wan_components names it)."""
    from deforum_wan.models.registry import FILE_MODELS

    monkeypatch.setitem(MODELS, SPEC.id, SPEC)
    weights = tmp_path / "own" / "wan_own_t2v.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"")  # never read: a download looks at where its parts come from only
    spec = dataclasses.replace(SPEC, id=weights.name, diffusers_repo=None, weights=str(weights),
                               components=SPEC.id)
    monkeypatch.setitem(FILE_MODELS, spec.id, spec)
    return spec


def test_a_files_components_are_fetched_alone(served, file_model, tmp_path, monkeypatch):
    from deforum_wan.models.file_models import components_to_fetch, locate_components

    models = tmp_path / "models"
    assert components_to_fetch(file_model, models) is SPEC
    # the parts' folders and the pipeline's index; the transformer's config, not its weights
    parts = {name: f["size"] for name, f in served.files.items() if name == "model_index.json" or
             ("/" in name and (not name.startswith("transformer/") or name == "transformer/config.json"))}
    assert len(parts) < len(served.files)  # the transformer's weights are left out
    assert download_size(SPEC, models, "components") == (sum(parts.values()),) * 2
    path = download(SPEC, models, layout="components")
    fetched = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert fetched == set(parts) and served.bytes_sent == sum(parts.values())
    assert locate_components(SPEC, models) == path and locate_weights(SPEC, models) is None
    assert components_to_fetch(file_model, models) is None  # on disk now: nothing more


def test_the_tabs_download_of_a_file_fetches_its_components(served, file_model, tmp_path):
    from deforum_wan.webui.downloads import Downloads

    models = tmp_path / "models"
    downloads = Downloads(models)
    said = downloads.start(file_model.id)
    assert said.startswith(f"downloading {SPEC.id} components:"), said
    deadline = time.monotonic() + 60
    while downloads.running and time.monotonic() < deadline:
        time.sleep(0.1)
    fetched = {p.relative_to(models / "tiny-served").as_posix() for p in (models / "tiny-served").rglob("*")
               if p.is_file() and ".cache" not in p.parts}
    assert fetched and not any(n.startswith("transformer/") and n != "transformer/config.json" for n in fetched)
    assert "nothing to fetch" in downloads.start(file_model.id)
