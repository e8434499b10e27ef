"""What the server serves from the output folder is never an active type: an SVG or HTML file
placed there comes back as a download of bytes, through the API's video and preview routes
and through gradio's file route (the standalone UI's, and a WebUI's for the output folder
only); every guarded response says nosniff. On a real uvicorn with httpx."""
from __future__ import annotations

import pytest

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
gr = pytest.importorskip("gradio")

from helpers import Served, wait_for  # noqa: E402
from PIL import Image  # noqa: E402

from deforum_wan.cli.ui import build_app  # noqa: E402
from deforum_wan.service.api import mount_api  # noqa: E402
from deforum_wan.service.jobs import FINISHED, JobManager  # noqa: E402
from deforum_wan.webui.gradio_compat import GRADIO_MAJOR  # noqa: E402

FILE_ROUTE = "/gradio_api/file=" if GRADIO_MAJOR >= 5 else "/file="
SVG = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
HTML = "<html><body><script>alert(document.cookie)</script></body></html>"
ACTIVE = ("image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", "application/xml")


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe-types")
    jobs = JobManager(root / "jobs.db", root / "out", python="false")  # nothing renders
    out = jobs.outdir
    (out / "wan-uploads").mkdir(parents=True)
    for name, text in (("evil.svg", SVG), ("evil.html", HTML), ("wan-uploads/evil.svg", SVG)):
        (out / name).write_text(text, encoding="utf-8")
    Image.new("RGB", (8, 8), (10, 200, 10)).save(out / "frame.png")
    yield jobs
    jobs.shutdown()


def passive(response) -> bool:
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    inline = not response.headers.get("content-disposition", "").lower().startswith("attachment")
    return kind not in ACTIVE and not (inline and SVG.encode() in response.content) \
        and not (inline and HTML.encode() in response.content)


def test_the_api_serves_no_active_type_from_the_output_folder(manager):
    app = fastapi.FastAPI()
    mount_api(app, manager)
    job = manager.submit({"max_frames": 12, "prompts": {"0": "a"}, "wan_model": "tiny-random"})
    wait_for(lambda: manager.get(job)["status"] in FINISHED, 60, "the job to fail (no worker)")
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        for video, preview in ((manager.outdir / "evil.html", manager.outdir / "evil.svg"),
                               (manager.outdir / "wan-uploads/evil.svg", manager.outdir / "evil.html")):
            manager.store.update(job, video=str(video), preview=str(preview))
            for route in ("video", "preview"):
                r = http.get(f"/wan_api/jobs/{job}/{route}")
                assert r.status_code == 404 and passive(r), (route, r.headers)
                assert r.headers["x-content-type-options"] == "nosniff"
        manager.store.update(job, preview=str(manager.outdir / "frame.png"))
        r = http.get(f"/wan_api/jobs/{job}/preview")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert http.get("/wan_api/jobs").headers["x-content-type-options"] == "nosniff"


@pytest.mark.skipif(GRADIO_MAJOR < 5, reason="the standalone UI runs on gradio 5+")
def test_the_standalone_ui_serves_files_of_the_output_folder_passively(manager):
    out = manager.outdir
    with Served(build_app(manager, outdir=out)) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        for name in ("evil.svg", "evil.html", "wan-uploads/evil.svg"):
            r = http.get(f"{FILE_ROUTE}{out / name}")
            assert r.status_code in (200, 403, 404), r.status_code
            assert passive(r), (name, r.headers)
            assert r.headers["x-content-type-options"] == "nosniff"
        r = http.get(f"{FILE_ROUTE}{out / 'frame.png'}")  # a picture is still shown as one
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert not r.headers.get("content-disposition", "").startswith("attachment")
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")  # the UI itself


@pytest.mark.skipif(GRADIO_MAJOR < 5, reason="gradio 5+'s file route")
def test_a_webui_serves_the_output_folder_passively_and_its_other_files_as_before(manager, tmp_path):
    """As in a WebUI: its own gradio app serves files from several folders; /wan_api/ mounted on
    it keeps the output folder's files passive and leaves the rest (an extension's script) be."""
    extension = tmp_path / "extension"
    extension.mkdir()
    (extension / "script.js").write_text("console.log(1)", encoding="utf-8")
    (extension / "page.html").write_text(HTML, encoding="utf-8")
    app = gr.mount_gradio_app(fastapi.FastAPI(), gr.Blocks(), path="/",
                              allowed_paths=[str(manager.outdir), str(extension)])
    mount_api(app, manager)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=60) as http:
        r = http.get(f"{FILE_ROUTE}{manager.outdir / 'evil.svg'}")
        assert r.status_code == 200 and passive(r), r.headers
        r = http.get(f"{FILE_ROUTE}{extension / 'script.js'}")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]
        r = http.get(f"{FILE_ROUTE}{extension / 'page.html'}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")  # not ours to change
