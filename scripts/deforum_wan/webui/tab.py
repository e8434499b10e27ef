"""The Wan tab: one gradio Blocks for A1111 (gradio 3.41), Forge (4.40) and standalone (6.x).

``build_ui(manager)`` lays out the fields (ui_fields.FIELDS, in order), the Plan / Generate /
Interrupt / Skip buttons, import and save of Deforum settings files, and a polled progress
panel. The handlers live on ``WanTab`` so tests call them without a browser. Every
handler turns a user error into one status line; nothing shows a traceback in the tab.
"""
from __future__ import annotations

import html
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from ..config.keys import COLOR_MODES
from ..config.planner import format_plan, make_plan
from ..config.schedule import SEED_BEHAVIORS
from ..config.settings import load_settings, read_settings_file, resolve_batch_name
from ..errors import WanError
from ..models.registry import MODELS
from ..models.weights import disk_size, locate_weights, resolve_models_dir
from ..render import output
from ..render.camera_preview import write_preview
from ..render.inputs import find_inside, input_roots
from ..service.paths import keep_upload
from .downloads import Downloads
from .fields import (
    CUSTOM_SIZE,
    FIELDS,
    WAN_FIELDS,
    fields_to_settings,
    model_choices,
    model_id,
    model_label,
    nearest_size,
    parse_size,
    prompts_text,
    sampling_label,
    settings_to_fields,
    size_choices,
    size_for,
    wan_widget,
)
from .gradio_compat import blocks, component, file_path, file_paths, on, poll, update, upload_folder
from .plan_view import plan_html

POLL_SECONDS = 1.0
PREVIEW_SIDE = 384  # px: the camera preview's frames (seconds on a CPU; the camera scales with them)
# Monospace for the plan table. The WebUIs load the extension's style.css (same rules);
# the standalone server passes this to gradio.
CSS = """#wan_plan_out textarea, #wan_progress textarea { font-family: ui-monospace, Menlo, Consolas, monospace; }
#wan_plan_out textarea { white-space: pre; overflow-x: auto; }
/* The WebUI's own progress bar (progressbar.js) above the Progress box, in the flow rather
   than over the row above; its live preview covers the last-frame image. */
#tab_wan .progressDiv { position: relative; top: 0; margin-bottom: 6px; }
#wan_preview { position: relative; }
/* gradio 3/4 draw a Markdown or HTML output at opacity 0.2 while its event runs: the 1 s poll
   would blink the job table and the download bar every second, changed or not. */
#wan_jobs .pending, #wan_download_bar .pending { opacity: 1 !important; }
"""

# A first render that works on the model's trained size; everything else is Deforum's default.
STARTER_SETTINGS: dict = {
    "W": 832, "H": 480, "fps": 16, "max_frames": 81, "steps": 25, "cfg_scale_schedule": "0: (7)",
    "seed": -1, "batch_name": "Wan_{timestring}",
    "prompts": {"0": "a lighthouse on a cliff at dawn, waves crashing --neg blurry, low quality",
                "48": "the lighthouse at night, its beam sweeping through fog"},
}

# Reads the Deforum tab's prompt fields in the page (A1111/Forge both render Deforum's tab
# as #tab_deforum_interface; its textboxes have no elem_id, so they are found by label).
DEFORUM_PROMPTS_JS = """
(...args) => {
  const app = (typeof gradioApp === 'function') ? gradioApp() : document;
  const tab = app.querySelector('#tab_deforum_interface');
  const names = {'Prompts': 'prompts', 'Prompts positive': 'animation_prompts_positive',
                 'Prompts negative': 'animation_prompts_negative'};
  const found = {};
  if (tab) {
    for (const label of tab.querySelectorAll('label')) {
      const title = label.querySelector('span');
      const area = label.querySelector('textarea');
      const key = title && names[title.textContent.trim()];
      if (key && area && !(key in found)) found[key] = area.value;
    }
  }
  return [('prompts' in found) ? JSON.stringify(found) : ''];
}
"""


