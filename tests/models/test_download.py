"""Downloads with progress, sizes, stop and resume: the real huggingface_hub client talking HTTP to a
local hub-shaped server (tests/hub_server.py) that serves a tiny Wan model."""
import argparse
import dataclasses
import filecmp
import shutil
import time

import pytest
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
    said = tab.download(f"{spec.id} [not downloaded]")
    assert said == f"downloading {spec.id}: {total / 1e6:.1f} MB ({total / 1e6:.1f} MB to fetch) into {models}"
    assert tab.download(spec.id).startswith("a download is running")
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
    assert tab.download(spec.id) == f"{spec.id} and its continuation model are already in {models}"
