"""The Wan tab's handlers: ``WanTab``, one method per button or field event, called by the
gradio wiring (tab_layout.build_ui) and by tests without a browser. Every handler turns a user
error into one status line; nothing shows a traceback in the tab.
"""
from __future__ import annotations

import hashlib
import html
import json
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..config.memory_plan import format_memory, memory_parts, memory_summary
from ..config.planner import format_plan, make_plan
from ..config.settings import load_settings, read_settings_file, resolve_batch_name
from ..errors import SettingsError, WanError
from ..models.file_choices import transformer_files
from ..models.registry import MODELS
from ..models.weights import disk_size, locate_weights, resolve_models_dir
from ..render.camera_preview import prune_previews, write_preview
from ..render.inputs import find_inside, inline_manifest, input_roots
from ..render.job import CheckedJob, JobSpec, check_job
from ..render.names import make_timestring, write_settings
from ..service.paths import keep_upload
from .depth_needs import DOWNLOAD_DEPTH, depth_to_fetch, missing_message
from .downloads import Downloads
from .fields import (
    FIELDS,
    WAN_FIELDS,
    fields_to_settings,
    manifest_fields,
    model_choices,
    model_id,
    model_label,
    nearest_size,
    parse_keyframes,
    parse_size,
    prompts_text,
    sampling_label,
    settings_to_fields,
    size_choices,
    size_for,
    size_note,
)
from .gradio_compat import file_path, file_paths, received_upload, update
from .official import OfficialSetups
from .plan_view import plan_html
from .progress_text import current_job, job_name, job_status_line, jobs_table, progress_text, resumable, shown_path
from .source_strip import source_strips

PREVIEW_SIDE = 384  # px: the camera preview's frames (seconds on a CPU; the camera scales with them)
PREVIEW_FRAMES = 600  # the most frames a preview shows: a 100,000-frame file is not written out as PNGs
PREVIEWS_KEPT = 5  # the newest previews kept in <outdir>/wan-camera; older ones are deleted

# A first render that works on the model's trained size, with no camera (Deforum's default is
# 2D with a slow zoom); everything else is Deforum's default.
STARTER_SETTINGS: dict = {
    "W": 832, "H": 480, "fps": 16, "max_frames": 81, "steps": 25, "cfg_scale_schedule": "0: (7)",
    "seed": -1, "batch_name": "Wan_{timestring}", "animation_mode": "None",
    "prompts": {"0": "a lighthouse on a cliff at dawn, waves crashing --neg blurry, low quality",
                "48": "the lighthouse at night, its beam sweeping through fog"},
}


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