# Generate and Resume in A1111/Forge: a task id made as txt2img's submit() makes it, and the
# WebUI's own progress bar and live preview (progressbar.js requestProgress, polling
# /internal/progress) above the Progress box for it; the id is the first input. Standalone
# there is no requestProgress: the id stays empty and nothing else happens.
TASK_JS = """
(...args) => {
  if (typeof requestProgress === 'function' && typeof randomId === 'function') {
    const app = (typeof gradioApp === 'function') ? gradioApp() : document;
    const bar = app.querySelector('#wan_progress');
    if (bar) {
      const id = randomId();
      requestProgress(id, bar, app.querySelector('#wan_preview'), () => {});
      args[0] = id;
    }
  }
  return args;
}
"""


def one_line(exc: BaseException) -> str:
    """A user error as one line; anything else as its type and first line (logged in full)."""
    if isinstance(exc, WanError):
        return "error: " + " ".join(str(exc).split())
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"internal error: {type(exc).__name__}: {first}"


def installed_models(models_dir: str | None) -> dict[str, int]:
    """Registry ids whose weights are on disk (models dir or hub cache) -> bytes there; no network."""
    found = {}
    for mid, spec in MODELS.items():
        layouts = ("diffusers",) if spec.tiny else ("diffusers", "official")
        try:
            paths = [p for p in (locate_weights(spec, models_dir, layout) for layout in layouts) if p]
            if paths:
                found[mid] = sum(disk_size(p) for p in paths)
        except OSError:  # an unreadable models dir: the model shows as not downloaded
            continue
    return found


