"""The Wan tab inside a real AUTOMATIC1111, Forge or Forge Neo (skipped unless one is given).

    WAN_TEST_WEBUI_DIR=/path/to/webui      the WebUI folder (venv/ inside, this extension in extensions/)
    WAN_TEST_WEBUI_URL=http://127.0.0.1:7860/   use a running one instead of starting it
    WAN_TEST_WEBUI_ARGS="..."              launch.py flags (default: CPU flags for A1111, Forge or Neo)
    WAN_TAB_CHECK=/path/webui-tab-check.py  (default: ../shared/tools/webui-tab-check.py)

    WAN_TEST_SCREENSHOTS=docs/screenshots    where the progress test saves its PNGs (default: none)

Checks the tab with the shared tab checker (click the tab, type a prompt schedule, press Plan,
see the table), then renders on tiny-random through /wan_api (when the WebUI's models/wan holds
it) and checks the WebUI's own progress state saw the job, and in Chromium that Generate in the
tab shows the WebUI's own progress bar (progressbar.js) with a growing value, a never-negative
ETA and the live preview, that Interrupt ends it, that the WebUI's Skip goes on to the next
job, and that the console has the job's lines.

A WebUI this module starts gets HF_ENDPOINT at a hub-shaped server (tests/hub_server.py) serving
the tiny I2V model as a real model's repo, an empty HF_HOME and no HF_HUB_OFFLINE: the tab's
Download fetches it through the WebUI's own Python and huggingface_hub into its models/wan (and
the test removes it again); a Download of a repo the server lacks says so on the Download line,
which the poll leaves alone. Thirty imports in a row, with the tab's poll running, each end
(none stays at "Uploading..."). In Forge Neo, a Wan single file in its models/Stable-diffusion
is listed by the tab (the SD checkpoint beside it is not) and renders.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT

from deforum_wan.models.registry import MODELS

pytestmark = pytest.mark.slow
WEBUI = os.environ.get("WAN_TEST_WEBUI_DIR")
TAB_CHECK = Path(os.environ.get("WAN_TAB_CHECK") or ROOT.parent / "shared" / "tools" / "webui-tab-check.py")
# The hub fixture serves the tiny I2V model as SERVED's repo: an I2V model continues itself, so
# its Download fetches this one repo. MISSING's repo is not served: its Download is refused.
SERVED = MODELS["wan2.1-i2v-14b-480p"]
MISSING = MODELS["wan2.1-t2v-14b"]


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


def _is_neo(root: Path) -> bool:
    version = root / "modules_forge" / "forge_version.py"
    return version.is_file() and "neo" in version.read_text(errors="replace")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The hub a WebUI this module starts talks to (its HF_ENDPOINT): tests/hub_server.py serving
    the tiny I2V model as SERVED's repo. None for a running WebUI (WAN_TEST_WEBUI_URL)."""
    if not WEBUI or os.environ.get("WAN_TEST_WEBUI_URL"):
        yield None
        return
    from hub_server import HubServer

    from deforum_wan.models.tiny import build_tiny_model

    source = build_tiny_model("tiny-random-i2v", tmp_path_factory.mktemp("hub") / "served")
    with HubServer(source, SERVED.diffusers_repo) as server:
        yield server