def listed_files(models_dir: str | None) -> dict[str, str]:
    """The Wan transformer files of the model folders (the host's own, in Forge Neo): name -> label."""
    try:
        return {choice.name: choice.label for choice in transformer_files(models_dir)}
    except OSError:  # an unreadable folder: no files listed
        return {}


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
        self.files = listed_files(self.models_dir)
        self.downloads = Downloads(resolve_models_dir(self.models_dir))
        # the official code's setup runs with the worker's Python and packages, as a render does
        self.official = OfficialSetups(resolve_models_dir(self.models_dir), getattr(manager, "python", None)
                                       or sys.executable, getattr(manager, "env", None))

    # --- helpers -----------------------------------------------------------------------
    def fields(self, values) -> dict:
        return dict(zip(FIELDS, values, strict=True))  # a wiring mistake fails loudly

    def field_values(self, settings: dict) -> list:
        """Gradio values for the field components (the model shown with its install mark)."""
        shown = settings_to_fields(settings)
        shown["model"] = model_label(shown["model"], self.installed, self.files)
        return [shown[name] for name in FIELDS]

    def settings_of(self, values, base: dict | None) -> dict:
        return fields_to_settings(self.fields(values), base or {})

    def batch_settings(self, values, batch: list) -> list[tuple[str, dict]]:
        """Each imported file with this tab's Wan fields applied (fields.WAN_FIELDS)."""
        fields = self.fields(values)
        return [(name, fields_to_settings(fields, data, only=WAN_FIELDS)) for name, data in batch]

    # --- plan / generate / stop ----------------------------------------------------------
    def plan(self, *args) -> tuple[str, str, str]:
        """(the plan as text, as a timeline and table, the status line)."""
        *values, base, batch = args
        try:
            if batch:
                return self._plan_batch(values, batch)
            checked = self._check(self.settings_of(values, base), "tab")
            missing = missing_message(checked.settings, self.models_dir, checked.plan)
        except Exception as exc:
            return "", "", one_line(exc)
        plan = checked.plan
        f = self.fields(values)
        status = (f"plan: {len(plan.windows)} windows, {plan.max_frames} frames at {plan.fps:g} fps,"
                  f" {size_note(plan, f['width'], f['height'])}"
                  + (f", {len(plan.warnings)} warnings (listed under the table)" if plan.warnings else ""))
        text, view = self._plan_views(checked)
        if missing:  # what Generate needs first, said before the table
            return (f"missing: {missing}\n\n{text}", f"<p><b>missing:</b> {html.escape(missing)}</p>{view}",
                    f"{status}; missing: {missing}")
        return text, view, status

    def preview_camera(self, *args) -> tuple[Any, str]:
        """Deforum's camera on the init image (or a grid) as an mp4, in seconds, before any GPU time:
        the first PREVIEW_FRAMES frames at most."""
        *values, base, _batch = args
        try:
            checked = self._check(self.settings_of(values, base), "tab")
            settings = checked.settings  # its init image confined
            if settings.camera is None or settings.camera.mode == "None":
                mode = self.fields(values).get("animation_mode")
                return update(), (f"no camera to preview: Animation mode is {mode}; choose 2D or 3D for"
                                  " Deforum's camera moves")
            missing = missing_message(settings, self.models_dir)
            if missing:
                return update(), f"error: {missing}"
            shown = min(settings.max_frames, PREVIEW_FRAMES)
            parent = self.outdir / "wan-camera"
            prune_previews(parent, PREVIEWS_KEPT - 1)
            video, notes = write_preview(settings, parent / make_timestring(), settings.init_image,
                                         frames=(0, shown - 1), models_dir=self.models_dir, max_side=PREVIEW_SIDE)
        except Exception as exc:
            return update(), one_line(exc)
        count = (f"{shown} frames" if shown == settings.max_frames
                 else f"the first {shown} of {settings.max_frames} frames (at most {PREVIEW_FRAMES} are previewed)")
        return str(video), "; ".join([f"camera preview: {count} (no diffusion)", *notes,
                                      f"Wan {size_note(checked.plan, settings.W, settings.H)}"])

    def _check(self, settings: dict, name: str) -> CheckedJob:
        """What Generate would queue, checked by the same rules (the plan, the input files)."""
        return check_job(JobSpec(settings, name), self.outdir, models_dir=self.models_dir)

    def _plan_views(self, checked: CheckedJob, strips: bool = True) -> tuple[str, str]:
        """The plan as text with each model's memory lines under it, and as HTML with a short
        memory line (the weight files' headers only: nothing is loaded)."""
        memory = memory_parts(checked.settings, self.models_dir, plan=checked.plan)
        text = "\n".join([format_plan(checked.plan), *format_memory(memory)])
        view = plan_html(checked.plan, memory_summary(memory))
        return text, view + (source_strips(checked.plan) if strips else "")

    def _plan_batch(self, values, batch) -> tuple[str, str, str]:
        parts, views, failed = [], [], 0
        for name, data in self.batch_settings(values, batch):
            try:
                text, view = self._plan_views(self._check(data, name), strips=False)
                parts.append(f"== {name} ==\n{text}")
                views.append(f"<h4>{html.escape(name)}</h4>{view}")
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
                ids = self._queue(self.batch_settings(values, batch))
                return f"queued {len(ids)} jobs: {', '.join(ids)}"
            settings = self.settings_of(values, base)
            ids = self._queue([(job_name(self.fields(values).get("batch_name")), settings)], label="tab")
            return f"queued job {ids[0]}"
        except Exception as exc:
            return one_line(exc)
        finally:
            self._task_jobs(task, ids)

    def _queue(self, items: list[tuple[str, dict]], label: str | None = None) -> list[str]:
        """Queue ``[(name, settings), ...]`` checked once, by the queue's own check; a job whose
        3D depth warping needs a depth model not on disk is refused here, in the tab's words
        (``label`` names a job in them), rather than failing in the worker a second later."""
        checked = self.manager.check_batch([(label or name, data) for name, data in items])
        for job in checked:
            missing = missing_message(job.settings, self.models_dir, job.plan)
            if missing:
                raise WanError(f"{job.spec.name or 'tab'}: {missing}")
        return self.manager.queue_checked([replace(job, spec=replace(job.spec, name=name))
                                           for job, (name, _) in zip(checked, items)])

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
        loaded, needs = [], None  # needs: the first file's missing depth model, said with the import
        parseq, first_read = "", None  # the first file's Parseq manifest (said with the import), its settings
        try:
            for path in paths:
                # a manifest file it names is read now, from the folders a job may read
                data = inline_manifest(read_settings_file(self._readable(path)), input_roots(self.outdir), Path(path).name)
                read = load_settings(data, name=Path(path).name)  # a bad file is named now, not at Generate
                loaded.append((Path(path).stem, data))
                needs = needs or self._depth_note(read)
                if len(loaded) == 1:
                    first_read = read
                    parseq = read.parseq.summary() if read.parseq is not None else ""
        except Exception as exc:
            return keep + [one_line(exc)]
        first = loaded[0][1]
        values = self.field_values(first)
        f = self.fields(values)
        problem = ""
        try:
            checked = self._check(first, "tab")
        except WanError as exc:  # a file naming a video or image not here still imports, and says so
            checked, problem = None, " ".join(str(exc).split())
        except Exception:  # an incomplete file: Plan names the problem
            checked = None
        rendered = size_note(checked.plan, f["width"], f["height"]) if checked else \
            self._unchecked_size(first, f) if problem else ""
        size = update(choices=size_choices(first.get("wan_model", "")), value=self._size(values),
                      info=rendered or None)
        if len(loaded) == 1:
            overridden = manifest_fields(values, checked.settings if checked else first_read)
            return values + [first, [], size, f"imported {Path(paths[0]).name}" + (f"; {parseq}" if parseq else "")
                             + (f"; {overridden}" if overridden else "")
                             + (f"; {rendered}" if rendered else "") + (f"; first: {needs}" if needs else "")
                             + (f"; before Generate: {problem}" if problem and not needs else "")]
        batch = [[name, data] for name, data in loaded]
        return values + [first, batch, size,
                         f"imported {len(loaded)} files as a batch: Generate queues one job per file, each"
                         " with its own prompts, frames, size and seed, and this tab's model, backend,"
                         " preset, memory, LoRA, overlap, motion and retime settings; Clear batch to edit one"
                         " file"]

    def _depth_note(self, settings) -> str | None:
        try:
            return missing_message(settings, self.models_dir)
        except WanError as exc:  # a depth_algorithm no model stands for: said, the import stands
            return str(exc)

    def _unchecked_size(self, data: dict, fields: dict) -> str:
        """The size note of settings whose input files are not here (the size does not depend on
        them); "" where they do not plan either."""
        try:
            return size_note(make_plan(load_settings(data, name="tab")), fields["width"], fields["height"])
        except Exception:
            return ""

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
            ts = make_timestring()
            name = resolve_batch_name(settings.batch_name, ts, settings)
            folder = self.outdir / "wan-settings"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (f"{name}_settings.txt" if ts in name else f"{name}_{ts}_settings.txt")
            write_settings(path, data)
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

    def uploaded_image(self, value) -> Any:
        """An uploaded init image kept in the output folder; the field gets its server name."""
        return self._keep(value, "image")

    def uploaded_keyframe(self, value, frame, lines) -> Any:
        """An uploaded guided image kept in the output folder, added as ``frame: name`` (a frame
        already given gets the new image)."""
        try:  # the lines first: nothing is kept for an upload that cannot be added
            at = str(int(frame or 0))
            given = parse_keyframes(lines)
        except (TypeError, ValueError, SettingsError) as exc:
            return update(), one_line(exc)
        name, said = self._keep(value, "image")
        if not isinstance(name, str):
            return update(), said
        given[at] = name
        return "\n".join(f"{k}: {v}" for k, v in given.items()), f"{said}; guided image at frame {at}"

    def uploaded_soundtrack(self, value) -> Any:
        return self._keep(value, "audio")

    def uploaded_video(self, value) -> Any:
        """An uploaded video (Video Input's, or the control video) kept in the output folder."""
        return self._keep(value, "video")

    def _keep(self, value, kind: str) -> Any:
        path = file_path(value)
        if not path:
            return update(), update()
        try:
            name = keep_upload(self._readable(path), self.outdir, kind)
        except (OSError, WanError) as exc:
            return update(), one_line(exc)
        return name, f"uploaded as {name} (in the output folder)"

    def _readable(self, path: str) -> Path:
        """A file an event hands over: an upload this server received (in gradio's upload folder,
        no link out) or a file where jobs may read; any other server path is refused."""
        found = received_upload(path) or find_inside(path, input_roots(self.outdir))
        if found is None:
            raise WanError(f"{Path(str(path)).name}: only uploaded files or files in the output folder are read")
        return found

    def download(self, model) -> tuple[str, Any]:
        """Fetch the chosen model and its continuation partner into the models folder; the line
        and the Stop download button (shown while it runs)."""
        line = self.downloads.start(model_id(model))
        return line, update(visible=self.downloads.running)

    def download_depth(self, *args) -> tuple[str, Any]:
        """Fetch the depth model the fields' 3D camera names (its depth_algorithm, or
        wan_depth_model); the line and the Stop download button, as Download gives them."""
        *values, base = args
        try:
            spec = depth_to_fetch(load_settings(self.settings_of(values, base), name="tab"))
        except Exception as exc:
            return one_line(exc), update(visible=self.downloads.running)
        if spec is None:
            return (f"{DOWNLOAD_DEPTH}: this camera is not 3D, so it needs no depth model",
                    update(visible=self.downloads.running))
        line = self.downloads.start(spec.id)
        return line, update(visible=self.downloads.running)

    def stop_download(self) -> str:
        return self.downloads.stop()

    def official_setup(self, name) -> str:
        """Set up the official Wan code ``name`` (clone, requirements, import check): the line."""
        return self.official.start("setup", name)

    def official_update(self, name) -> str:
        return self.official.start("update", name)

    def official_remove(self, name) -> str:
        return self.official.remove(name)

    def official_status(self, name) -> str:
        return self.official.status(name)

    def refresh_models(self, model):
        self.installed = installed_models(self.models_dir)
        self.files = listed_files(self.models_dir)
        return update(choices=model_choices(self.installed, self.files),
                      value=model_label(model_id(model), self.installed, self.files))

    # --- progress ----------------------------------------------------------------------
    @staticmethod
    def _shown(key: str, value) -> Any:
        """A poll value as its component's update."""
        if key == "resumable":
            return update(choices=value, value=value[0] if value else None)
        if key == "downloading":
            return update(visible=bool(value))
        if key == "drift":  # shown only for a finished job that drew one
            return update(value=value, visible=bool(value))
        return value

    def _drift_chart(self, job: dict | None) -> str | None:
        """A finished job's drift chart, when it is a file inside the output folder (as gradio
        serves only that folder's files)."""
        if not job or job["status"] != "done" or not job.get("drift_chart"):
            return None
        found = find_inside(job["drift_chart"], [self.outdir.resolve()])
        return str(found) if found and found.suffix.lower() == ".png" else None

    def poll(self, view: dict | None) -> list:
        """Progress text, preview, video, the drift chart, folder, queue table, Resume list, the
        job's line, the download bar (and the official code's setup) and whether Stop download shows;
        unchanged values are not resent. It writes no other line: what an import, a save or a
        Download said stays. ``view``: the last call's memo for this page (the job shown and a
        digest of each value), returned last."""
        view = dict(view or {})
        try:
            jobs = self.manager.list()
        except Exception as exc:
            return [one_line(exc)] + [update() for _ in range(9)] + [view]
        job = current_job(jobs)
        job_id = (job or {}).get("id")
        if view.get("job") != job_id:  # another job: clear what the last one showed
            view = {"job": job_id}
        offered = resumable(jobs)
        can_resume = bool(job_id) and any(label.split(" ", 1)[0] == job_id for label in offered)
        new = {
            "progress": progress_text(job, jobs, can_resume),
            "resumable": offered,
            # the Job line follows the job to its end ("queued job X" does not stay)
            "status": job_status_line(job, can_resume) if job and job["status"] != "queued" else None,
            "download": self.downloads.html() + self.official.html(),
            "downloading": self.downloads.running,
            "preview": (job or {}).get("preview") or None,
            "video": (job or {}).get("video") if job and job["status"] != "running" else None,
            "drift": self._drift_chart(job),
            "folder": shown_path((job or {}).get("run_dir") or ""),
            "jobs": jobs_table(jobs),
        }
        out = []
        for key in ("progress", "preview", "video", "drift", "folder", "jobs", "resumable", "status", "download",
                    "downloading"):
            value = new[key]
            if key in ("preview", "video") and value and not Path(value).is_file():
                value = None  # not on disk (not written yet, or deleted): show nothing rather than a broken file
            digest = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
            if view.get(key) == digest or (key == "status" and value is None):
                out.append(update())  # unchanged: not resent (no redraw)
            else:
                out.append(self._shown(key, value))
                view[key] = digest
        return out + [view]
