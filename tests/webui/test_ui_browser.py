"""The standalone Wan tab in a real browser: `python -m deforum_wan ui` in a subprocess,
driven by Playwright in Debian's Chromium, rendering on the tiny random Wan models."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT
from official_repo import make_remote, offline_pip

from deforum_wan.models.official_code import COMMITS_ENV, MIRROR_ENV

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The UI on this venv's gradio, and on the WebUIs' gradio (venvs from .ci/gradio-envs.sh)
# with the render worker on this venv's Python, as in a WebUI (host gradio, worker torch).
GRADIO_VENVS = {"current": None, "gradio-3.41.2": ROOT / ".venv-gradio3", "gradio-4.40.0": ROOT / ".venv-gradio4"}


def _ui_command(venv: Path | None) -> list[str]:
    if venv is not None:
        return [str(venv / "bin" / "python"), "-m", "deforum_wan.cli.ui", "--worker-python", sys.executable]
    from deforum_wan.cli.main import build_parser

    try:  # `ui` is registered in cli.py; the module entry point serves the same command
        build_parser().parse_args(["ui", "--port", "1"])
        return [sys.executable, "-m", "deforum_wan", "ui"]
    except SystemExit:
        return [sys.executable, "-m", "deforum_wan.cli.ui"]


@pytest.fixture(scope="session")
def ui_models(tmp_path_factory) -> Path:
    from deforum_wan.models.tiny import ensure_tiny_model

    models = tmp_path_factory.mktemp("ui-models")
    for model in ("tiny-random", "tiny-random-i2v"):
        ensure_tiny_model(model, models)
    return models


@pytest.fixture(scope="session")
def official_remote(tmp_path_factory):
    """A local stand-in for github.com/Wan-Video and a package index (official_repo.py)."""
    return make_remote(tmp_path_factory.mktemp("official-remote"))


@pytest.fixture(scope="module", params=list(GRADIO_VENVS))
def server(request, tmp_path_factory, ui_models, official_remote):
    if not os.path.isfile(CHROMIUM):
        pytest.skip("Chromium not installed (Debian: apt-get install chromium)")
    pytest.importorskip("playwright")
    pytest.importorskip("gradio")
    venv = GRADIO_VENVS[request.param]
    if venv is not None and not (venv / "bin" / "python").exists():
        pytest.skip(f"{venv.name} is missing; create it with .ci/gradio-envs.sh")
    root = tmp_path_factory.mktemp("ui")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": str(ROOT / "scripts"), MIRROR_ENV: str(official_remote[0]),
           COMMITS_ENV: f"wan2.1={official_remote[1]}", **offline_pip(official_remote[2])}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(_ui_command(venv) + ["--port", str(port), "--outdir", str(root / "out"),
                                                 "--models-dir", str(ui_models)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the ui server exited: {(root / 'server.log').read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.3)
    yield url, root / "out", ui_models
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    url, *_ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#wan_generate")
        # The first poll answered: the page's events are wired and the queue is connected.
        wait_text(page, "wan_progress", lambda t: t.startswith("idle:"), timeout=60)
        yield page
        browser.close()


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def wait_text(page, elem_id: str, predicate, timeout: float = 120) -> list[str]:
    """Wait until ``predicate(text)``; return every distinct text seen on the way."""
    seen: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = text_of(page, elem_id)
        if not seen or seen[-1] != text:
            seen.append(text)
        if predicate(text):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"#{elem_id} never matched; saw {seen}")


def job_in(text) -> str | None:
    """The job id the Status box names ("queued job ID", "job ID is rendering", ...)."""
    if isinstance(text, list):
        text = text[-1]
    found = re.search(r"\bjob ([0-9a-f]{12})\b", text)
    return found.group(1) if found else None


def test_import_plan_render_interrupt(page, server):
    url, outdir, _ = server
    # Import a Deforum settings file: the fields fill from it.
    page.set_input_files("#wan_import input[type=file]", str(EXAMPLE))
    wait_text(page, "wan_status", lambda t: t.startswith(f"imported {EXAMPLE.name}; renders "), timeout=20)
    assert text_of(page, "wan_frames") == "48" and text_of(page, "wan_width") == "64"

    # Plan before rendering.
    page.click("#wan_plan")
    page.wait_for_selector("#wan_plan_view table")
    assert page.locator("#wan_plan_view .wan-plan-summary tbody tr").count() == 6
    assert page.locator("#wan_plan_view svg rect").count() > 6

    # The settings line (import, then Plan) is its own: the 1 s poll leaves it while jobs run and end.
    settings_line = text_of(page, "wan_status")
    assert settings_line.startswith("plan: 6 windows")
    # Render on the tiny model; the progress text moves, then the video plays from the server.
    page.click("#wan_generate")
    job = job_in(wait_text(page, "wan_job_status", lambda t: job_in(t) is not None))
    # standalone has no WebUI progress bar: the Generate JS (TASK_JS) left the page alone
    assert page.locator(".progressDiv").count() == 0
    seen = wait_text(page, "wan_progress", lambda t: f"[{job[:8]}]: done - 48 frames" in t, timeout=180)
    assert any("window" in t and "step" in t for t in seen), seen
    assert Path(text_of(page, "wan_folder")).parent == outdir.resolve()
    video = page.locator("#wan_video video")
    video.wait_for()
    src = video.get_attribute("src")
    response = page.request.get(src if "://" in src else url + src.lstrip("/"))
    assert response.status == 200 and len(response.body()) > 0
    assert page.locator("#wan_preview img").count() == 1

    # A second, longer render, interrupted while it runs.
    page.fill("#wan_frames input", "400")
    page.click("#wan_generate")
    job = job_in(wait_text(page, "wan_job_status", lambda t: job_in(t) not in (None, job)))
    wait_text(page, "wan_progress", lambda t: f"[{job[:8]}]: rendering - window" in t and "step" in t)
    page.click("#wan_interrupt")
    # the button's answer, or already the job's end (the Status box follows the job)
    wait_text(page, "wan_job_status", lambda t: t.startswith("interrupting") or f"job {job} interrupted" in t)
    wait_text(page, "wan_progress", lambda t: f"[{job[:8]}]: interrupted after" in t)
    assert text_of(page, "wan_status") == settings_line
    jobs = page.request.get(url + "wan_api/jobs").json()["jobs"]
    assert sorted(j["status"] for j in jobs) == ["done", "interrupted"]


def test_a_long_plan_fits_the_column(page):
    """A 12-window plan in the right column: the page stays short and no cell wraps onto more
    than three lines (the full table is one click away and scrolls sideways)."""
    # the example, imported by the test above (gradio 3.41's box takes no second file) or now
    if text_of(page, "wan_width") != "64":
        page.set_input_files("#wan_import input[type=file]", str(EXAMPLE))
        wait_text(page, "wan_status", lambda t: t.startswith(f"imported {EXAMPLE.name}"), timeout=30)
    page.fill("#wan_frames input", "108")
    page.click("#wan_plan")
    wait_text(page, "wan_status", lambda t: t.startswith("plan: 12 windows"), timeout=60)
    rows = page.locator("#wan_plan_view .wan-plan-summary tbody tr")
    assert rows.count() == 12
    assert page.locator("#wan_plan_view").first.bounding_box()["height"] < 900  # 3.41: a block and its prose
    page.locator("#wan_plan_view details summary").first.click()  # the full table, opened
    line = 3 * 12 * 1.6  # three lines of the 12 px table text
    tall = [c.inner_text() for c in page.locator("#wan_plan_view td").all() if c.bounding_box()["height"] > line]
    assert not tall, tall[:3]


def test_an_uploaded_video_previews_each_windows_source_segment(page, server, tmp_path):
    """A Video Input file imported, its video uploaded through the tab's video field: Plan shows
    per window a strip of its source frames next to the plan (its own page: a fresh import box).
    The gradio venvs have no imageio-ffmpeg, as the WebUIs' Pythons: the tab there probes and
    decodes with the worker's ffmpeg."""
    import json

    from counter_video import write_counter_video

    url, outdir, _ = server
    settings = tmp_path / "video_input.txt"
    settings.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), "animation_mode": "Video Input",
                                    "video_init_path": "", "fps": 16, "wan_clip_duration": 1, "W": 160, "H": 32}))
    video = tmp_path / "counter.mp4"
    write_counter_video(video, 40, fps=30)
    # a page of its own in the module's browser (one Playwright per module)
    page = page.context.browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#wan_generate")
        # the first poll answered (the events are wired): an earlier test's job may be shown
        wait_text(page, "wan_progress", lambda t: t != "idle", timeout=60)
        page.set_input_files("#wan_import input[type=file]", str(settings))
        wait_text(page, "wan_status", lambda t: t.startswith("imported video_input.txt"), timeout=30)
        page.get_by_text("Video (Video Input, control video)").first.click()  # its accordion, opened
        page.locator("#wan_video_upload input[type=file]").set_input_files(str(video))
        wait_text(page, "wan_status", lambda t: t.startswith("uploaded as wan-uploads/"), timeout=30)
        name = text_of(page, "wan_video_path")
        assert name.startswith("wan-uploads/") and (outdir / name).read_bytes() == video.read_bytes()
        page.click("#wan_plan")
        wait_text(page, "wan_status", lambda t: t.startswith("plan: "), timeout=60)
        windows = page.locator("#wan_plan_view .wan-plan-summary tbody tr").count()
        strips = page.locator("#wan_plan_view .wan-source-window")
        assert windows >= 2 and strips.count() == windows
        for i in range(windows):
            images = strips.nth(i).locator("img")
            assert 1 <= images.count() <= 4 and images.first.evaluate("img => img.naturalWidth") == 96
    finally:
        page.close()