@pytest.fixture(scope="module")
def webui(tmp_path_factory, hub):
    if not WEBUI:
        pytest.skip("set WAN_TEST_WEBUI_DIR to a WebUI folder with this extension installed")
    root = Path(WEBUI)
    if os.environ.get("WAN_TEST_WEBUI_URL"):
        log = os.environ.get("WAN_TEST_WEBUI_LOG")  # its console, if it goes to a file
        yield os.environ["WAN_TEST_WEBUI_URL"].rstrip("/") + "/", root, Path(log) if log else None
        return
    forge = (root / "modules_forge").is_dir()
    default = "--cpu" if _is_neo(root) else "--always-cpu" if forge else "--use-cpu all --no-half --precision full"
    args = shlex.split(os.environ.get("WAN_TEST_WEBUI_ARGS", default))
    port = _free_port()
    log_path = tmp_path_factory.mktemp("webui") / "webui.log"
    log = open(log_path, "w")
    # The hub is the hub fixture's server (nothing else is reachable), with an empty cache: the
    # tab's Download goes there, and the WebUI finds no model of the user's hub cache.
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path_factory.mktemp("hf-home")),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN"):
        env.pop(name, None)
    # Neo downloads no SD model by itself, and refuses the flag that says not to
    no_download = [] if _is_neo(root) else ["--no-download-sd-model"]
    proc = subprocess.Popen([str(root / "venv" / "bin" / "python"), "launch.py", "--skip-torch-cuda-test",
                             "--skip-python-version-check", "--skip-version-check", *no_download,
                             "--api", "--port", str(port), *args],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 400
    while time.time() < deadline and "Startup time:" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None:
            pytest.fail(f"the WebUI exited: {log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(1)
    yield url, root, log_path
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_tab_check(webui, tmp_path):
    url, _, _ = webui
    if not TAB_CHECK.is_file():
        pytest.skip(f"{TAB_CHECK} not found (set WAN_TAB_CHECK)")
    pytest.importorskip("playwright")
    proc = subprocess.run([sys.executable, str(TAB_CHECK), url, "Wan", "--echo", '{"0": "a red fox in the snow"}',
                           "--button", "Plan", "--expect", "plan: 1 windows", "--timeout", "120",
                           "--screenshot", str(tmp_path / "wan.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "PASS" in proc.stdout


def test_render_through_the_webui(webui):
    """A job through /wan_api/, followed by the WebUI's progress; around it the host's own
    sd_models unloads and reloads (or leaves) its checkpoint without a traceback in the log."""
    url, root, log = webui
    logged = len(log.read_text(errors="replace")) if log else 0
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
    if log:
        time.sleep(2)  # the bridge's after_job (the checkpoint's reload) runs as the job ends
        after = log.read_text(errors="replace")[logged:]
        assert not [word for word in ("Traceback", "Error:", "SD checkpoint") if word in after], after[-3000:]


def test_the_worker_imports_its_libraries_in_the_webuis_python(webui):
    """The worker's environment (its private folder first): diffusers, transformers and OpenCV
    import, with numpy from the WebUI, and a 2D warp of the camera runs on OpenCV: the WebUI's
    own where the folder holds none."""
    _, root, _ = webui
    from deforum_wan.webui.hostdeps import packages_dir, worker_env

    extension = root / "extensions" / "deforum-wan"
    code = ("import cv2, numpy, diffusers, transformers\n"
            "from deforum_wan.render.warp import warp_2d\n"
            "image = numpy.arange(8 * 8 * 3, dtype=numpy.uint8).reshape(8, 8, 3)\n"
            "print(cv2.__version__, (warp_2d(image, numpy.eye(3)) == image).all())")
    proc = subprocess.run([str(root / "venv" / "bin" / "python"), "-c", code], env=worker_env(extension),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "True"  # the identity warp gives the image back
    own_cv2 = (packages_dir(extension) / "cv2").is_dir()
    print(f"worker: cv2 {proc.stdout.split()[0]} from {'its folder' if own_cv2 else 'the WebUI'}")


def _wait_job(url: str, job: str, until, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = _get(url + f"wan_api/jobs/{job}")
        if until(info):
            return info
        time.sleep(0.3)
    raise AssertionError(f"job {job} never got there: {info}")


def test_the_webuis_skip_stops_one_wan_job_and_the_next_one_runs(webui):
    """The WebUI's own Skip (/sdapi/v1/skip: shared.state.skip(), as its Skip buttons) on a
    batch of two Wan jobs: the running one stops with its frames kept, the next one runs to the
    end without pressing anything (Skip is not Interrupt: the queue is not paused)."""
    url, root, _ = webui
    if not (root / "models" / "wan" / "tiny-random").is_dir():
        pytest.skip("no tiny-random in the WebUI's models/wan (python -m deforum_wan tiny-models DIR)")
    example = json.loads(EXAMPLE.read_text())
    batch = [{"settings": {**example, "max_frames": 320, "wan_steps": 10}, "name": "skipped"},
             {"settings": example, "name": "after-skip"}]
    first, second = _post(url + "wan_api/jobs", {"batch": batch})["jobs"]
    _wait_job(url, first, lambda j: j["status"] == "running" and (j.get("progress") or {}).get("frames_written"),
              300)
    _post(url + "sdapi/v1/skip", {})
    stopped = _wait_job(url, first, lambda j: j["status"] not in ("queued", "running"), 120)
    assert stopped["status"] == "interrupted", stopped
    assert 0 < stopped["progress"]["frames_written"] < 320, stopped["progress"]
    done = _wait_job(url, second, lambda j: j["status"] not in ("queued", "running"), 300)
    assert done["status"] == "done" and done["progress"]["frames_written"] == 48, done
    assert _get(url + "wan_api/jobs")["state"]["paused"] is False


def test_use_deforum_prompts_reads_the_deforum_tab(webui):
    """With the Deforum extension installed next to this one: prompts typed in Deforum's tab
    reach the Wan tab through "Use Deforum's prompts"."""
    url, root, _ = webui
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


# Samples the WebUI's progress bar in the Wan tab: progressbar.js puts div.progressDiv >
# div.progress (width = progress, text "... NN% ETA: ...") before #wan_progress, and its live
# preview (div.livePreview) into #wan_preview.
BAR_JS = """() => {
  const bar = document.querySelector('#tab_wan .progressDiv .progress');
  const live = document.querySelector('#tab_wan #wan_preview .livePreview img');
  const box = bar && bar.getBoundingClientRect();
  return bar ? {width: parseFloat(bar.style.width || '0'), text: bar.textContent, live: !!live,
                shown: box.width > 0 && box.height > 0, title: document.title} : null;
}"""


def _eta_seconds(text: str) -> float | None:
    """formatTime's "ETA: 12s" / "ETA: 01:05" / "ETA: 01:00:05" as seconds."""
    found = re.search(r"ETA: (-?[\d:]+)s?", text)
    if not found:
        return None
    value = 0.0
    for part in found.group(1).split(":"):
        value = value * 60 + float(part)
    return value


def _sample_bar(page, until, timeout: float) -> list[dict]:
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        sample = page.evaluate(BAR_JS)
        if sample:
            sample["t"] = time.time()
        seen.append(sample)
        if until(sample, seen):
            break
        time.sleep(0.1)
    return seen


def _shot(page, name: str) -> None:
    folder = os.environ.get("WAN_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        # the tab's right column, Generate to the job table's first rows: what the progress is about
        box = page.evaluate("""() => {
          const rs = ['wan_generate', 'wan_job_status', 'wan_preview', 'wan_folder']
            .map(id => document.getElementById(id).getBoundingClientRect());
          const x = Math.min(...rs.map(r => r.left)), y = Math.min(...rs.map(r => r.top));
          return {x: x, y: y + window.scrollY, width: Math.max(...rs.map(r => r.right)) - x,
                  height: Math.max(...rs.map(r => r.bottom)) - y + 130};  // + the table's first rows
        }""")
        page.screenshot(path=str(Path(folder) / name), clip=box, full_page=True)


def _import(page, path: Path) -> None:
    """Import a settings file into the tab. gradio 3.41's upload now and then stays at
    "Uploading..." on this 2-core machine (the same POST by curl returns at once): clear and retry."""
    for _ in range(4):
        page.set_input_files("#wan_import input[type=file]", str(path))
        try:
            page.wait_for_function("() => document.querySelector('#wan_frames input').value === '48'",
                                   timeout=30_000)
            return
        except Exception:  # playwright's TimeoutError
            print("import retried; status:", page.locator("#wan_status textarea").input_value())
            page.set_input_files("#wan_import input[type=file]", [])
    raise AssertionError(f"could not import {path.name}")


def _open_wan_tab(p, url: str):
    """Chromium on the WebUI's Wan tab, once the tab's first poll answered (the page is wired:
    an upload before that can hang); (browser, page)."""
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS

    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1500, "height": 1200})
    page.goto(url, timeout=120_000)
    page.locator("#tabs > .tab-nav > button").filter(has_text="Wan").first.click(timeout=120_000)
    page.wait_for_function("() => document.querySelector('#wan_progress textarea').value !== 'idle'",
                           timeout=120_000)
    return browser, page


def test_the_webuis_progress_bar_follows_a_wan_job(webui):
    """Generate in the Wan tab: the WebUI's own progress bar appears in the tab, its value only
    grows, its ETA is never negative, the live preview shows the finished windows, and the bar
    goes when the job ends; Interrupt on a second job ends its bar too (Resume offered)."""
    url, root, log_path = webui
    if not (root / "models" / "wan" / "tiny-random").is_dir():
        pytest.skip("no tiny-random in the WebUI's models/wan (python -m deforum_wan tiny-models DIR)")
    playwright = pytest.importorskip("playwright.sync_api")
    host = "forge" if (root / "modules_forge").is_dir() else "a1111"
    with playwright.sync_playwright() as p:
        browser, page = _open_wan_tab(p, url)
        # ... and the WebUI's options reached the page (ui.js fills opts late; until then
        # progressbar.js draws its bar with display: none, as opts.show_progressbar is unset)
        page.wait_for_function("() => Object.keys(opts).length > 0", timeout=120_000)
        _import(page, EXAMPLE)
        for field, value in (("wan_frames", "320"), ("wan_steps", "10")):  # long enough to watch
            page.fill(f"#{field} input, #{field} textarea", value)
            page.locator(f"#{field} input, #{field} textarea").first.dispatch_event("input")
        page.click("#wan_generate")
        shot_taken = []

        def until_gone(sample, seen):
            if sample and sample["width"] > 40 and sample["live"] and not shot_taken:
                _shot(page, f"{host}-progress.png")
                shot_taken.append(sample)
            return sample is None and any(seen)  # the bar came and went

        seen = _sample_bar(page, until_gone, 300)
        bars = [s for s in seen if s]
        assert bars, "the WebUI's progress bar never appeared in the Wan tab"
        widths = [b["width"] for b in bars]
        assert widths == sorted(widths) and max(widths) <= 100 and len(set(widths)) > 3, widths
        etas = [e for e in (_eta_seconds(b["text"]) for b in bars) if e is not None]
        assert etas and min(etas) >= 0, [b["text"] for b in bars]
        # halfway, the ETA is the time the job then still took, give or take a factor of 3
        half = min(bars, key=lambda b: abs(b["width"] - 50))
        half_eta, left = _eta_seconds(half["text"]), bars[-1]["t"] - half["t"]
        assert half_eta is not None and left / 3 <= half_eta <= left * 3 + 2, (half, left)
        assert all(b["shown"] for b in bars)  # drawn, not only in the DOM
        assert any(b["live"] for b in bars)  # the live preview
        assert any("Wan: window" in b["text"] for b in bars)  # the bridge's textinfo
        assert any("%" in b["title"] for b in bars)  # the title shows the progress too
        page.wait_for_function("""() => document.querySelector('#wan_progress textarea').value
                               .includes('done - 320 frames')""", timeout=60_000)
        _shot(page, f"{host}-finished.png")
        print(f"{host}: {len(bars)} samples, widths {widths[0]:.0f}..{widths[-1]:.0f}%, "
              f"ETA {max(etas):.0f}..{min(etas):.0f} s; at {half['width']:.0f}%: {half['text']!r},"
              f" {left:.0f} s were left")

        # A second job, interrupted from the tab: its bar ends, Resume is offered.
        page.fill("#wan_frames input", "800")
        page.locator("#wan_frames input").dispatch_event("input")
        page.click("#wan_generate")
        seen = _sample_bar(page, lambda s, _: bool(s and s["width"] > 5), 120)
        assert seen[-1] and seen[-1]["width"] > 5, seen[-5:]
        page.click("#wan_interrupt")
        gone = _sample_bar(page, lambda s, _: s is None, 60)
        assert gone[-1] is None
        page.wait_for_function("""() => document.querySelector('#wan_progress textarea').value
                               .includes('interrupted after')""", timeout=60_000)
        _shot(page, f"{host}-interrupted.png")

        # Resume it: the bar follows the continuation too, and the WebUI's own Interrupt
        # (/sdapi/v1/interrupt: shared.state.interrupt(), as its Interrupt buttons) stops it.
        # the Resume list offers it: "<id> <name> (<kept>/<all> frames kept)"
        page.wait_for_function("() => / frames kept\\)$/.test(document.querySelector('#wan_resume_job input').value)",
                               timeout=60_000)
        page.click("#wan_resume")
        seen = _sample_bar(page, lambda s, _: bool(s and s["width"] > 5), 120)
        assert seen[-1] and seen[-1]["width"] > 5, seen[-5:]
        _shot(page, f"{host}-resume.png")
        _post(url + "sdapi/v1/interrupt", {})
        gone = _sample_bar(page, lambda s, _: s is None, 60)
        assert gone[-1] is None
        page.wait_for_function("() => document.querySelector('#wan_job_status textarea').value.includes('interrupted')",
                               timeout=60_000)
        browser.close()
    if log_path is not None:
        log = log_path.read_text(errors="replace")
        assert re.search(r"deforum-wan: job \w+ .*started: \d+ windows", log), log[-3000:]
        assert re.search(r"deforum-wan: job \w+ .*done", log) and "interrupted" in log


# For each polled output of the tab, the least opacity that any of its elements (ancestors'
# opacity included) was drawn with over ``ms`` while at other frames it was drawn fuller: a
# blink. Sampled every animation frame; an element always transparent (a file input) is no blink.
BLINK_JS = """(ms) => new Promise(done => {
  const ids = ['wan_jobs', 'wan_download_bar', 'wan_progress', 'wan_job_status', 'wan_folder', 'wan_preview', 'wan_video'];
  const seen = new Map(), end = performance.now() + ms;
  const drawn = e => { let op = 1; for (let n = e; n; n = n.parentElement) op *= parseFloat(getComputedStyle(n).opacity); return op; };
  const tick = () => {
    for (const id of ids) {
      const e = document.getElementById(id);
      if (!e) continue;
      for (const x of [e, ...e.querySelectorAll('div, table, textarea, img')]) {
        if (x.closest('.hide') || !x.offsetWidth) continue;
        const op = drawn(x), [lo, hi] = seen.get(x)?.[1] ?? [1, 0];
        seen.set(x, [id, [Math.min(lo, op), Math.max(hi, op)]]);
      }
    }
    if (performance.now() < end) { requestAnimationFrame(tick); return; }
    const low = Object.fromEntries(ids.map(id => [id, 1]));
    for (const [id, [lo, hi]] of seen.values()) if (lo < hi) low[id] = Math.min(low[id], lo);
    done(low);
  };
  tick();
})"""


def test_the_polled_outputs_do_not_blink(webui):
    """The tab polls every second; gradio 3/4 draw a Markdown/HTML output at opacity 0.2 while
    its event runs, so without the tab's CSS the job table blinked each second."""
    url, _, _ = webui
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser, page = _open_wan_tab(p, url)
        low = page.evaluate(BLINK_JS, 5000)  # five polls
        browser.close()
    assert low and all(v == 1 for v in low.values()), json.dumps(low)


def _value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first.input_value()


def _wait_value(page, elem_id: str, until, timeout: float) -> str:
    """The value of a textbox once ``until(value)`` holds (polled from here, as a user sees it)."""
    deadline, value = time.time() + timeout, None
    while time.time() < deadline:
        value = _value(page, elem_id)
        if until(value):
            return value
        time.sleep(0.2)
    raise AssertionError(f"#{elem_id} never got there; it says {value!r}")


def _choose_model(page, model_id: str) -> None:
    """Type a registry id into the model dropdown (it takes custom values) and leave it."""
    box = page.locator("#wan_model input").first
    box.click()
    box.fill(model_id)
    box.press("Enter")
    box.blur()
    page.wait_for_function("(m) => document.querySelector('#wan_model input').value.split(' ')[0] === m",
                           arg=model_id, timeout=30_000)


def test_download_fetches_the_model_into_the_webuis_models_folder(webui, hub):
    """Download in the Wan tab, in the real WebUI: the size is asked and the files fetched by the
    WebUI's own Python and huggingface_hub (Forge pins 0.26.2; A1111 v1.10.1 has the newest 0.x
    its transformers 4.30.2 allows) from the hub fixture's server, into the WebUI's models/wan,
    where Refresh models finds the model."""
    url, root, _ = webui
    if hub is None:
        pytest.skip("a running WebUI (WAN_TEST_WEBUI_URL) talks to its own hub")
    playwright = pytest.importorskip("playwright.sync_api")
    from deforum_wan.models.weights import locate_weights

    models = root / "models" / "wan"
    target = models / SERVED.diffusers_repo.split("/")[-1]
    if target.exists():
        pytest.skip(f"{target} is there already (this test fetches it, then removes it)")
    try:
        with playwright.sync_playwright() as p:
            browser, page = _open_wan_tab(p, url)
            _choose_model(page, SERVED.id)
            page.click("#wan_download")
            said = _wait_value(page, "wan_download_status", bool, 60)
            assert said.startswith(f"downloading {SERVED.id}: ") and str(models) in said, said
            page.wait_for_function("(m) => document.querySelector('#wan_download_bar').textContent.includes(m)",
                                   arg=f"downloaded {SERVED.id}", timeout=180_000)
            assert _value(page, "wan_download_status") == said  # the poll left the line alone
            page.click("#wan_refresh_models")
            page.wait_for_function("(m) => document.querySelector('#wan_model input').value.startsWith(m)",
                                   arg=f"{SERVED.id} [installed", timeout=30_000)
            browser.close()
        got = {f.relative_to(target).as_posix(): f.read_bytes() for f in target.rglob("*")
               if f.is_file() and ".cache" not in f.relative_to(target).parts}
        assert "model_index.json" in got and any(n.endswith(".safetensors") for n in got), sorted(got)
        assert all(hub.files[n]["size"] == len(data) and (hub.folder / n).read_bytes() == data
                   for n, data in got.items()), sorted(got)
        assert hub.bytes_sent == sum(len(d) for d in got.values())  # each file once, from the server
        assert locate_weights(SERVED, models) == target
        version = subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                                  "import huggingface_hub; print(huggingface_hub.__version__)"],
                                 capture_output=True, text=True, timeout=60).stdout.strip()
        print(f"downloaded {len(got)} files ({hub.bytes_sent} bytes) with the WebUI's huggingface_hub {version}")
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_a_download_error_stays_on_the_download_line(webui, hub):
    """Download of a model whose repo the hub lacks: the Download line says so, and still says
    it 10 s later, the poll (which writes the Job line of a job running meanwhile) leaving it."""
    url, root, _ = webui
    if hub is None:
        pytest.skip("a running WebUI (WAN_TEST_WEBUI_URL) talks to its own hub")
    playwright = pytest.importorskip("playwright.sync_api")
    tiny = (root / "models" / "wan" / "tiny-random").is_dir()
    job, lines, job_lines = None, set(), set()
    with playwright.sync_playwright() as p:
        browser, page = _open_wan_tab(p, url)
        _choose_model(page, MISSING.id)
        page.click("#wan_download")
        said = _wait_value(page, "wan_download_status", bool, 60)
        shown = time.time()
        assert MISSING.diffusers_repo in said and "not found" in said, said
        if tiny:  # a job, so the poll has something to write
            job = _post(url + "wan_api/jobs", {"settings": json.loads(EXAMPLE.read_text()),
                                               "name": "download-error"})["jobs"][0]
        while time.time() < shown + 10:
            lines.add(_value(page, "wan_download_status"))
            job_lines.add(_value(page, "wan_job_status"))
            time.sleep(0.25)
        lines.add(_value(page, "wan_download_status"))
        browser.close()
    if job:
        _wait_job(url, job, lambda j: j["status"] not in ("queued", "running"), 300)
        assert any(f"job {job}" in line for line in job_lines), job_lines  # the poll ran meanwhile
    assert lines == {said}, lines


def test_thirty_imports_in_a_row_none_stuck_uploading(webui, tmp_path):
    """Thirty settings files imported one after another, with the tab's poll running: each
    import ends (the Settings line names its file) within 30 s; none stays at "Uploading..."."""
    url, _, _ = webui
    playwright = pytest.importorskip("playwright.sync_api")
    files = []
    for i in range(30):
        files.append(tmp_path / f"import-{i:02d}.txt")
        files[-1].write_bytes(EXAMPLE.read_bytes())
    stuck, took = [], []
    with playwright.sync_playwright() as p:
        browser, page = _open_wan_tab(p, url)
        field = page.locator("#wan_import input[type=file]")
        # 10 s with the tab open and nothing pressed: gradio 4.40's client warns "Too many
        # arguments provided for the endpoint" on each call of an event with inputs (an import
        # is one), so the poll must take none
        warned = []
        page.on("console", lambda m: "Too many arguments" in m.text and warned.append(m.text))
        page.wait_for_function("() => window.wanPoll && window.wanPoll.clicks > 0", timeout=30_000)
        idle = page.evaluate("() => window.wanPoll.clicks")
        page.wait_for_timeout(10_000)
        idle, idle_warned = page.evaluate("() => window.wanPoll.clicks") - idle, len(warned)
        polls = page.evaluate("() => window.wanPoll.clicks")
        for i, path in enumerate(files):
            # a pause as a user takes, at another phase of the 1 s poll each time: the poll runs
            # between the imports, and imports start while a poll is out
            page.wait_for_timeout(1000 + i * 137 % 1000)
            if field.count() == 0:  # the last import's file is shown: clear it, as a user does
                page.locator("#wan_import button[aria-label='Clear']").first.click()
                field.wait_for(state="attached", timeout=10_000)
            start = time.time()
            field.set_input_files(str(path))
            try:
                page.wait_for_function("(t) => document.querySelector('#wan_status textarea').value.startsWith(t)",
                                       arg=f"imported {path.name}", timeout=30_000)
                took.append(time.time() - start)
            except Exception:  # playwright's TimeoutError
                stuck.append((path.name, page.locator("#wan_import").inner_text()[:200], _value(page, "wan_status")))
                if field.count():  # still uploading: give up on this one, as _import does
                    field.set_input_files([])
        polls = page.evaluate("() => window.wanPoll.clicks") - polls
        held = page.evaluate("() => window.wanPoll.holds")
        browser.close()
    assert not stuck, f"{len(stuck)} of 30 imports did not end in 30 s: " + "; ".join(
        f"{name}: the field says {shown!r}, the Settings line {line!r}" for name, shown, line in stuck)
    assert polls >= 20, f"the tab's poll ran {polls} times during the imports"  # they met the poll
    assert idle >= 8 and idle_warned == 0, f"{idle_warned} console warnings in 10 s of {idle} polls: {warned[:1]}"
    print(f"30 imports: {min(took):.1f}..{max(took):.1f} s each, {polls} polls meanwhile, {held} held for one")


def test_a_video_input_plans_in_the_webuis_python(webui, tmp_path):
    """A Video Input file and its video uploaded in the tab: Plan probes the video and shows each
    window's source strip in the WebUI's own Python, which has no imageio-ffmpeg in A1111 and
    Forge (the tab runs the binary inside the worker's packages)."""
    url, _, _ = webui
    playwright = pytest.importorskip("playwright.sync_api")
    from counter_video import write_counter_video

    settings = tmp_path / "video_input.txt"
    settings.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), "animation_mode": "Video Input",
                                    "video_init_path": "", "fps": 16, "wan_clip_duration": 1, "W": 160, "H": 32}))
    video = tmp_path / "counter.mp4"
    write_counter_video(video, 40, fps=30)
    with playwright.sync_playwright() as p:
        browser, page = _open_wan_tab(p, url)
        page.set_input_files("#wan_import input[type=file]", str(settings))
        _wait_value(page, "wan_status", lambda t: t.startswith("imported video_input.txt"), timeout=60)
        page.get_by_text("Video (Video Input, control video)").first.click()
        page.locator("#wan_video_upload input[type=file]").set_input_files(str(video))
        _wait_value(page, "wan_status", lambda t: t.startswith("uploaded as wan-uploads/"), timeout=60)
        page.locator("#wan_plan").first.click()
        status = _wait_value(page, "wan_status", lambda t: t.startswith(("plan: ", "error", "internal")),
                             timeout=120)
        assert status.startswith("plan: "), status
        windows = page.locator("#wan_plan_view .wan-plan-summary tbody tr").count()
        strips = page.locator("#wan_plan_view .wan-source-window")
        assert windows >= 2 and strips.count() == windows, page.locator("#wan_plan_view").first.inner_text()[:500]
        assert strips.first.locator("img").first.evaluate("img => img.naturalWidth") == 96
        browser.close()