class WanTab:
    """The tab's handlers. Field values come in ``FIELDS`` order."""

    def __init__(self, manager, *, defaults: dict | None = None,
                 deforum_prompts: Callable[[], Any] | None = None, models_dir: str | None = None,
                 outdir: str | None = None, tasks=None):
        self.manager = manager
        self.tasks = tasks  # the host's task progress (host_bridge.ProgressBridge), or None
        self.models_dir = models_dir if models_dir is not None else getattr(manager, "models_dir", None)
        self.outdir = Path(outdir or getattr(manager, "outdir", "outputs"))
        self.deforum_prompts = deforum_prompts
        self.initial = {**STARTER_SETTINGS, **(defaults or {})}
        self.installed = installed_models(self.models_dir)
        self.downloads = Downloads(resolve_models_dir(self.models_dir))

    # --- helpers -----------------------------------------------------------------------
    def fields(self, values) -> dict:
        return dict(zip(FIELDS, values, strict=True))  # a wiring mistake fails loudly

    def field_values(self, settings: dict) -> list:
        """Gradio values for the field components (the model shown with its install mark)."""
        shown = settings_to_fields(settings)
        shown["model"] = model_label(shown["model"], self.installed)
        return [shown[name] for name in FIELDS]

    def settings_of(self, values, base: dict | None) -> dict:
        return fields_to_settings(self.fields(values), base or {})

    def batch_settings(self, values, batch: list) -> list[tuple[str, dict]]:
        """Each imported file with this tab's Wan fields applied (ui_fields.WAN_FIELDS)."""
        fields = self.fields(values)
        return [(name, fields_to_settings(fields, data, only=WAN_FIELDS)) for name, data in batch]

    # --- plan / generate / stop ----------------------------------------------------------
    def plan(self, *args) -> tuple[str, str, str]:
        """(the plan as text, as a timeline and table, the status line)."""
        *values, base, batch = args
        try:
            if batch:
                return self._plan_batch(values, batch)
            settings = load_settings(self.settings_of(values, base), name="tab")
            plan = make_plan(settings)
        except Exception as exc:
            return "", "", one_line(exc)
        status = (f"plan: {len(plan.windows)} windows, {plan.max_frames} frames at {plan.fps:g} fps"
                  + (f", {len(plan.warnings)} warnings (listed under the table)" if plan.warnings else ""))
        return format_plan(plan), plan_html(plan), status

    def preview_camera(self, *args) -> tuple[Any, str]:
        """Deforum's camera on the init image (or a grid) as an mp4, in seconds, before any GPU time."""
        *values, base, _batch = args
        try:
            settings = load_settings(self.settings_of(values, base), name="tab")
            folder = self.outdir / "wan-camera" / output.make_timestring()
            video, notes = write_preview(settings, folder, settings.init_image, models_dir=self.models_dir,
                                         max_side=PREVIEW_SIDE)
        except Exception as exc:
            return update(), one_line(exc)
        return str(video), "; ".join([f"camera preview: {settings.max_frames} frames (no diffusion)", *notes])

    def _plan_batch(self, values, batch) -> tuple[str, str, str]:
        parts, views, failed = [], [], 0
        for name, data in self.batch_settings(values, batch):
            try:
                plan = make_plan(load_settings(data, name=name))
                parts.append(f"== {name} ==\n{format_plan(plan)}")
                views.append(f"<h4>{html.escape(name)}</h4>{plan_html(plan)}")
            except Exception as exc:
                failed += 1
                parts.append(f"== {name} ==\n{one_line(exc)}")
                views.append(f"<h4>{html.escape(name)}</h4><p>{html.escape(one_line(exc))}</p>")
        status = f"plan: {len(batch)} files" + (f", {failed} with errors" if failed else "")
        return "\n\n".join(parts), "".join(views), status

    def generate(self, *args) -> str:
        return self._submit(None, args)

    def generate_task(self, task: str | None, *args) -> str:
        """Generate for the page's task id (TASK_JS): the WebUI's progress bar follows its jobs."""
        return self._submit(task, args)

    def _submit(self, task: str | None, args) -> str:
        *values, base, batch = args
        ids: list[str] = []
        self._task_queued(task)
        try:
            if batch:
                ids = self.manager.submit_batch(self.batch_settings(values, batch))
                return f"queued {len(ids)} jobs: {', '.join(ids)}"
            settings = self.settings_of(values, base)
            ids = [self.manager.submit(settings, name=job_name(self.fields(values).get("batch_name")))]
            return f"queued job {ids[0]}"
        except Exception as exc:
            return one_line(exc)
        finally:
            self._task_jobs(task, ids)

    def _task_queued(self, task: str | None) -> None:
        if task and self.tasks is not None:
            self.tasks.task_queued(task)

    def _task_jobs(self, task: str | None, ids: list[str]) -> None:
        if task and self.tasks is not None:
            self.tasks.task_jobs(task, ids)

    def interrupt(self) -> str:
        try:
            stopped = self.manager.interrupt()
        except Exception as exc:
            return one_line(exc)
        return ("interrupting: the render stops at the next step and keeps its frames; the queue"
                " waits until the next Generate" if stopped else "nothing is rendering")

    def skip(self) -> str:
        try:
            stopped = self.manager.skip()
        except Exception as exc:
            return one_line(exc)
        return "skipping: the render stops at the next step; the next job starts" if stopped \
            else "nothing is rendering"

    def resume_task(self, task: str | None, choice) -> str:
        """Resume for the page's task id (TASK_JS)."""
        return self.resume(choice, task=task)

    def resume(self, choice, task: str | None = None) -> str:
        """Queue the continuation of the chosen interrupted or failed job (the latest when none
        is chosen): the same folder and seed, the frames on disk kept."""
        new = None
        self._task_queued(task)
        try:
            job_id = str(choice or "").split(" ", 1)[0]
            if not job_id:
                choices = resumable(self.manager.list())
                if not choices:
                    return "nothing to resume: no interrupted or failed job"
                job_id = choices[0].split(" ", 1)[0]
            new = self.manager.resume(job_id)
        except Exception as exc:
            return one_line(exc)
        finally:
            self._task_jobs(task, [new] if new else [])
        return f"queued job {new}: continues job {job_id} where it stopped"

    # --- import / save -------------------------------------------------------------------
    def import_files(self, files) -> list:
        """Fill the fields from the first file; several files become a batch (one job each)."""
        paths = file_paths(files)
        keep = [update() for _ in FIELDS] + [update(), update(), update()]
        if not paths:
            return keep + ["no file to import"]
        loaded = []
        try:
            for path in paths:
                data = read_settings_file(self._readable(path))
                load_settings(data, name=Path(path).name)  # a bad file is named now, not at Generate
                loaded.append((Path(path).stem, data))
        except Exception as exc:
            return keep + [one_line(exc)]
        first = loaded[0][1]
        values = self.field_values(first)
        size = update(choices=size_choices(first.get("wan_model", "")), value=self._size(values))
        if len(loaded) == 1:
            return values + [first, [], size, f"imported {Path(paths[0]).name}"]
        batch = [[name, data] for name, data in loaded]
        return values + [first, batch, size,
                         f"imported {len(loaded)} files as a batch: Generate queues one job per file, each"
                         " with its own prompts, frames, size and seed, and this tab's model, backend,"
                         " preset, memory, LoRA, overlap, motion and retime settings; Clear batch to edit one"
                         " file"]

    def _size(self, values: list) -> str:
        f = self.fields(values)
        return size_for(f["model"], f["width"], f["height"])

    def clear_batch(self) -> tuple[list, str]:
        return [], "batch cleared: Generate renders the fields above"

    def save_settings(self, *args) -> tuple[Any, str]:
        *values, base = args
        try:
            settings = load_settings(self.settings_of(values, base), name="tab")
            data = settings.to_dict()
            if settings.seed_was_random:
                data["seed"] = -1  # a saved setup stays random; a render's own file records its seed
            ts = output.make_timestring()
            name = resolve_batch_name(settings.batch_name, ts, settings)
            folder = self.outdir / "wan-settings"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (f"{name}_settings.txt" if ts in name else f"{name}_{ts}_settings.txt")
            output.write_settings(path, data)
        except OSError as exc:
            return update(), f"error: cannot write the settings file: {exc.strerror or exc}"
        except Exception as exc:
            return update(), one_line(exc)
        return update(value=str(path), visible=True), f"saved {path}"

    def use_deforum_prompts(self, from_page: str) -> list:
        """Deforum's current prompts: from its tab in the page, else from the host's callable."""
        try:
            data = json.loads(from_page) if from_page else None
            if data is None and self.deforum_prompts is not None:
                data = self.deforum_prompts()
        except Exception as exc:
            return [update(), update(), update(), one_line(exc)]
        if not data:
            return [update(), update(), update(),
                    "Deforum's prompts are not available (is the Deforum extension installed?)"]
        if "prompts" not in data:  # a bare {frame: prompt} mapping
            data = {"prompts": data}
        text = prompts_text(data["prompts"])
        positive = data.get("animation_prompts_positive")
        negative = data.get("animation_prompts_negative")
        return [text, update() if positive is None else positive,
                update() if negative is None else negative, "loaded Deforum's prompts"]

    # --- small field handlers ------------------------------------------------------------
    def model_changed(self, model, width, height):
        """The fields that follow the model: its trained sizes, and the model values that an
        empty Steps / Guidance / Guidance 2 field stands for."""
        return (update(choices=size_choices(model), value=nearest_size(model, width, height)),
                update(label=sampling_label("steps", model)), update(label=sampling_label("guidance", model)),
                update(label=sampling_label("guidance_2", model)))

    def size_changed(self, size, width, height):
        wh = parse_size(size)
        if wh is None:  # custom: W/H stay as typed
            return update(), update()
        return wh[0], wh[1]

    def uploaded_path(self, value) -> Any:
        """An uploaded init image or soundtrack, kept in the output folder (where jobs may read it)."""
        path = file_path(value)
        if not path:
            return update()
        try:
            return str(keep_upload(self._readable(path), self.outdir))
        except (OSError, WanError):
            return update()

    def _readable(self, path: str) -> Path:
        """A file the browser hands over: only from gradio's upload folder or where jobs may read
        (a request naming any other server path is refused)."""
        found = find_inside(path, [upload_folder(), *input_roots(self.outdir)])
        if found is None:
            raise WanError(f"{Path(str(path)).name}: only uploaded files or files in the output folder are read")
        return found

    def download(self, model) -> str:
        """Fetch the chosen model and its continuation partner into the models folder."""
        return self.downloads.start(model_id(model))

    def stop_download(self) -> str:
        return self.downloads.stop()

    def refresh_models(self, model):
        self.installed = installed_models(self.models_dir)
        return update(choices=model_choices(self.installed), value=model_label(model_id(model), self.installed))

    # --- progress ----------------------------------------------------------------------
    def poll(self, view: dict | None) -> list:
        """Progress text, preview, video, folder, queue table; unchanged values are not resent."""
        view = dict(view or {})
        try:
            jobs = self.manager.list()
        except Exception as exc:
            return [one_line(exc), update(), update(), update(), update(), update(), update(), update(), view]
        job = _current_job(jobs)
        job_id = (job or {}).get("id")
        if view.get("job") != job_id:  # another job: clear what the last one showed
            view = {"job": job_id}
        new = {
            "progress": progress_text(job, jobs),
            "resumable": resumable(jobs),
            # the Status box follows the job to its end ("queued job X" does not stay)
            "status": job_status_line(job) if job and job["status"] != "queued" else None,
            "download": self.downloads.html(),
            "preview": (job or {}).get("preview") or None,
            "video": (job or {}).get("video") if job and job["status"] != "running" else None,
            "folder": shown_path((job or {}).get("run_dir") or ""),
            "jobs": jobs_table(jobs),
        }
        out = []
        for key in ("progress", "preview", "video", "folder", "jobs", "resumable", "status", "download"):
            value = new[key]
            if key in ("preview", "video") and value and not Path(value).is_file():
                value = None  # not on disk (not written yet, or deleted): show nothing rather than a broken file
            if key in view and view[key] == value or (key == "status" and value is None):
                out.append(update())  # unchanged: not resent (no redraw)
            else:
                out.append(update(choices=value, value=value[0] if value else None) if key == "resumable" else value)
                view[key] = value
        return out + [view]


