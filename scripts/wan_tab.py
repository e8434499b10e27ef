"""The Wan tab in AUTOMATIC1111 v1.10, Forge and Forge Neo: the only file that imports the WebUI's `modules`.

Everything is imported here, at load time: A1111 puts the extension root on sys.path only
while it loads this file, so nothing may be imported lazily from callbacks. Nothing heavy is
imported (no torch/diffusers): renders run in a worker subprocess (deforum_wan.service.jobs) whose
libraries come from <extension>/.wan-packages (install.py).
"""
import os
import sys
import threading
from pathlib import Path

EXTENSION = Path(__file__).resolve().parent.parent
if str(EXTENSION / "scripts") not in sys.path:
    sys.path.insert(0, str(EXTENSION / "scripts"))

from modules import call_queue, paths, progress, script_callbacks, sd_models, shared  # noqa: E402

import deforum_wan  # noqa: E402
from deforum_wan.config import ffmpeg  # noqa: E402
from deforum_wan.config.keys import BACKENDS  # noqa: E402
from deforum_wan.config.settings import read_settings_file  # noqa: E402
from deforum_wan.errors import WanError  # noqa: E402
from deforum_wan.service.api import mount_api  # noqa: E402
from deforum_wan.service.console import ConsoleLog  # noqa: E402
from deforum_wan.service.jobs import FINISHED, JobManager  # noqa: E402
from deforum_wan.service.jobstore import jobs_db_path  # noqa: E402
from deforum_wan.webui import hostdeps  # noqa: E402
from deforum_wan.webui.api_login import api_guard  # noqa: E402
from deforum_wan.webui.host_bridge import ProgressBridge  # noqa: E402
from deforum_wan.webui.host_checkpoint import HostCheckpoint  # noqa: E402
from deforum_wan.webui.host_folders import add_extra_dirs, is_neo, neo_dirs  # noqa: E402
from deforum_wan.webui.tab_layout import build_ui  # noqa: E402

SECTION = ("wan", "Wan")

# The tab probes and previews videos in the WebUI's own Python, which seldom has imageio-ffmpeg:
# it runs the binary of the worker's copy (by path; nothing of that folder is imported here).
ffmpeg.set_fallback(lambda: ffmpeg.binary_in(hostdeps.packages_dir(EXTENSION)))


def _opt(name, default=None):
    return getattr(shared.opts, name, default) if hasattr(shared, "opts") else default


def _models_dir() -> str:
    return (getattr(shared.cmd_opts, "wan_models_dir", None) or _opt("wan_models_dir")
            or os.path.join(paths.models_path, "wan"))


def _outdir() -> str:
    # Deforum writes to img2img's folder; its tools (resume, stitching) look there.
    return _opt("wan_outdir") or _opt("outdir_img2img_samples") or "outputs/img2img-images"


def _forge_version():
    try:
        from modules_forge import forge_version  # Forge and Neo only
    except ImportError:
        return None
    return getattr(forge_version, "version", None)


def _host_model_dirs() -> None:
    """In Forge Neo, its Wan files are where its users keep them: its checkpoint, text encoder
    and VAE folders (and their flags) become extra model folders for the tab and the worker."""
    if is_neo(shared.cmd_opts, _forge_version()):
        add_extra_dirs(neo_dirs(paths.models_path, shared.cmd_opts))


def _load_image(path):
    from PIL import Image  # the WebUI has Pillow loaded already

    with Image.open(path) as image:
        return image.convert("RGB")


class _Host:
    """The one manager of this WebUI process. Kept on the deforum_wan package (which stays in
    sys.modules) so a UI reload, which re-runs this file, does not start a second one."""

    checkpoint = HostCheckpoint(sd_models, enabled=lambda: _opt("wan_unload_sd", True))

    @classmethod
    def manager(cls) -> JobManager:
        existing = getattr(deforum_wan, "_webui_manager", None)
        if existing is not None:
            return existing
        _refresh_worker_packages()
        _host_model_dirs()  # before the worker's environment is copied from ours
        env = hostdeps.worker_env(EXTENSION)
        if _opt("wan_official_repo"):
            env["DEFORUM_WAN_OFFICIAL_REPO"] = _opt("wan_official_repo")
        outdir = _outdir()
        db = jobs_db_path(outdir)
        db.parent.mkdir(parents=True, exist_ok=True)
        # The bridge first: the manager's dispatcher calls its before_job (take the WebUI's lock,
        # unload the checkpoint) before a worker starts loading Wan, from the first job on.
        # progress: the WebUI's task queue, so the page's own bar follows the tab's jobs (txt2img's way)
        bridge = ProgressBridge(None, shared.state, lock=call_queue.queue_lock, before=cls.checkpoint.unload,
                                after=cls.checkpoint.reload, load_image=_load_image, progress=progress)
        manager = JobManager(db, outdir, models_dir=_models_dir(), keep_warm=bool(_opt("wan_keep_warm", False)),
                             python=sys.executable, env=env, before_job=bridge.before_job,
                             after_job=bridge.after_job)
        bridge.manager = manager  # the WebUI's Interrupt/Skip go to it
        manager.subscribe(bridge)
        manager.subscribe(ConsoleLog(manager))  # start, windows, end, errors in the WebUI's console
        deforum_wan._webui_manager = manager
        deforum_wan._webui_bridge = bridge
        return manager