def _neo_files(root: Path) -> list[Path]:
    """The tiny T2V model as Neo users keep Wan: a ComfyUI-style transformer file in
    models/Stable-diffusion, its UMT5 in models/text_encoder and its VAE in models/VAE; an SD
    checkpoint's header beside the transformer. Returns what it wrote."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from helpers import to_original_name, write_safetensors_header
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    tiny, models = root / "models" / "wan" / "tiny-random", root / "models"
    files = [models / "Stable-diffusion" / "wan_host_test_tiny_bf16.safetensors",
             models / "text_encoder" / "umt5_host_test_tiny.safetensors",
             models / "VAE" / "wan_host_test_tiny_vae.safetensors",
             models / "Stable-diffusion" / "host_test_sd15.safetensors"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
    transformer = WanTransformer3DModel.from_pretrained(tiny / "transformer").state_dict()
    save_file({"model.diffusion_model." + to_original_name(k): v.to(torch.bfloat16).contiguous()
               for k, v in transformer.items()}, files[0])
    text = UMT5EncoderModel.from_pretrained(tiny / "text_encoder").state_dict()
    save_file({k: v.contiguous() for k, v in text.items() if k != "encoder.embed_tokens.weight"}, files[1])
    save_file({k: v.contiguous() for k, v in AutoencoderKLWan.from_pretrained(tiny / "vae").state_dict().items()},
              files[2])
    write_safetensors_header(files[3], {"model.diffusion_model.input_blocks.0.0.weight": ("F16", (320, 4, 3, 3))})
    return files


def test_a_wan_file_in_neos_checkpoint_folder_is_listed_by_the_tab_and_renders(webui):
    """Forge Neo: a Wan transformer file in models/Stable-diffusion is in the model list after
    Refresh models (the SD checkpoint beside it is not), and a job on it renders with its text
    encoder and VAE from Neo's folders, leaving no traceback in the log."""
    url, root, log = webui
    if not _is_neo(root):
        pytest.skip("Forge Neo only: A1111 and Forge keep no Wan files of their own")
    if not (root / "models" / "wan" / "tiny-random").is_dir():
        pytest.skip("no tiny-random in the WebUI's models/wan (python -m deforum_wan tiny-models DIR)")
    playwright = pytest.importorskip("playwright.sync_api")
    files = _neo_files(root)
    name = files[0].name
    try:
        with playwright.sync_playwright() as p:
            browser, page = _open_wan_tab(p, url)
            page.click("#wan_refresh_models")
            box = page.locator("#wan_model input").first
            box.click()
            box.fill(name)  # the list narrows to what matches, as a user types
            page.wait_for_selector("#wan_model ul.options li", timeout=30_000)
            options = page.locator("#wan_model ul.options li").all_inner_texts()
            box.fill("host_test_sd15")
            page.wait_for_timeout(1000)
            sd = page.locator("#wan_model ul.options li").all_inner_texts()
            browser.close()
        assert any(o.strip().startswith(f"{name} [file: Wan transformer T2V") for o in options), options
        assert not any("host_test_sd15" in o for o in sd), sd
        logged = len(log.read_text(errors="replace")) if log else 0
        settings = {**json.loads(EXAMPLE.read_text()), "wan_model": name, "max_frames": 16}
        job = _post(url + "wan_api/jobs", {"settings": settings, "name": "neo-file"})["jobs"][0]
        info = _wait_job(url, job, lambda j: j["status"] not in ("queued", "running"), 300)
        assert info["status"] == "done", info
        assert Path(info["video"]).is_file()
        if log:
            time.sleep(2)
            after = log.read_text(errors="replace")[logged:]
            assert "Traceback" not in after, after[-3000:]
    finally:
        for path in files:
            path.unlink(missing_ok=True)
