"""The Wan tab inside a real AUTOMATIC1111 or Forge (skipped unless one is given).

    WAN_TEST_WEBUI_DIR=/path/to/webui      the WebUI folder (venv/ inside, this extension in extensions/)
    WAN_TEST_WEBUI_URL=http://127.0.0.1:7860/   use a running one instead of starting it
    WAN_TEST_WEBUI_ARGS="..."              launch.py flags (default: CPU flags for A1111 or Forge)
    WAN_TAB_CHECK=/path/webui-tab-check.py  (default: ../shared/tools/webui-tab-check.py)

Checks the tab with the shared tab checker (click the tab, type a prompt schedule, press Plan,
see the table), then renders on tiny-random through /wan_api (when the WebUI's models/wan holds
it) and checks the WebUI's own progress state saw the job.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT

pytestmark = pytest.mark.slow
WEBUI = os.environ.get("WAN_TEST_WEBUI_DIR")
TAB_CHECK = Path(os.environ.get("WAN_TAB_CHECK") or ROOT.parent / "shared" / "tools" / "webui-tab-check.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _post(url: str, body: dict):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def webui(tmp_path_factory):
    if not WEBUI:
        pytest.skip("set WAN_TEST_WEBUI_DIR to a WebUI folder with this extension installed")
    root = Path(WEBUI)
    if os.environ.get("WAN_TEST_WEBUI_URL"):
        yield os.environ["WAN_TEST_WEBUI_URL"].rstrip("/") + "/", root
        return
    forge = (root / "modules_forge").is_dir()
    default = ("--always-cpu" if forge else "--use-cpu all --no-half --precision full")
    args = shlex.split(os.environ.get("WAN_TEST_WEBUI_ARGS", default))
    port = _free_port()
    log_path = tmp_path_factory.mktemp("webui") / "webui.log"
    log = open(log_path, "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([str(root / "venv" / "bin" / "python"), "launch.py", "--skip-torch-cuda-test",
                             "--skip-python-version-check", "--skip-version-check", "--no-download-sd-model",
                             "--api", "--port", str(port), *args],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 400
    while time.time() < deadline and "Startup time:" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None:
            pytest.fail(f"the WebUI exited: {log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(1)
    yield url, root
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_tab_check(webui, tmp_path):
    url, _ = webui
    if not TAB_CHECK.is_file():
        pytest.skip(f"{TAB_CHECK} not found (set WAN_TAB_CHECK)")
    pytest.importorskip("playwright")
    proc = subprocess.run([sys.executable, str(TAB_CHECK), url, "Wan", "--echo", '{"0": "a red fox in the snow"}',
                           "--button", "Plan", "--expect", "win seg mode", "--timeout", "120",
                           "--screenshot", str(tmp_path / "wan.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "PASS" in proc.stdout


def test_render_through_the_webui(webui):
    url, root = webui
    if not (root / "models" / "wan" / "tiny-random").is_dir():
        pytest.skip("no tiny-random in the WebUI's models/wan (python -m deforum_wan tiny-models DIR)")
    settings = json.loads(EXAMPLE.read_text())
    job = _post(url + "wan_api/jobs", {"settings": settings, "name": "host-test"})["jobs"][0]
    seen = set()
    deadline = time.time() + 300
    while time.time() < deadline:
        state = _get(url + "sdapi/v1/progress?skip_current_image=true")["state"]
        seen.add(state["job"])
        info = _get(url + f"wan_api/jobs/{job}")
        if info["status"] not in ("queued", "running"):
            break
        time.sleep(0.3)
    assert info["status"] == "done", info
    assert Path(info["video"]).is_file() and info["progress"]["frames_written"] == 48
    assert "wan" in seen  # the WebUI's progress state showed the Wan job


def test_use_deforum_prompts_reads_the_deforum_tab(webui):
    """With the Deforum extension installed next to this one: prompts typed in Deforum's tab
    reach the Wan tab through "Use Deforum's prompts"."""
    url, root = webui
    extensions = root / "extensions"
    if not any("deforum" in p.name.lower() and (p / "scripts" / "deforum.py").is_file()
               for p in extensions.iterdir()):
        pytest.skip("the Deforum extension is not installed in this WebUI")
    playwright = pytest.importorskip("playwright.sync_api")
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

    prompts = {"0": "a lighthouse at dawn", "30": "a lighthouse in a storm --neg blurry"}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url, timeout=120_000)
        nav = page.locator("#tabs > .tab-nav > button")
        nav.filter(has_text="Deforum").first.click(timeout=120_000)
        deforum = page.locator("#tab_deforum_interface")
        deforum.locator("button", has_text="Prompts").first.click()  # Deforum's own Prompts sub-tab
        for label, value in (("Prompts", json.dumps(prompts)), ("Prompts positive", "cinematic, ")):
            area = deforum.locator(f"label:has(span:text-is('{label}')) textarea").first
            area.fill(value)
            area.dispatch_event("input")
        nav.filter(has_text="Wan").first.click()
        page.locator("#wan_use_deforum").click()
        wan = page.locator("#tab_wan")
        page.wait_for_function("""() => [...document.querySelectorAll('#tab_wan textarea, #tab_wan input')]
            .some(e => e.value.includes("loaded Deforum's prompts"))""", timeout=30_000)
        values = [a.input_value() for a in wan.locator("textarea").all()]
        browser.close()
    assert any(v and json.loads(v) == prompts for v in values if v.startswith("{")), values
    assert "cinematic, " in values