def _refresh_worker_packages() -> None:
    """Another extension's installer may have changed numpy or torch after ours ran: the
    worker's folder is resolved again for what the WebUI has now, before any worker starts."""
    import subprocess

    host = hostdeps.host_versions()
    reason = hostdeps.stale_reason(hostdeps.packages_dir(EXTENSION), host)
    if reason is None:
        return
    print(f"deforum-wan: the WebUI's packages changed since the Wan worker's were installed ({reason});"
          " installing them again")
    try:
        line = hostdeps.ensure_installed(EXTENSION, python=sys.executable, python_version=sys.version_info[:3],
                                         host=host,
                                         index_url=os.environ.get("INDEX_URL") or None)
        print(f"deforum-wan: {line or 'the worker packages fit'}")
    except (hostdeps.HostDepsError, subprocess.CalledProcessError) as exc:
        print(f"deforum-wan: the worker's packages could not be installed again ({exc}); Wan jobs may fail")


def deforum_installed() -> bool:
    extensions = Path(paths.script_path) / "extensions"
    return any("deforum" in p.name.lower() and p.resolve() != EXTENSION and (p / "scripts").is_dir()
               for p in (extensions.iterdir() if extensions.is_dir() else []))


def deforum_prompts():
    """Deforum's prompts from its settings file (Deforum's "General Settings File", in the
    WebUI folder); the button reads Deforum's tab in the page first."""
    settings = Path(paths.script_path) / "deforum_settings.txt"
    if not settings.is_file():
        return None
    data = read_settings_file(settings)
    keys = ("prompts", "animation_prompts", "animation_prompts_positive", "animation_prompts_negative")
    found = {k: data[k] for k in keys if k in data}
    if "animation_prompts" in found:  # Deforum's loader lets the legacy key win
        found["prompts"] = found.pop("animation_prompts")
    return found or None


def on_ui_tabs():
    defaults = {"wan_backend": _opt("wan_default_backend", "auto")}
    blocks = build_ui(_Host.manager(), defaults=defaults, tasks=deforum_wan._webui_bridge,
                      deforum_prompts=deforum_prompts if deforum_installed() else None)
    return [(blocks, "Wan", "wan")]


def on_ui_settings():
    def option(default, label, component=None, args=None, restart=False):
        info = shared.OptionInfo(default, label, component, args, section=SECTION)
        return info.needs_restart() if restart and hasattr(info, "needs_restart") else info

    import gradio as gr  # the WebUI's own, already loaded

    opts = {
        "wan_models_dir": option(os.path.join(paths.models_path, "wan"), "Wan model weights folder", restart=True),
        "wan_official_repo": option("", "Path of a Wan2.1/Wan2.2 clone for the official backend (empty: the one the tab's"
                                    " Official Wan code → Set up made)",
                                    restart=True),
        "wan_default_backend": option("auto", "Default backend", gr.Dropdown, {"choices": list(BACKENDS)}),
        "wan_keep_warm": option(False, "Keep the model loaded between Wan jobs (faster; holds VRAM)", restart=True),
        "wan_outdir": option("", "Wan output folder (empty: Deforum's, the img2img output folder)", restart=True),
        "wan_unload_sd": option(True, "Unload the SD checkpoint while Wan renders, reload it afterwards"),
    }
    for key, info in opts.items():
        shared.opts.add_option(key, info)


def on_app_started(demo, app):
    manager = _Host.manager()
    # gradio's file route serves the output folder (previews, videos), never the queue's database.
    blocked = str(jobs_db_path(manager.outdir).parent)
    demo.blocked_paths = [*(getattr(demo, "blocked_paths", None) or []), blocked]
    if getattr(shared.cmd_opts, "api", False):
        # The WebUI's own API login covers /wan_api/ too; a WebUI behind --gradio-auth(-path)
        # only keeps its API behind that login. A login that cannot be read serves no API.
        try:
            mount_api(app, manager, guard=api_guard(shared.cmd_opts))
        except WanError as exc:
            print(f"deforum-wan: /wan_api/ is not served: {exc}")
    _run_now(manager)


def _run_now(manager) -> None:
    files = getattr(shared.cmd_opts, "wan_run_now", None)
    if not files or getattr(deforum_wan, "_webui_run_now_done", False):
        return
    deforum_wan._webui_run_now_done = True  # a UI reload runs on_app_started again
    try:
        items = [(Path(f).stem, read_settings_file(f)) for f in files]
        # the operator named these files: their own folders may hold their inputs
        ids = manager.submit_batch(items, inputs=[Path(f).resolve().parent for f in files])
        print(f"deforum-wan: --wan-run-now queued {len(ids)} jobs")
    except WanError as exc:
        print(f"deforum-wan: --wan-run-now: {exc}")
        ids = []
    if getattr(shared.cmd_opts, "wan_terminate_after_run_now", False):
        threading.Thread(target=_stop_when_done, args=(manager, ids), name="wan-run-now", daemon=True).start()


def _stop_when_done(manager, ids) -> None:
    import time

    while ids and not all(manager.get(i)["status"] in FINISHED for i in ids):
        time.sleep(1.0)
    failed = [i for i in ids if manager.get(i)["status"] != "done"]
    print(f"deforum-wan: run-now finished ({len(ids) - len(failed)} done, {len(failed)} not); stopping the WebUI")
    manager.shutdown()
    shared.state.server_command = "stop"
    # A1111 exits on "stop"; Forge's main thread loops on, so end the process ourselves.
    time.sleep(15)
    os._exit(1 if failed else 0)


def _register(category: str, callback) -> None:
    """What ``script_callbacks.on_<category>`` does, minus its inspect.stack() walk to find
    this file's name (~70 ms a call at WebUI start); same callback name."""
    try:
        callbacks = script_callbacks.callback_map[f"callbacks_{category}"]
        script_callbacks.add_callback(callbacks, callback, category=category, filename=__file__)
    except (AttributeError, KeyError, TypeError):  # another host version: its public way
        getattr(script_callbacks, f"on_{category}")(callback)


_register("ui_tabs", on_ui_tabs)
_register("ui_settings", on_ui_settings)
_register("app_started", on_app_started)
