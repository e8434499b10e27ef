"""The Wan tab inside a real AUTOMATIC1111 or Forge (skipped unless one is given).

    WAN_TEST_WEBUI_DIR=/path/to/webui      the WebUI folder (venv/ inside, this extension in extensions/)
    WAN_TEST_WEBUI_URL=http://127.0.0.1:7860/   use a running one instead of starting it
    WAN_TEST_WEBUI_ARGS="..."              launch.py flags (default: CPU flags for A1111 or Forge)
    WAN_TAB_CHECK=/path/webui-tab-check.py  (default: ../shared/tools/webui-tab-check.py)

    WAN_TEST_SCREENSHOTS=docs/screenshots    where the progress test saves its PNGs (default: none)

Checks the tab with the shared tab checker (click the tab, type a prompt schedule, press Plan,
see the table), then renders on tiny-random through /wan_api (when the WebUI's models/wan holds
it) and checks the WebUI's own progress state saw the job, and in Chromium that Generate in the
tab shows the WebUI's own progress bar (progressbar.js) with a growing value, a never-negative
ETA and the live preview, that Interrupt ends it, that the WebUI's Skip goes on to the next
job, and that the console has the job's lines.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT

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
        log = os.environ.get("WAN_TEST_WEBUI_LOG")  # its console, if it goes to a file
        yield os.environ["WAN_TEST_WEBUI_URL"].rstrip("/") + "/", root, Path(log) if log else None
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
    url, root, _ = webui
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
        page.wait_for_function("() => document.querySelector('#wan_resume_job input').value.includes('interrupted')",
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