# Every text the download bar shows (the poll replaces its HTML), kept in the page.
WATCH_BAR_JS = """() => {
  const bar = document.querySelector('#wan_download_bar');
  window.wanBarSeen = [];
  new MutationObserver(() => window.wanBarSeen.push(bar.innerHTML)).observe(
    bar, {childList: true, subtree: true, characterData: true});
}"""


def test_set_up_the_official_code(page, server, official_remote):
    _, _, models = server
    commit = official_remote[1]
    page.get_by_text("Official Wan code (the official backend)").click()
    page.evaluate(WATCH_BAR_JS)
    page.click("#wan_official_setup")
    wait_text(page, "wan_official_line", lambda t: t == f"setting up Wan-Video/Wan2.1 at {commit[:12]} into"
              f" {models} (progress below)", timeout=20)
    bar = page.locator("#wan_download_bar").last  # gradio 3 gives the block and its HTML this id
    done = f"set up Wan-Video/Wan2.1 at {commit[:12]} in {models / 'official' / 'wan2.1' / 'repo'}: 3 packages"
    bar.get_by_text(done).wait_for(timeout=60_000)
    assert bar.inner_text().strip().endswith("the wan package imports in the worker")
    seen = page.evaluate("window.wanBarSeen")
    assert any("<progress" in html and "setting up Wan-Video/Wan2.1: " in html for html in seen), seen
    page.click("#wan_official_status")
    wait_text(page, "wan_official_line", lambda t: t.startswith(f"wan2.1: Wan-Video/Wan2.1 at {commit[:12]} (the pinned"
              " commit) in ") and t.endswith("; the wan package imports"), timeout=30)
    page.click("#wan_official_remove")
    wait_text(page, "wan_official_line", lambda t: t.startswith("removed Wan-Video/Wan2.1"), timeout=20)
    assert not (models / "official").exists()
