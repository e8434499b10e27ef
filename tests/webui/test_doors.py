"""Every door of the tab that takes a file, tried as a hostile client would: the standalone UI on
a real uvicorn, its gradio queue called with httpx, each file entry naming a server path
instead of an upload. Nothing outside may come back, be copied where it can be downloaded, or
be read; a real upload through gradio's /upload route still works."""
from __future__ import annotations

import json
import os
import uuid
import wave

import pytest

httpx = pytest.importorskip("httpx")
gr = pytest.importorskip("gradio")
if int(gr.__version__.split(".")[0]) < 4:
    pytest.skip("the queue calls below are gradio 4+'s (gradio 3 is checked in its own venv)",
                allow_module_level=True)

from counter_video import write_counter_video  # noqa: E402
from helpers import Served  # noqa: E402
from PIL import Image  # noqa: E402

from deforum_wan.cli.ui import build_app  # noqa: E402
from deforum_wan.service.jobs import JobManager  # noqa: E402
from deforum_wan.webui.gradio_compat import GRADIO_MAJOR, received_upload, upload_folder  # noqa: E402
from deforum_wan.webui.tab_handlers import WanTab  # noqa: E402

API = "/gradio_api" if GRADIO_MAJOR >= 5 else ""
# Unique per run: a copy an earlier run leaked into the shared upload folder never matches.
SECRET = f"the-servers-own-words-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("doors")
    manager = JobManager(root / "jobs.db", root / "out", python="false")  # nothing renders
    with Served(build_app(manager, outdir=root / "out")) as server, \
            httpx.Client(base_url=server.url, timeout=60) as http:
        yield http, manager
    manager.shutdown()


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """Files outside every folder the server may read: settings, a picture, a sound, a video."""
    root = tmp_path_factory.mktemp("outside")
    (root / "secret.json").write_text(json.dumps({"prompts": {"0": SECRET}, "max_frames": 5}))
    Image.frombytes("RGB", (8, 8), os.urandom(8 * 8 * 3)).save(root / "secret.png")
    with wave.open(str(root / "secret.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000), w.writeframes(os.urandom(1600))
    write_counter_video(root / "secret.mp4", 3)
    return root


def call(http, api_name: str, data: list) -> str:
    """One event through gradio's queue; the whole event stream it answers with."""
    deps = http.get("/config").json()["dependencies"]
    fn_index = next(i for i, d in enumerate(deps) if d.get("api_name") == api_name)
    session = uuid.uuid4().hex
    r = http.post(f"{API}/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                             "event_data": None, "trigger_id": None})
    assert r.status_code == 200, r.text
    with http.stream("GET", f"{API}/queue/data", params={"session_hash": session}) as stream:
        text = ""
        for line in stream.iter_lines():
            text += line + "\n"
            if "process_completed" in line:
                return text
    raise AssertionError(f"no answer: {text}")


def file_entry(path) -> dict:
    return {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def uploads_of(manager) -> list:
    folder = manager.outdir / "wan-uploads"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_no_event_reads_a_server_file_a_request_names(served, outside):
    http, manager = served
    before = uploads_of(manager)
    answer = call(http, "import_files", [[file_entry(outside / "secret.json")]])
    assert SECRET not in answer and "process_completed" in answer
    for api_name, name in (("uploaded_image", "secret.png"), ("uploaded_soundtrack", "secret.wav"),
                           ("uploaded_video", "secret.mp4")):
        answer = call(http, api_name, [file_entry(outside / name)])
        assert "process_completed" in answer and "wan-uploads/" not in answer, answer
    answer = call(http, "uploaded_keyframe", [file_entry(outside / "secret.png"), 0, ""])
    assert "process_completed" in answer and "wan-uploads/" not in answer, answer
    assert uploads_of(manager) == before  # nothing copied where it could be downloaded
    # gradio did not copy them into its upload folder either, where the tab would trust them
    copied = [p for p in upload_folder().rglob("secret.*") if p.read_bytes() in
              {(outside / n).read_bytes() for n in ("secret.json", "secret.png", "secret.wav", "secret.mp4")}]
    assert copied == []


def test_a_real_upload_goes_through(served, outside, tmp_path):
    http, manager = served
    picture = tmp_path / "mine.png"
    Image.new("RGB", (8, 8), (10, 250, 10)).save(picture)
    with picture.open("rb") as f:
        r = http.post(f"{API}/upload", files={"files": ("mine.png", f, "image/png")})
    assert r.status_code == 200, r.text
    [uploaded] = r.json()
    answer = call(http, "uploaded_image", [file_entry(type(picture)(uploaded))])
    assert "uploaded as wan-uploads/" in answer, answer
    kept = uploads_of(manager)[-1]
    assert kept.suffix == ".png" and kept.read_bytes() == picture.read_bytes()


def test_the_upload_check_refuses_links_and_names_outside(outside, tmp_path):
    folder = upload_folder() / f"test-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    link = folder / "link.json"
    link.symlink_to(outside / "secret.json")
    fifo = folder / "fifo.json"
    __import__("os").mkfifo(fifo)
    real = folder / "real.json"
    real.write_text("{}")
    assert received_upload(real) == real.resolve()
    for hostile in (link, fifo, folder, outside / "secret.json", f"{folder}/../../{outside}/secret.json",
                    "secret.json", "", None):
        assert received_upload(hostile) is None, hostile
    tab = WanTab(JobManager(tmp_path / "jobs.db", tmp_path / "out", python="false"))
    try:
        assert tab.import_files([str(link)])[-1].startswith("error: link.json: only uploaded")
        assert tab.uploaded_image(str(outside / "secret.png"))[1].startswith("error: secret.png: only uploaded")
        assert tab.uploaded_video(str(outside / "secret.mp4"))[1].startswith("error: secret.mp4: only uploaded")
    finally:
        tab.manager.shutdown()