def shown_path(path: str) -> str:
    """A folder as the tab shows it: relative to the working folder (the WebUI's) when inside it,
    as the WebUI shows its own output folders (outputs/img2img-images/...)."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def job_name(batch_name) -> str:
    """A readable job name: the batch name without its placeholders (Deforum_{timestring} -> Deforum)."""
    name = re.sub(r"[_-]?\{\w+\}", "", str(batch_name or "")).strip(" _-")
    return name or "wan"


def _current_job(jobs: list[dict]) -> dict | None:
    running = [j for j in jobs if j["status"] == "running"]
    if running:
        return running[0]
    return max(jobs, key=lambda j: j.get("created") or 0) if jobs else None


def progress_text(job: dict | None, jobs: list[dict]) -> str:
    if job is None:
        return "idle: no jobs yet"
    p = job.get("progress") or {}
    name = f"{job.get('name') or 'job'} [{job['id'][:8]}]"  # the id: which job "done" is about
    status = job["status"]
    windows, frames = p.get("windows", 0), p.get("frames", 0)
    if status == "running":
        phase = p.get("phase") or "starting"
        text = f"{name}: {phase}"
        if windows:
            text += f" - window {min(p.get('window', 0) + 1, windows)}/{windows}"
        if p.get("steps"):
            text += f", step {p.get('step', 0)}/{p['steps']}"
        if frames:
            text += f", frames {p.get('frames_written', 0)}/{frames}"
    elif status == "queued":
        text = f"{name}: queued"
    elif status == "done":
        text = f"{name}: done - {p.get('frames_written', 0)} frames"
    elif status == "failed":
        text = f"{name}: failed - {job.get('error') or job.get('message') or 'no reason given'}"
    else:
        text = f"{name}: {status} after {p.get('frames_written', 0)} of {frames} frames"
    waiting = sum(1 for j in jobs if j["status"] == "queued")
    return text + (f" ({waiting} queued)" if waiting else "")


def resumable(jobs: list[dict], limit: int = 20) -> list[str]:
    """The Resume list: interrupted or failed jobs that wrote frames, the latest first."""
    found = [j for j in sorted(jobs, key=lambda j: j.get("created") or 0, reverse=True)
             if j["status"] in ("interrupted", "failed") and j.get("timestring") and j.get("settings_file")]
    return [f"{j['id']} {j.get('name') or 'job'} ({j['status']}, {j['progress'].get('frames_written', 0)}/"
            f"{j['progress'].get('frames', 0)} frames)" for j in found[:limit]]


def job_status_line(job: dict) -> str:
    """The Status box once a job runs and ends: one line."""
    name = f"job {job['id']}"
    status, p = job["status"], job.get("progress") or {}
    if status == "running":
        return f"{name} is rendering"
    if status == "done":
        return f"{name} done: {p.get('frames_written', 0)} frames" + (f", video {job['video']}" if job.get("video")
                                                                     else "")
    if status == "failed":
        return f"{name} failed: {job.get('error') or job.get('message') or 'no reason given'}"
    return f"{name} {status}: {job.get('message') or ''}".rstrip(": ")


def jobs_table(jobs: list[dict], limit: int = 10) -> str:
    if not jobs:
        return ""
    rows = ["| job | name | status | frames |", "|---|---|---|---|"]
    for job in sorted(jobs, key=lambda j: j.get("created") or 0, reverse=True)[:limit]:
        p = job.get("progress") or {}
        name = str(job.get("name") or "").replace("|", "/")
        rows.append(f"| {job['id'][:8]} | {name} | {job['status']} |"
                    f" {p.get('frames_written', 0)}/{p.get('frames', 0)} |")
    return "\n".join(rows)


def build_ui(manager, *, defaults: dict | None = None, deforum_prompts: Callable[[], Any] | None = None,
             models_dir: str | None = None, outdir: str | None = None, tasks=None) -> gr.Blocks:
    """The Wan tab. ``defaults``: settings for the first view (e.g. the host's default backend);
    ``deforum_prompts``: returns Deforum's current prompts (shows the "Use Deforum's prompts" button);
    ``tasks``: the host's task progress (task_queued/task_jobs, host_bridge.ProgressBridge)."""
    tab = WanTab(manager, defaults=defaults, deforum_prompts=deforum_prompts, models_dir=models_dir,
                 outdir=outdir, tasks=tasks)
    start = dict(zip(FIELDS, tab.field_values(tab.initial)))
    c: dict[str, Any] = {}
    with blocks(analytics_enabled=False, title="Wan", css=CSS) as demo:
        base = gr.State(dict(tab.initial))
        batch = gr.State([])
        view = gr.State({})
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    c["import"] = component(gr.File, label="Import Deforum settings (one, or many for a batch)",
                                            file_count="multiple", file_types=[".txt", ".json"],
                                            type="filepath", height=110, elem_id="wan_import")
                with gr.Row():
                    c["clear_batch"] = gr.Button("Clear batch", elem_id="wan_clear_batch")
                    c["save"] = gr.Button("Save settings", elem_id="wan_save")
                    c["deforum"] = gr.Button("Use Deforum's prompts", elem_id="wan_use_deforum",
                                             visible=deforum_prompts is not None)
                c["prompts"] = component(gr.Textbox, label="Prompt schedule (Deforum JSON: frame -> prompt,"
                                         " --neg starts the negative)", lines=8, max_lines=30,
                                         value=start["prompts"], elem_id="wan_prompts")
                with gr.Row():
                    c["positive"] = gr.Textbox(label="Added before every prompt", value=start["positive"],
                                               elem_id="wan_positive")
                    c["negative"] = gr.Textbox(label="Added to every negative prompt", value=start["negative"],
                                               elem_id="wan_negative")
                with gr.Row():
                    c["model"] = component(gr.Dropdown, **wan_widget("model", start, choices=model_choices(tab.installed)),
                                           allow_custom_value=True, scale=3, elem_id="wan_model")
                    c["backend"] = component(gr.Dropdown, **wan_widget("backend", start), scale=1, elem_id="wan_backend")
                    c["refresh"] = component(gr.Button, value="Refresh models", size="sm", scale=1,
                                             elem_id="wan_refresh_models")
                    c["download"] = component(gr.Button, value="Download", size="sm", scale=1,
                                              elem_id="wan_download")
                    c["stop_download"] = component(gr.Button, value="Stop download", size="sm", scale=1,
                                                   elem_id="wan_stop_download")
                c["download_bar"] = gr.HTML(elem_id="wan_download_bar")
                with gr.Row():
                    c["size"] = gr.Dropdown(label="Size", choices=size_choices(start["model"]),
                                            value=size_for(start["model"], start["width"], start["height"]),
                                            elem_id="wan_size")
                    c["width"] = gr.Number(label="Width (W)", value=start["width"], precision=0, elem_id="wan_width")
                    c["height"] = gr.Number(label="Height (H)", value=start["height"], precision=0,
                                            elem_id="wan_height")
                with gr.Row():
                    c["fps"] = gr.Number(label="Output fps", value=start["fps"], elem_id="wan_fps")
                    c["frames"] = gr.Number(label="Frames (max_frames)", value=start["frames"], precision=0,
                                            elem_id="wan_frames")
                    c["clip_duration"] = gr.Number(**wan_widget("clip_duration", start), elem_id="wan_clip_duration")
                with gr.Row():
                    for name in ("steps", "guidance", "guidance_2"):
                        c[name] = gr.Textbox(**wan_widget(name, start, label=sampling_label(name, start["model"])),
                                             elem_id=f"wan_{name}")
                with gr.Row():
                    c["deforum_sampling"] = gr.Checkbox(**wan_widget("deforum_sampling", start),
                                                        elem_id="wan_deforum_sampling")
                    c["cfg"] = gr.Textbox(label="Deforum CFG schedule (cfg_scale_schedule, or a number)",
                                          value=start["cfg"], elem_id="wan_cfg")
                with gr.Row():
                    c["seed"] = gr.Number(label="Seed (-1 = random)", value=start["seed"], precision=0,
                                          elem_id="wan_seed")
                    c["seed_behavior"] = gr.Dropdown(label="Seed behaviour", choices=list(SEED_BEHAVIORS),
                                                     value=start["seed_behavior"], elem_id="wan_seed_behavior")
                    c["seed_iter_n"] = gr.Number(label="seed_iter_N", value=start["seed_iter_n"], precision=0,
                                                 elem_id="wan_seed_iter_n")
                with gr.Row():
                    c["overlap"] = gr.Number(**wan_widget("overlap", start), precision=0, elem_id="wan_overlap")
                    c["motion_strength"] = gr.Number(**wan_widget("motion_strength", start),
                                                     elem_id="wan_motion_strength")
                    c["color_coherence"] = gr.Dropdown(label="Color coherence", choices=list(COLOR_MODES),
                                                       value=start["color_coherence"], elem_id="wan_color")
                    c["retime"] = gr.Dropdown(**wan_widget("retime", start), elem_id="wan_retime")
                with gr.Row():
                    c["wan_camera"] = component(gr.Dropdown, **wan_widget("wan_camera", start), elem_id="wan_camera")
                with gr.Row():
                    c["preset"] = component(gr.Dropdown, **wan_widget("preset", start), elem_id="wan_preset")
                with gr.Accordion("Memory", open=False):
                    with gr.Row():
                        # "none"/off are "no opinion" (presets.explicit_overrides): low-vram keeps its offload.
                        c["offload"] = gr.Dropdown(**wan_widget("offload", start), elem_id="wan_offload")
                        c["vae_tiling"] = gr.Checkbox(**wan_widget("vae_tiling", start), elem_id="wan_vae_tiling")
                    with gr.Row():
                        c["dtype"] = gr.Dropdown(**wan_widget("dtype", start), elem_id="wan_dtype")
                        c["gpus"] = component(gr.Number, **wan_widget("gpus", start), precision=0, elem_id="wan_gpus")
                with gr.Accordion("LoRAs", open=False):
                    c["loras"] = gr.Textbox(**wan_widget("loras", start), lines=3, elem_id="wan_loras")
                with gr.Accordion("Init image and soundtrack", open=False):
                    with gr.Row():
                        c["init_image"] = gr.Textbox(label="Init image (path; empty = text-to-video start)",
                                                     value=start["init_image"], elem_id="wan_init_image")
                        c["init_upload"] = component(gr.Image, label="Upload init image", type="filepath",
                                                     sources=["upload"], elem_id="wan_init_upload")
                    with gr.Row():
                        c["soundtrack"] = gr.Textbox(label="Soundtrack (audio file path; empty = none)",
                                                     value=start["soundtrack"], elem_id="wan_soundtrack")
                        c["soundtrack_upload"] = component(gr.File, label="Upload soundtrack", type="filepath",
                                                           file_types=["audio"], elem_id="wan_soundtrack_upload")
                c["batch_name"] = gr.Textbox(label="Batch name (output folder; {timestring}, {seed} ...)",
                                             value=start["batch_name"], elem_id="wan_batch_name")
            with gr.Column(scale=2):
                with gr.Row():
                    c["plan"] = gr.Button("Plan", elem_id="wan_plan")
                    c["camera"] = gr.Button("Preview camera", elem_id="wan_preview_camera")
                    c["generate"] = gr.Button("Generate", variant="primary", elem_id="wan_generate")
                    c["interrupt"] = gr.Button("Interrupt", elem_id="wan_interrupt")
                    c["skip"] = gr.Button("Skip", elem_id="wan_skip")
                with gr.Row():
                    c["resume_job"] = component(gr.Dropdown, label="Interrupted or failed job", choices=[],
                                                value=None, allow_custom_value=True, elem_id="wan_resume_job")
                    c["resume"] = gr.Button("Resume", elem_id="wan_resume")
                c["status"] = component(gr.Textbox, label="Status", interactive=False, lines=1, max_lines=3,
                                        elem_id="wan_status")
                c["progress"] = component(gr.Textbox, label="Progress", interactive=False, lines=1, max_lines=2,
                                          value="idle", elem_id="wan_progress")
                c["plan_view"] = gr.HTML(elem_id="wan_plan_view")
                with gr.Accordion("Plan as text", open=False):
                    c["plan_out"] = component(gr.Textbox, label="Plan", interactive=False, lines=4, max_lines=40,
                                              elem_id="wan_plan_out")
                c["preview"] = component(gr.Image, label="Last finished frame", type="filepath",
                                         interactive=False, height=320, elem_id="wan_preview")
                c["video"] = component(gr.Video, label="Result", interactive=False, height=320,
                                       elem_id="wan_video")
                c["folder"] = component(gr.Textbox, label="Output folder", interactive=False, elem_id="wan_folder")
                c["jobs"] = gr.Markdown(elem_id="wan_jobs")
                c["saved"] = component(gr.File, label="Saved settings file", interactive=False, visible=False,
                                       elem_id="wan_saved")
                c["deforum_js"] = gr.Textbox(visible=False, elem_id="wan_deforum_js")
                c["task"] = gr.Textbox(visible=False, elem_id="wan_task_id")  # set by TASK_JS

        fields = [c[name] for name in FIELDS]
        status = c["status"]
        on(c["plan"].click, tab.plan, fields + [base, batch], [c["plan_out"], c["plan_view"], status])
        on(c["camera"].click, tab.preview_camera, fields + [base, batch], [c["video"], status])
        on(c["generate"].click, tab.generate_task, [c["task"], *fields, base, batch], [status], js=TASK_JS)
        on(c["interrupt"].click, tab.interrupt, [], [status], queue=False)
        on(c["skip"].click, tab.skip, [], [status], queue=False)
        on(c["resume"].click, tab.resume_task, [c["task"], c["resume_job"]], [status], js=TASK_JS)
        on(c["import"].upload, tab.import_files, [c["import"]], fields + [base, batch, c["size"], status])
        on(c["clear_batch"].click, tab.clear_batch, [], [batch, status])
        on(c["save"].click, tab.save_settings, fields + [base], [c["saved"], status])
        on(c["deforum"].click, tab.use_deforum_prompts, [c["deforum_js"]],
           [c["prompts"], c["positive"], c["negative"], status], js=DEFORUM_PROMPTS_JS)
        on(c["model"].change, tab.model_changed, [c["model"], c["width"], c["height"]],
           [c["size"], c["steps"], c["guidance"], c["guidance_2"]])
        on(c["size"].change, tab.size_changed, [c["size"], c["width"], c["height"]], [c["width"], c["height"]])
        on(c["init_upload"].upload, tab.uploaded_path, [c["init_upload"]], [c["init_image"]])
        on(c["soundtrack_upload"].upload, tab.uploaded_path, [c["soundtrack_upload"]], [c["soundtrack"]])
        on(c["refresh"].click, tab.refresh_models, [c["model"]], [c["model"]])
        on(c["download"].click, tab.download, [c["model"]], [status])
        on(c["stop_download"].click, tab.stop_download, [], [status], queue=False)
        poll(demo, tab.poll, [view],
             [c["progress"], c["preview"], c["video"], c["folder"], c["jobs"], c["resume_job"], status,
              c["download_bar"], view],
             POLL_SECONDS)
    demo.wan_tab = tab  # for tests and the host
    demo.wan_components = c
    return demo


__all__ = ["build_ui", "WanTab", "CSS", "CUSTOM_SIZE"]
