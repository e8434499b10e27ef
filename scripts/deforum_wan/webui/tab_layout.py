"""The Wan tab's layout: one gradio Blocks for A1111 (gradio 3.41), Forge (4.40) and standalone (6.x).

``build_ui(manager)`` lays out the fields (fields.FIELDS, in order), the Plan / Generate /
Interrupt / Skip buttons, import and save of Deforum settings files, and a polled progress
panel, and wires each event to its ``WanTab`` handler (tab_handlers.py).
"""
from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from ..config.keys import COLOR_MODES
from ..config.schedule import SEED_BEHAVIORS
from ..models.official_code import CODES as OFFICIAL_CODES
from .depth_needs import DEPTH_INFO, DEPTH_WARPING, DOWNLOAD_DEPTH
from .fields import (
    ANIMATION_MODES,
    CONTROL_CHOICES,
    FIELDS,
    model_choices,
    sampling_label,
    size_choices,
    size_for,
    wan_widget,
)
from .gradio_compat import blocks, component, on, refuse_named_files
from .page_poll import poll_button, wire_poll
from .tab_handlers import WanTab

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
/* the button the page's poll timer clicks (webui/page_poll.py) */
#wan_poll { display: none !important; }
"""
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
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    c["import"] = refuse_named_files(component(
                        gr.File, label="Import Deforum settings (one, or many for a batch)", file_count="multiple",
                        file_types=[".txt", ".json"], type="filepath", height=110, elem_id="wan_import"))
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
                    c["model"] = component(gr.Dropdown, **wan_widget("model", start, choices=model_choices(tab.installed, tab.files)),
                                           allow_custom_value=True, scale=3, elem_id="wan_model")
                    c["backend"] = component(gr.Dropdown, **wan_widget("backend", start), scale=1, elem_id="wan_backend")
                    c["refresh"] = component(gr.Button, value="Refresh models", size="sm", scale=1,
                                             elem_id="wan_refresh_models")
                    c["download"] = component(gr.Button, value="Download", size="sm", scale=1,
                                              elem_id="wan_download")
                    # beside Download, shown only while a download runs (the poll shows and hides it)
                    c["stop_download"] = component(gr.Button, value="Stop download", size="sm", scale=1,
                                                   visible=False, elem_id="wan_stop_download")
                with gr.Row():  # Wan 2.2 A14B given as two expert files
                    c["model_low"] = gr.Textbox(**wan_widget("model_low", start), elem_id="wan_model_low")
                with gr.Accordion("Official Wan code (the official backend)", open=False,
                                  elem_id="wan_official"):
                    with gr.Row():  # cloned at the pinned commit, its requirements beside it, checked
                        c["official_code"] = component(gr.Dropdown, label="Code", choices=list(OFFICIAL_CODES),
                                                       value="wan2.1", scale=1, elem_id="wan_official_code")
                        for action, label in (("setup", "Set up"), ("update", "Update"), ("remove", "Remove"),
                                              ("status", "Status")):
                            c[f"official_{action}"] = component(gr.Button, value=label, size="sm", scale=1,
                                                                elem_id=f"wan_official_{action}")
                    # the buttons' own line; Set up's and Update's progress and outcome show in the bar below
                    c["official_line"] = component(gr.Textbox, label="Official code", interactive=False, lines=1,
                                                   max_lines=2, elem_id="wan_official_line")
                # the Download's own line: the poll never writes it (a start error stays)
                c["download_status"] = component(gr.Textbox, label="Download", interactive=False, lines=1,
                                                 max_lines=2, elem_id="wan_download_status")
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
                    c["animation_mode"] = gr.Dropdown(label="Animation mode (2D/3D: Deforum's camera)",
                                                      choices=list(ANIMATION_MODES), value=start["animation_mode"],
                                                      elem_id="wan_animation_mode")
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
                with gr.Row():  # what a 3D file's depth warping needs: its depth model, or a flat scene
                    c["depth_warping"] = gr.Checkbox(label=DEPTH_WARPING, info=DEPTH_INFO, value=start["depth_warping"],
                                                     elem_id="wan_depth_warping")
                    c["download_depth"] = component(gr.Button, value=DOWNLOAD_DEPTH, size="sm", scale=0,
                                                    elem_id="wan_download_depth")
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
                        c["keyframes"] = gr.Textbox(
                            label="Guided images: one 'frame: image' per line (a frame or an expression of max_f;"
                                  " 2D/3D), each pinned to its frame", value=start["keyframes"], lines=3,
                            elem_id="wan_keyframes")
                        with gr.Column():
                            c["keyframe_upload"] = component(gr.Image, label="Add a guided image", type="filepath",
                                                             sources=["upload"], elem_id="wan_keyframe_upload")
                            c["keyframe_frame"] = component(gr.Number, label="at frame", value=0, precision=0,
                                                            elem_id="wan_keyframe_frame")
                    with gr.Row():
                        c["soundtrack"] = gr.Textbox(label="Soundtrack (audio file path; empty = none)",
                                                     value=start["soundtrack"], elem_id="wan_soundtrack")
                        c["soundtrack_upload"] = refuse_named_files(component(
                            gr.File, label="Upload soundtrack", type="filepath", file_types=["audio"],
                            elem_id="wan_soundtrack_upload"))
                with gr.Accordion("Video (Video Input, control video)", open=False):
                    with gr.Row():
                        c["video_path"] = gr.Textbox(label="Video (path: Video Input's source, or the control video)",
                                                value=start["video_path"], elem_id="wan_video_path")
                        c["video_upload"] = refuse_named_files(component(
                            gr.File, label="Upload video", type="filepath", file_types=["video"],
                            elem_id="wan_video_upload"))
                    c["control"] = gr.Dropdown(**wan_widget("control", start, choices=list(CONTROL_CHOICES)),
                                               elem_id="wan_control")
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
                    # wide enough for its whole label (id, name, frames kept)
                    c["resume_job"] = component(gr.Dropdown, label="Interrupted or failed job", choices=[],
                                                value=None, allow_custom_value=True, scale=4, min_width=320,
                                                elem_id="wan_resume_job")
                    c["resume"] = component(gr.Button, value="Resume", scale=1, min_width=90, elem_id="wan_resume")
                # one line per kind of action: the poll writes only the job's
                c["job_status"] = component(gr.Textbox, label="Job", interactive=False, lines=1, max_lines=3,
                                            elem_id="wan_job_status")
                c["status"] = component(gr.Textbox, label="Settings (import, save, plan, camera)",
                                        interactive=False, lines=1, max_lines=3, elem_id="wan_status")
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
                # how far colour and sharpness moved per window; shown once a job finished with one
                c["drift"] = component(gr.Image, label="Drift per window", type="filepath", interactive=False,
                                       visible=False, height=220, elem_id="wan_drift")
                c["folder"] = component(gr.Textbox, label="Output folder", interactive=False, elem_id="wan_folder")
                c["jobs"] = gr.Markdown(elem_id="wan_jobs")
                c["saved"] = component(gr.File, label="Saved settings file", interactive=False, visible=False,
                                       elem_id="wan_saved")
                c["deforum_js"] = gr.Textbox(visible=False, elem_id="wan_deforum_js")
                c["task"] = gr.Textbox(visible=False, elem_id="wan_task_id")  # set by TASK_JS
                c["poll"] = poll_button()

        fields = [c[name] for name in FIELDS]
        status, job_status = c["status"], c["job_status"]
        on(c["plan"].click, tab.plan, fields + [base, batch], [c["plan_out"], c["plan_view"], status])
        on(c["camera"].click, tab.preview_camera, fields + [base, batch], [c["video"], status])
        on(c["generate"].click, tab.generate_task, [c["task"], *fields, base, batch], [job_status], js=TASK_JS)
        on(c["interrupt"].click, tab.interrupt, [], [job_status], queue=False)
        on(c["skip"].click, tab.skip, [], [job_status], queue=False)
        on(c["resume"].click, tab.resume_task, [c["task"], c["resume_job"]], [job_status], js=TASK_JS)
        imported = on(c["import"].upload, tab.import_files, [c["import"]], fields + [base, batch, c["size"], status])
        on(c["clear_batch"].click, tab.clear_batch, [], [batch, status])
        on(c["save"].click, tab.save_settings, fields + [base], [c["saved"], status])
        on(c["deforum"].click, tab.use_deforum_prompts, [c["deforum_js"]],
           [c["prompts"], c["positive"], c["negative"], status], js=DEFORUM_PROMPTS_JS)
        on(c["model"].change, tab.model_changed, [c["model"], c["width"], c["height"]],
           [c["size"], c["steps"], c["guidance"], c["guidance_2"]])
        on(c["size"].change, tab.size_changed, [c["size"], c["width"], c["height"]], [c["width"], c["height"]])
        image = on(c["init_upload"].upload, tab.uploaded_image, [c["init_upload"]], [c["init_image"], status])
        sound = on(c["soundtrack_upload"].upload, tab.uploaded_soundtrack, [c["soundtrack_upload"]],
                   [c["soundtrack"], status])
        video = on(c["video_upload"].upload, tab.uploaded_video, [c["video_upload"]], [c["video_path"], status])
        keyframe = on(c["keyframe_upload"].upload, tab.uploaded_keyframe,
           [c["keyframe_upload"], c["keyframe_frame"], c["keyframes"]], [c["keyframes"], status])
        on(c["refresh"].click, tab.refresh_models, [c["model"]], [c["model"]])
        on(c["download"].click, tab.download, [c["model"]], [c["download_status"], c["stop_download"]])
        on(c["download_depth"].click, tab.download_depth, fields + [base], [c["download_status"], c["stop_download"]])
        on(c["stop_download"].click, tab.stop_download, [], [c["download_status"]], queue=False)
        for action in ("setup", "update", "remove", "status"):
            on(c[f"official_{action}"].click, getattr(tab, f"official_{action}"), [c["official_code"]],
               [c["official_line"]])
        wire_poll(demo, c["poll"], tab.poll,
                  [c["progress"], c["preview"], c["video"], c["drift"], c["folder"], c["jobs"], c["resume_job"],
                   job_status, c["download_bar"], c["stop_download"]],
                  [imported, image, sound, video, keyframe])
    demo.wan_tab = tab  # for tests and the host
    demo.wan_components = c
    return demo
