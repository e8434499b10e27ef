"""The Wan tab on the installed gradio: the field mapping on real Deforum files, every
field's effect on the loaded settings, and the handlers (with a stand-in job manager)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT, real_settings_files

from deforum_wan.config.presets import PRESETS, resolve
from deforum_wan.config.settings import WAN_DEFAULTS, load_settings, read_settings_file
from deforum_wan.render.job import CheckedJob, JobSpec, check_job
from deforum_wan.webui.fields import (
    CUSTOM_SIZE,
    FIELDS,
    WAN_FIELDS,
    WAN_KEY_FIELDS,
    fields_to_settings,
    model_choices,
    parse_loras,
    settings_to_fields,
    size_choices,
)

gr = pytest.importorskip("gradio")

from deforum_wan.webui.gradio_compat import GRADIO_MAJOR  # noqa: E402
from deforum_wan.webui.tab_handlers import WanTab  # noqa: E402
from deforum_wan.webui.tab_layout import CSS, build_ui  # noqa: E402

REAL = real_settings_files()
BROKEN = sorted((REAL[0].parent / "broken").iterdir()) if REAL else []
real_files = pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])


class FakeManager:
    """What the tab calls on a JobManager, recorded."""

    def __init__(self, outdir):
        self.outdir = Path(outdir)
        self.models_dir = str(Path(outdir) / "models")
        self.submitted: list[tuple[str, dict]] = []
        self.calls: list[str] = []
        self.jobs: list[dict] = []

    def check_batch(self, items):
        # the real manager's check (render.job), so the tab sees what it would queue
        return [check_job(JobSpec(settings, name), self.outdir, models_dir=self.models_dir)
                for name, settings in items]

    def queue_checked(self, checked):
        ids = []
        for job in checked:
            assert isinstance(job, CheckedJob)
            self.submitted.append((job.spec.name, job.spec.settings))
            ids.append(f"job{len(self.submitted)}")
        return ids

    def interrupt(self):
        self.calls.append("interrupt")
        return True

    def skip(self):
        self.calls.append("skip")
        return False

    def list(self):
        return [dict(j) for j in self.jobs]

    def resume(self, job_id):
        if job_id not in {j["id"] for j in self.jobs}:
            from deforum_wan.service.jobstore import JobNotFound

            raise JobNotFound(f"no job {job_id!r}")
        return f"job-{job_id}"


@pytest.fixture
def manager(tmp_path):
    return FakeManager(tmp_path / "out")


@pytest.fixture
def tab(manager):
    return WanTab(manager)


def upload(path: Path) -> str:
    """``path`` as the browser hands it over: a copy in gradio's upload folder."""
    import shutil
    import uuid

    from deforum_wan.webui.gradio_compat import upload_folder

    folder = upload_folder() / f"test-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return str(shutil.copy(path, folder / Path(path).name))


def values_of(fields: dict) -> list:
    return [fields[name] for name in FIELDS]


# --- fields_to_settings / settings_to_fields on real files -------------------------------

@real_files
def test_round_trip_keeps_every_key_of_a_real_file(path):
    data = read_settings_file(path)
    out = fields_to_settings(settings_to_fields(data), data)
    assert {k: out[k] for k in data} == data  # nothing the file holds is changed or dropped
    added = set(out) - set(data)
    deforum_keys = {"W", "H", "animation_prompts_positive", "animation_prompts_negative", "use_init",
                    "add_soundtrack", "prompts"}
    assert added <= set(WAN_DEFAULTS) | deforum_keys


@real_files
def test_round_trip_loads_the_same_animation(path):
    data = read_settings_file(path)
    out = fields_to_settings(settings_to_fields(data), data)
    a, b = load_settings(data, {"seed": 7}), load_settings(out, {"seed": 7})
    for attr in ("W", "H", "fps", "max_frames", "seed_behavior", "seed_iter_N", "steps", "prompts",
                 "color_coherence", "init_image", "soundtrack", "batch_name", "overlap", "motion_strength"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.cfg.values == b.cfg.values


@real_files
def test_edited_fields_come_back_and_reload(path):
    data = read_settings_file(path)
    fields = settings_to_fields(data)
    fields.update(model="tiny-random-ti2v", width=128, height=64, fps=24, frames=30, seed=99,
                  cfg="5", prompts='{"0": "a red fox --neg blur", "10": "a blue fox"}',
                  loras="/tmp/a.safetensors:0.5", guidance_2="3.5", overlap=3)
    out = fields_to_settings(fields, data)
    again = settings_to_fields(out)
    for name in ("model", "width", "height", "fps", "frames", "seed", "overlap", "loras", "guidance_2"):
        assert again[name] == fields[name], name
    assert again["cfg"] == "0: (5)"
    assert json.loads(again["prompts"]) == {"0": "a red fox --neg blur", "10": "a blue fox"}
    s = load_settings(out)
    assert (s.model.id, s.W, s.H, s.fps, s.max_frames, s.seed) == ("tiny-random-ti2v", 128, 64, 24, 30, 99)
    assert "animation_prompts" not in out  # the edit must not be shadowed by the legacy key


def test_legacy_animation_prompts_are_shown_and_replaced_on_edit():
    data = {"animation_prompts": json.dumps({"0": "old"}), "prompts": {"0": "ignored"}}
    fields = settings_to_fields(data)
    assert json.loads(fields["prompts"]) == {"0": "old"}  # Deforum's loader lets the legacy key win
    out = fields_to_settings(fields, data)
    assert {k: out[k] for k in data} == data
    fields["prompts"] = '{"0": "new"}'
    out = fields_to_settings(fields, data)
    assert "animation_prompts" not in out and load_settings(out).prompts[0].positive == "new"


def test_unchanged_fields_keep_the_files_spelling():
    data = {"seed": "12", "color_coherence": "Match Frame 0 LAB", "W": "512", "wan_frame_overlap": 2}
    fields = settings_to_fields(data)
    assert (fields["seed"], fields["color_coherence"], fields["width"], fields["overlap"]) == (12, "LAB", 512, 2)
    out = fields_to_settings({**fields, "seed": 12.0, "width": 512.0}, data)  # gradio's Number gives floats
    assert {k: out[k] for k in data} == data and "wan_overlap" not in out


# Each field, a new value, and what it must change in the loaded RenderSettings.
FIELD_EFFECTS = {
    "model": ("tiny-random-ti2v [built locally]", lambda s: s.model.id == "tiny-random-ti2v"),
    "backend": ("diffusers", lambda s: s.backend == "diffusers"),
    "model_low": ("wan_low_noise.safetensors", lambda s: s.model_low == "wan_low_noise.safetensors"),
    "width": (640, lambda s: s.W == 640),
    "height": (352, lambda s: s.H == 352),
    "fps": (24, lambda s: s.fps == 24),
    "frames": (33, lambda s: s.max_frames == 33),
    "clip_duration": (2.5, lambda s: s.clip_duration == 2.5),
    "steps": ("9", lambda s: s.wan_steps == 9),
    "guidance": ("4.5", lambda s: s.wan_guidance == 4.5),
    "deforum_sampling": (True, lambda s: s.use_deforum_sampling is True),
    "cfg": ("0: (3), 10: (8)", lambda s: s.cfg[0] == 3 and s.cfg[10] == 8),
    "guidance_2": ("2.5", lambda s: s.guidance_2 == 2.5),
    "seed": (1234, lambda s: s.seed == 1234),
    "seed_behavior": ("ladder", lambda s: s.seed_behavior == "ladder"),
    "seed_iter_n": (3, lambda s: s.seed_iter_N == 3),
    "overlap": (6, lambda s: s.overlap == 6),
    "motion_strength": (1.5, lambda s: s.motion_strength == 1.5),
    "color_coherence": ("HSV", lambda s: s.color_coherence == "HSV"),
    "retime": ("nearest", lambda s: s.retime == "nearest"),
    "wan_camera": ("vace", lambda s: s.wan_camera == "vace"),
    "offload": ("model", lambda s: s.offload == "model"),
    "vae_tiling": (True, lambda s: s.vae_tiling is True),
    "dtype": ("float16", lambda s: s.dtype == "float16"),
    "preset": ("fast", lambda s: s.preset == "fast"),
    "gpus": (2, lambda s: s.gpus == 2),
    "loras": ("C:\\loras\\style.safetensors:0.7\nother.safetensors\nlight.safetensors:0.5:low\nC:\\high.safetensors:HIGH",
              lambda s: s.loras == [("C:\\loras\\style.safetensors", 0.7, "both"), ("other.safetensors", 1.0, "both"),
                                    ("light.safetensors", 0.5, "low"), ("C:\\high.safetensors", 1.0, "high")]),
    "prompts": ('{"0": "a cat --neg dog", "5": "a bird"}',
                lambda s: [(p.frame, p.positive) for p in s.prompts] == [(0, "a cat"), (5, "a bird")]
                and s.prompts[0].negative.startswith("dog")),
    "positive": ("cinematic,", lambda s: s.prompts[0].positive.startswith("cinematic")),
    "negative": ("grainy", lambda s: "grainy" in s.prompts[0].negative),
    "init_image": ("start.png", lambda s: s.init_image == "start.png"),
    "soundtrack": ("music.mp3", lambda s: s.soundtrack == "music.mp3"),
    "batch_name": ("MyRun_{seed}", lambda s: s.batch_name == "MyRun_{seed}"),
    "depth_warping": (False, lambda s: s.raw["use_depth_warping"] is False),
    "animation_mode": ("3D", lambda s: s.camera is not None and s.camera.mode == "3D"),
    "video_path": ("clip.mp4", lambda s: s.raw.get("video_init_path") == "clip.mp4"),
    "control": ("flow", lambda s: s.wan_control == {"kind": "flow", "video": "clip.mp4", "weight": 1.0}
                and "video_init_path" not in s.raw),  # a control video is not Video Input's
    "keyframes": ("0: a.png\nmax_f/2: b.png", lambda s: s.raw["use_looper"] is True
                  and json.loads(s.raw["init_images"]) == {"0": "a.png", "max_f/2": "b.png"}),
}
# Fields whose effect needs another field set as well (in both the before and the after).
FIELD_CONTEXT = {"control": {"video_path": "clip.mp4"}}


def test_every_field_is_covered():
    assert set(FIELD_EFFECTS) == set(FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_changes_the_render_settings(name):
    base = read_settings_file(EXAMPLE)
    value, check = FIELD_EFFECTS[name]
    context = FIELD_CONTEXT.get(name, {})
    before = load_settings(fields_to_settings({**settings_to_fields(base), **context}, base))
    assert not check(before), f"{name}: the example already has this value"
    after = load_settings(fields_to_settings({**settings_to_fields(base), **context, name: value}, base))
    assert check(after), name


def speed(settings) -> dict:
    """The backend's speed fields for loaded settings, as render.py resolves them."""
    return resolve(settings.preset, settings.speed_overrides)


@pytest.mark.parametrize("preset", PRESETS)
def test_memory_fields_at_their_defaults_keep_the_preset(preset):
    # The tab sends every field; Offload none and VAE tiling off must not undo low-vram.
    base = read_settings_file(EXAMPLE)
    fields = {**settings_to_fields(base), "preset": preset}
    assert (fields["offload"], fields["vae_tiling"], fields["gpus"]) == ("none", False, 1)
    out = fields_to_settings(fields, base)
    assert out["wan_preset"] == preset and out["wan_offload"] == "none"
    s = load_settings(out)
    assert s.speed_overrides == {} and speed(s) == resolve(preset)
    if preset == "low-vram":
        assert (speed(s)["offload"], speed(s)["vae_tiling"]) == ("group", True)


def test_memory_fields_set_away_from_their_defaults_override_the_preset():
    base = read_settings_file(EXAMPLE)
    fields = {**settings_to_fields(base), "preset": "low-vram", "offload": "model"}
    s = load_settings(fields_to_settings(fields, base))
    assert (s.preset, speed(s)["offload"], speed(s)["vae_tiling"]) == ("low-vram", "model", True)
    fields = {**settings_to_fields(base), "preset": "quality", "vae_tiling": True}
    assert speed(load_settings(fields_to_settings(fields, base)))["vae_tiling"] is True


def test_preset_and_gpus_from_a_file_are_shown_and_kept():
    data = {"wan_preset": "LOW_VRAM", "wan_gpus": "4", "wan_cache": "mag"}
    fields = settings_to_fields(data)
    assert (fields["preset"], fields["gpus"]) == ("low-vram", 4)
    out = fields_to_settings({**fields, "gpus": 4.0}, data)  # gradio's Number gives floats
    assert {k: out[k] for k in data} == data  # unchanged: the file's spelling stays
    s = load_settings(out)
    assert (s.preset, s.gpus, speed(s)["cache"], speed(s)["offload"]) == ("low-vram", 4, "mag", "group")
    assert settings_to_fields({})["preset"] == "quality" and settings_to_fields({})["gpus"] == 1


def test_clearing_init_image_and_soundtrack_turns_them_off():
    base = {"use_init": True, "init_image": "a.png", "add_soundtrack": "File", "soundtrack_path": "b.mp3"}
    fields = {**settings_to_fields(base), "init_image": "", "soundtrack": ""}
    s = load_settings(fields_to_settings(fields, base))
    assert s.init_image is None and s.soundtrack is None


def test_parse_loras_and_bad_prompts():
    assert parse_loras("a.safetensors:0.5\n\n# comment\nb.safetensors") == [
        {"path": "a.safetensors", "weight": 0.5}, {"path": "b.safetensors", "weight": 1.0}]
    with pytest.raises(Exception, match="invalid JSON at line 1"):
        fields_to_settings({"prompts": "{0: 'x'}"}, {})


def test_size_choices_and_model_marks():
    assert size_choices("wan2.2-ti2v-5b [installed]") == ["1280x704", "704x1280", CUSTOM_SIZE]
    assert "tiny-random [built locally]" in model_choices({"tiny-random"})
    assert "tiny-random-vace [built on first use]" in model_choices({"tiny-random"})
    assert "wan2.1-t2v-1.3b [installed, 16.4 GB]" in model_choices({"wan2.1-t2v-1.3b": 16_400_000_000})
    assert "wan2.1-t2v-14b [not downloaded]" in model_choices({})
    assert "wan2.1-t2v-1.3b [not downloaded]" in model_choices(set())


# --- the handlers -------------------------------------------------------------------------

def example_values(tab, **changes) -> tuple[list, dict]:
    data = read_settings_file(EXAMPLE)
    values = tab.field_values(data)
    for name, value in changes.items():
        values[FIELDS.index(name)] = value
    return values, data


def test_plan_shows_the_table(tab):
    values, base = example_values(tab)
    table, view, status = tab.plan(*values, base, [])
    assert "win seg mode" in table and "6 windows" in table
    assert status.startswith("plan: 6 windows, 48 frames")
    # the readable view: a timeline (each segment, each window) and a row per window
    from deforum_wan.config.planner import make_plan

    segments = len(make_plan(load_settings(fields_to_settings(tab.fields(values), base))).segments)
    # a short table and the full one behind a click, a head and a row per window each
    summary, full = view.split("<details", 1)
    assert summary.count("<tr>") == 1 + 6 and full.count("<tr>") == 1 + 6 and "camera" not in summary
    assert view.count("<rect") == segments + 6 and "<svg" in view
    assert ">0-" in view and ">camera</th>" in full
    hostile = dict(base, prompts={"0": "<script>alert(1)</script>"})
    assert "<script>" not in tab.plan(*tab.field_values(hostile), hostile, [])[1]  # escaped


def test_plan_shows_each_models_memory_as_the_command_line_does(manager, tiny_models_dir, tmp_path, capsys,
                                                                 monkeypatch):
    from helpers import QUICK, settings

    from deforum_wan.cli.main import main
    from deforum_wan.models.footprint import human_bytes

    monkeypatch.setenv("DEFORUM_WAN_MODELS_DIR", str(tiny_models_dir))
    data = settings(QUICK)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    assert main(["plan", str(path), "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    parts = planned["memory"]["tiny-random"]
    # every model a window runs, the I2V partner the planner chose itself too
    windows = {w["model"] for w in planned["windows"]}
    assert "tiny-random-i2v" in windows and windows <= set(planned["memory"])
    assert main(["plan", str(path)]) == 0
    cli = capsys.readouterr().out.splitlines()
    memory = cli[next(i for i, line in enumerate(cli) if line.startswith("memory of tiny-random: ")):]

    tab = WanTab(manager, models_dir=str(tiny_models_dir))
    table, view, _ = tab.plan(*tab.field_values(data), data, [])
    assert table.splitlines()[-len(memory):] == memory  # under the plan, word for word
    assert {p["part"] for p in parts} == {"transformer", "text_encoder", "vae"}
    for part in parts:  # each part's bytes, from its headers, in both views
        assert part["bytes"] > 0 and part["source"].startswith(str(tiny_models_dir))
        size = human_bytes(part["bytes"])
        assert any(line.strip().startswith(f"{part['part']}: ") and f"{size} in memory" in line for line in memory)
        assert f"{part['part']} {size}" in view.split('class="wan-plan-memory"', 1)[1].split("</p>", 1)[0]


def test_preview_camera_shows_deforums_path_as_a_video(tab):
    from deforum_wan.render.video import probe_video

    data = dict(read_settings_file(EXAMPLE), animation_mode="2D", zoom="0: (1.03)", angle="0: (1)", W=640, H=480)
    values = tab.field_values(data)
    video, status = tab.preview_camera(*values, data, [])
    assert status.startswith("camera preview: 48 frames") and "shown at 384x288" in status, status
    assert status.endswith("; Wan renders 640x480")  # the size the plan renders, named once
    info = probe_video(video)
    assert info["frames"] == 48 and (info["width"], info["height"]) == (384, 288)
    assert str(tab.outdir) in video
    still = dict(data, animation_mode="None")
    _, status = tab.preview_camera(*tab.field_values(still), still, [])
    # said in the tab's words: its field, what to choose
    assert status == "no camera to preview: Animation mode is None; choose 2D or 3D for Deforum's camera moves"
    assert tab.fields(tab.field_values(still))["animation_mode"] == "None"
    unsaid = {k: v for k, v in data.items() if k != "animation_mode"}  # Deforum's default: 2D
    assert tab.fields(tab.field_values(unsaid))["animation_mode"] == "2D"
    start = tab.initial  # the tab's first view: no camera either, said the same way
    assert tab.preview_camera(*tab.field_values(start), start, [])[1].startswith("no camera to preview: ")


def test_preview_camera_shows_at_most_its_cap_of_a_long_file(tab):
    from deforum_wan.render.video import probe_video
    from deforum_wan.webui.tab_handlers import PREVIEW_FRAMES

    data = dict(read_settings_file(EXAMPLE), animation_mode="2D", zoom="0: (1.01)", W=64, H=64, max_frames=100_000)
    video, status = tab.preview_camera(*tab.field_values(data), data, [])
    assert status.startswith(f"camera preview: the first {PREVIEW_FRAMES} of 100000 frames"), status
    assert len(list(Path(video).parent.glob("*.png"))) == PREVIEW_FRAMES
    assert probe_video(video)["frames"] == PREVIEW_FRAMES


def test_preview_camera_keeps_only_the_last_few_previews(tab):
    from deforum_wan.webui.tab_handlers import PREVIEWS_KEPT

    parent = tab.outdir / "wan-camera"
    for n in range(PREVIEWS_KEPT + 3):  # earlier previews, oldest first
        old = parent / f"2020010100000{n}"
        old.mkdir(parents=True)
        (old / "000000000.png").write_bytes(b"png")
        (old / "camera.mp4").write_bytes(b"mp4")
    foreign = parent / "20000101000000"  # the oldest, but holding a file no preview writes
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    data = dict(read_settings_file(EXAMPLE), animation_mode="2D", W=64, H=64, max_frames=20)
    video, status = tab.preview_camera(*tab.field_values(data), data, [])
    assert status.startswith("camera preview: 20 frames"), status
    left = sorted(p.name for p in parent.iterdir())
    assert left == sorted(["20000101000000", *(f"2020010100000{n}" for n in range(4, PREVIEWS_KEPT + 3)),
                           Path(video).parent.name]), left
    assert (foreign / "notes.txt").read_text() == "mine"


def test_preview_camera_refuses_an_init_image_outside_the_allowed_folders(tab, tmp_path):
    from PIL import Image

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(elsewhere / "secret.png")
    data = dict(read_settings_file(EXAMPLE), animation_mode="2D", W=64, H=64, max_frames=20, use_init=True,
                init_image=str(elsewhere / "secret.png"))
    video, status = tab.preview_camera(*tab.field_values(data), data, [])
    assert status.startswith("error:") and "must name an existing file inside the output folder" in status, status
    assert not list(tab.outdir.glob("wan-camera/*/*.png"))


@pytest.mark.parametrize("name,value,expected", [
    ("fps", None, "error: tab: fps must be a number, got None"),
    ("prompts", "{oops", "error: prompt schedule: prompts: invalid JSON at line 1 column 2"),
    ("model", "no-such-model", "error: tab: unknown model 'no-such-model'"),
    ("cfg", "0: (5", "error: tab: "),
    ("overlap", 40, "error: tab: wan_overlap=40 leaves no new frames"),
])
def test_plan_errors_are_one_line(tab, name, value, expected):
    values, base = example_values(tab, **{name: value})
    table, view, status = tab.plan(*values, base, [])
    assert table == "" and status.startswith(expected) and "\n" not in status and "Traceback" not in status


def test_generate_submits_the_fields(tab, manager):
    values, base = example_values(tab, seed=5, frames=24)
    assert tab.generate(*values, base, []) == "queued job job1"
    name, settings = manager.submitted[0]
    assert name == "WanExample" and settings["seed"] == 5 and settings["max_frames"] == 24
    assert settings["wan_write_srt"] is True  # a key the tab has no field for is passed on


def test_generate_checks_each_job_once(idle_manager, deforum_dir, monkeypatch):
    """The tab's own refusals (a depth model to fetch) read the queue's check: the real
    check_job runs once per job, counted where the tab and the queue call it."""
    import deforum_wan.service.jobs as jobs
    import deforum_wan.webui.tab_handlers as handlers

    real, checked = jobs.check_job, []

    def counted(spec, *args, **kwargs):
        checked.append(spec.name)
        return real(spec, *args, **kwargs)

    for module in (jobs, handlers):
        monkeypatch.setattr(module, "check_job", counted)
    tab = WanTab(idle_manager)
    values, base = example_values(tab, seed=5, frames=24)
    assert tab.generate(*values, base, []).startswith("queued job ")
    assert checked == ["tab"]
    out = tab.import_files([upload(deforum_dir / name) for name in
                            ("edream_test-settings.txt", "sdwebui_simple.input_settings.txt")])
    values, batch = out[:len(FIELDS)], out[len(FIELDS) + 1]
    values[FIELDS.index("model")] = "tiny-random"
    checked.clear()  # the import planned each file for its status line
    assert tab.generate(*values, base, batch).startswith("queued 2 jobs: ")
    assert checked == ["edream_test-settings", "sdwebui_simple.input_settings"]


def test_generate_error_is_one_line(tab, manager):
    values, base = example_values(tab, steps=0)
    status = tab.generate(*values, base, [])
    assert status.startswith("error:") and "steps" in status and not manager.submitted


def test_import_one_file_fills_the_fields(tab, deforum_dir):
    path = deforum_dir / "xmyx_Flashbacks-30s.txt"
    out = tab.import_files([upload(path)])
    values, (base, batch, size, status) = out[:len(FIELDS)], out[len(FIELDS):]
    fields = dict(zip(FIELDS, values))
    assert (fields["seed"], fields["width"], fields["frames"]) == (3159940858, 1024, 363)
    assert fields["seed_behavior"] == "fixed"
    assert base == read_settings_file(path) and batch == []
    assert size["value"] == CUSTOM_SIZE  # 1024x576 is not a trained size of the default model
    # the size the plan renders, and that it is not the file's: in the line and on the Size field
    from deforum_wan.config.planner import make_plan

    plan = make_plan(load_settings(read_settings_file(path)))
    said = f"renders {plan.width}x{plan.height}, not W/H 1024x576 ("
    assert (plan.width, plan.height) != (1024, 576)
    assert status.startswith(f"imported xmyx_Flashbacks-30s.txt; {said}") and said in size["info"]
    # its hybrid video is a placeholder path no machine has: the import says what Generate
    # would refuse, with both ways on (upload the video, or render without it)
    remedy = "or set hybrid_motion and hybrid_composite to None to render without the hybrid video"
    assert "; before Generate: tab: video_init_path 'C:/Your/File/Path/Here/Turbulent-noise-30s.mp4'" in status
    assert status.endswith(remedy) and "\n" not in status
    plan_line = tab.plan(*values, base, [])[2]
    assert plan_line.startswith("error: tab: video_init_path") and plan_line.endswith(remedy)
    flat = {**base, "hybrid_motion": "None", "hybrid_composite": "None"}
    plan_line = tab.plan(*values, flat, [])[2]
    assert said in plan_line and plan.size_source in plan_line


def test_import_many_files_is_a_batch_of_jobs(tab, manager, deforum_dir):
    paths = [deforum_dir / "edream_test-settings.txt", deforum_dir / "sdwebui_simple.input_settings.txt"]
    out = tab.import_files([upload(p) for p in paths])
    values, (base, batch, _size, status) = out[:len(FIELDS)], out[len(FIELDS):]
    assert [name for name, _ in batch] == ["edream_test-settings", "sdwebui_simple.input_settings"]
    assert "batch" in status
    values[FIELDS.index("model")] = "tiny-random"  # a Wan field: applies to every file
    values[FIELDS.index("preset")] = "low-vram"
    values[FIELDS.index("gpus")] = 2.0
    values[FIELDS.index("seed")] = 1  # an animation field: each file keeps its own
    table, view, plan_status = tab.plan(*values, base, batch)
    assert table.count("win seg mode") == 2 and plan_status == "plan: 2 files"
    assert tab.generate(*values, base, batch) == "queued 2 jobs: job1, job2"
    (n1, s1), (n2, s2) = manager.submitted
    assert (n1, n2) == ("edream_test-settings", "sdwebui_simple.input_settings")
    assert s1["wan_model"] == s2["wan_model"] == "tiny-random"
    assert s1["wan_preset"] == s2["wan_preset"] == "low-vram" and s1["wan_gpus"] == s2["wan_gpus"] == 2
    assert s1["seed"] == -1 and s2["seed"] == 1  # each its own: the first's random seed stays random
    assert set(WAN_FIELDS) <= set(FIELDS)
    assert tab.clear_batch()[0] == []


@pytest.mark.parametrize("path", BROKEN, ids=[p.name for p in BROKEN])
def test_import_a_broken_file_is_one_line(tab, path):
    status = tab.import_files([upload(path)])[-1]
    assert status.startswith(f"error: {path.name}: ") and "\n" not in status


def test_import_and_upload_read_no_other_server_file(tab, manager, tmp_path):
    """A request to the tab's functions naming a server path is refused: only gradio's uploads
    and the output folder are read."""
    secret = tmp_path / "secret.txt"
    secret.write_text(json.dumps({"prompts": {"0": "the server's own file"}}))
    status = tab.import_files([str(secret)])[-1]
    assert status == "error: secret.txt: only uploaded files or files in the output folder are read"
    linked = manager.outdir / "link.txt"
    manager.outdir.mkdir(parents=True, exist_ok=True)
    linked.symlink_to(secret)  # a link inside the output folder to a file outside it
    assert tab.import_files([str(linked)])[-1].startswith("error: link.txt: only uploaded")
    assert tab.uploaded_image(str(secret))[0]["__type__"] == "update"  # not taken as the init image


def test_save_settings_writes_a_file_both_tools_reimport(tab, manager, deforum_dir):
    path = deforum_dir / "sdwebui_default_settings.txt"
    base = read_settings_file(path)
    values = tab.field_values(base)
    values[FIELDS.index("model")] = "tiny-random"
    saved, status = tab.save_settings(*values, base)
    written = Path(saved["value"])
    assert status == f"saved {written}" and written.parent == manager.outdir / "wan-settings"
    data = read_settings_file(written)
    assert set(base) <= set(data)  # Deforum's keys are all there for Deforum
    assert data["seed"] == -1 and data["wan_model"] == "tiny-random"
    again = tab.import_files([str(written)])
    assert dict(zip(FIELDS, again[:len(FIELDS)]))["model"].startswith("tiny-random ")


def test_use_deforum_prompts(manager):
    got = {"prompts": {"0": "from deforum --neg x"}, "animation_prompts_negative": "nsfw"}
    tab = WanTab(manager, deforum_prompts=lambda: got)
    prompts, positive, negative, status = tab.use_deforum_prompts("")
    assert json.loads(prompts) == got["prompts"] and negative == "nsfw" and status == "loaded Deforum's prompts"
    page = json.dumps({"prompts": '{"0": "from the page"}', "animation_prompts_positive": "p"})
    prompts, positive, _, _ = tab.use_deforum_prompts(page)  # the page's values win
    assert json.loads(prompts) == {"0": "from the page"} and positive == "p"
    assert "not available" in WanTab(manager, deforum_prompts=lambda: None).use_deforum_prompts("")[-1]


def test_model_and_size_handlers(tab, tmp_path):
    assert tab.model_changed("wan2.2-ti2v-5b", 1280, 704)[0]["value"] == "1280x704"
    assert tab.model_changed("wan2.2-ti2v-5b", 832, 480)[0]["value"] == "1280x704"  # the nearest aspect
    assert tab.model_changed("tiny-random", 832, 480)[0]["value"] == "64x64"  # not left on custom
    assert tab.model_changed("wan2.1-t2v-1.3b", 480, 832)[0]["value"] == "480x832"
    # the fields an empty value leaves to the model name the new model's values
    size, steps, guidance, guidance_2 = tab.model_changed("wan2.2-t2v-a14b", 1280, 720)
    assert "40" in steps["label"] and "4" in guidance["label"] and "3" in guidance_2["label"]
    assert "not used" in tab.model_changed("wan2.1-t2v-1.3b", 832, 480)[3]["label"]
    assert tab.size_changed("480x832", 1, 1) == (480, 832)
    assert tab.size_changed(CUSTOM_SIZE, 100, 100)[0]["__type__"] == "update"
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(image)
    kept = tab.outdir.resolve() / tab.uploaded_image(upload(image))[0]  # in the output folder, where jobs read it
    assert kept.parent == tab.outdir.resolve() / "wan-uploads" and kept.read_bytes() == image.read_bytes()
    refreshed = tab.refresh_models("tiny-random")
    assert refreshed["value"] == "tiny-random [built on first use]" and len(refreshed["choices"]) > 10


def test_uploaded_guided_images_are_added_at_their_frames_and_shown_on_the_plan(tab, tmp_path):
    from PIL import Image

    from deforum_wan.render.job import JobSpec, check_job
    from deforum_wan.webui.plan_view import thumbnails, timeline_svg

    tab.outdir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("a.png", "b.png")):
        Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(tmp_path / name)
    lines, said = tab.uploaded_keyframe(upload(tmp_path / "a.png"), 0, "")
    lines, said = tab.uploaded_keyframe(upload(tmp_path / "b.png"), 12, lines)
    assert [line.split(":")[0] for line in lines.splitlines()] == ["0", "12"] and "guided image at frame 12" in said
    kept = [line.split(": ", 1)[1] for line in lines.splitlines()]
    assert all((tab.outdir.resolve() / name).is_file() for name in kept)  # in the output folder, where jobs read them
    assert "must be 'frame: image'" in tab.uploaded_keyframe(upload(tmp_path / "a.png"), 0, "no frame here")[1]
    base = {**json.loads(EXAMPLE.read_text()), "animation_mode": "2D", "wan_camera": "off", "max_frames": 20}
    settings = fields_to_settings({**settings_to_fields(base), "keyframes": lines}, base)
    assert settings["use_looper"] is True and json.loads(settings["init_images"]) == {"0": kept[0], "12": kept[1]}
    assert settings_to_fields(settings)["keyframes"] == lines
    plan = check_job(JobSpec(settings), tab.outdir).plan  # the images confined to the output folder
    shown = thumbnails(plan)
    assert [(frame, image) for frame, image, _ in shown] == sorted(plan.anchors.items()) and len(shown) == 2
    assert all(uri.startswith("data:image/png;base64,") for _, _, uri in shown)
    assert timeline_svg(plan).count("<image ") == 2


def test_interrupt_and_skip_reach_the_manager(tab, manager):
    assert tab.interrupt().startswith("interrupting")
    assert tab.skip() == "nothing is rendering"
    assert manager.calls == ["interrupt", "skip"]


def test_poll_shows_progress_and_sends_only_changes(tab, manager, tmp_path):
    frame = tmp_path / "f.png"
    frame.write_bytes(b"png")
    progress = {"window": 1, "windows": 3, "step": 2, "steps": 4, "frames_written": 10, "frames": 48,
                "phase": "rendering"}
    job_id = "a" * 12
    manager.jobs = [{"id": job_id, "name": "run", "status": "running", "progress": progress,
                     "preview": str(frame), "video": None, "run_dir": str(tmp_path), "created": 1.0}]
    text, preview, video, drift, folder, jobs, resumable, status, download, stop, view = tab.poll({})
    assert text == "run [aaaaaaaa]: rendering - window 2/3, step 2/4, frames 10/48"
    assert preview == str(frame) and folder == str(tmp_path) and "| aaaaaaaa | run | running |" in jobs
    assert resumable["choices"] == [] and resumable["value"] is None and status == f"job {job_id} is rendering"
    assert stop == {"__type__": "update", "visible": False}  # Stop download only while one runs
    assert drift == {"__type__": "update", "value": None, "visible": False}  # no chart while it renders
    again = tab.poll(view)
    assert all(v == {"__type__": "update"} for v in again[:10])  # nothing changed: nothing resent
    manager.jobs[0].update(status="failed", error="worker crashed (exit code -9)", timestring="20260101000000",
                           settings_file=str(frame))
    text, *_, resumable, status, _download, _stop, view = tab.poll(view)
    # the queue's neutral message; the tab names its own button
    assert text == "run [aaaaaaaa]: failed - worker crashed (exit code -9) - press Resume to continue it"
    assert status == f"job {job_id} failed: worker crashed (exit code -9) - press Resume to continue it"
    assert resumable["choices"] == [f"{job_id} run (10/48 frames kept)"] == [resumable["value"]]


def test_each_page_keeps_its_own_poll_memo(manager, tmp_path):
    """The poll takes no input from the page: what each page was sent is remembered by its
    gradio session, so a second page gets everything and the first only what changed."""
    import types

    demo = build_ui(manager)
    config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
    button = demo.wan_components["poll"]._id
    index = next(i for i, dep in enumerate(config["dependencies"])
                 if any((t[0] if isinstance(t, (list, tuple)) else t) == button for t in dep.get("targets", [])))
    assert config["dependencies"][index]["inputs"] == []
    fns = demo.fns if isinstance(demo.fns, list) else list(demo.fns.values())
    polled = fns[index].fn
    manager.jobs = [{"id": "a" * 12, "name": "run", "status": "running", "created": 1.0, "run_dir": str(tmp_path),
                     "progress": {"window": 1, "windows": 2, "frames_written": 3, "frames": 48}}]
    first = polled(types.SimpleNamespace(session_hash="page-1"))
    assert first[0].startswith("run [aaaaaaaa]: ") and first[4] == str(tmp_path)
    assert all(value == {"__type__": "update"} for value in polled(types.SimpleNamespace(session_hash="page-1")))
    assert polled(types.SimpleNamespace(session_hash="page-2")) == first


def test_the_poll_shows_a_finished_jobs_drift_chart_from_the_output_folder_only(tab, manager, tmp_path):
    chart = manager.outdir / "Run_1" / "1_drift.png"
    chart.parent.mkdir(parents=True)
    chart.write_bytes(b"png")
    outside = tmp_path / "elsewhere_drift.png"
    outside.write_bytes(b"png")
    job = {"id": "e" * 12, "name": "run", "status": "running", "progress": {}, "created": 1.0,
           "drift_chart": str(chart)}
    manager.jobs = [job]
    assert tab.poll({})[3] == {"__type__": "update", "value": None, "visible": False}  # not finished yet
    job["status"] = "done"
    manager.jobs = [job]
    shown = tab.poll({})[3]
    assert shown["visible"] is True and Path(shown["value"]) == chart.resolve()
    for elsewhere in (str(outside), str(manager.outdir / "Run_1" / "missing.png")):
        manager.jobs = [{**job, "drift_chart": elsewhere}]
        assert tab.poll({})[3]["visible"] is False, elsewhere


def _stopped(job_id, created, status="interrupted", written=10, frames=48, **more) -> dict:
    return {"id": job_id, "name": "run", "status": status, "created": created, "timestring": "20260101000000",
            "settings_file": "s.txt", "run_dir": "out/Run_20260101000000", "resume": None,
            "progress": {"frames_written": written, "frames": frames}, **more}


def test_resume_offers_only_runs_that_can_still_be_resumed(tab, manager):
    # interrupted, then resumed to the end by a later job: nothing is left to resume
    manager.jobs = [_stopped("first", 1.0), _stopped("second", 2.0, status="done", written=48,
                                                     resume="20260101000000")]
    *_, resumable, _status, _download, _stop, _view = tab.poll({})
    assert resumable["choices"] == [] and resumable["value"] is None
    assert tab.poll({})[0] == "run [second]: done - 48 frames"  # no Resume offered for the first
    # a later job that crashed in the same folder is the one to resume, not the first
    manager.jobs[1].update(status="failed", progress={"frames_written": 30, "frames": 48})
    assert tab.poll({})[6]["choices"] == ["second run (30/48 frames kept)"]
    # a run whose every frame is on disk (its video failed) has nothing to render
    manager.jobs = [_stopped("whole", 1.0, status="failed", written=48)]
    assert tab.poll({})[6]["choices"] == []
    # the label is short: the id, the name and the frames kept, nothing a dropdown would cut
    manager.jobs = [_stopped("b" * 12, 1.0, name="Lighthouse")]
    label = tab.poll({})[6]["value"]
    assert label == f"{'b' * 12} Lighthouse (10/48 frames kept)" and len(label) < 60


def test_the_poll_leaves_the_import_and_download_lines_alone(tab, manager, tmp_path):
    """Each action has its own line; the 1 s poll writes only the job's: an import's or a
    Download's error is still there ten polls later, while a job ends and another starts."""
    bad = tmp_path / "bad.txt"
    bad.write_text("{not json", encoding="utf-8")
    import_line = tab.import_files([upload(bad)])[-1]
    assert import_line.startswith("error: bad.txt")
    download_line, stop = tab.download("no-such-model")
    assert download_line.startswith("unknown model") and stop["visible"] is False
    demo = build_ui(manager)
    c = demo.wan_components
    config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
    polled = [dep for dep in config["dependencies"] if c["job_status"]._id in dep["outputs"]
              and c["progress"]._id in dep["outputs"]]
    assert len(polled) == 1  # the poll
    assert c["status"]._id not in polled[0]["outputs"] and c["download_status"]._id not in polled[0]["outputs"]
    for name in ("import", "download"):
        writers = [dep for dep in config["dependencies"] if c[name]._id in
                   [t[0] if isinstance(t, (list, tuple)) else t for t in dep.get("targets", [])]]
        assert writers and all(c["job_status"]._id not in dep["outputs"] for dep in writers), name
    view, job_lines = {}, []
    manager.jobs = [_stopped("c" * 12, 1.0, status="failed", error="boom")]
    for second in range(10):
        if second == 5:
            manager.jobs.append({"id": "d" * 12, "name": "next", "status": "running", "created": 2.0,
                                 "progress": {"windows": 2, "frames": 48}})
        *out, view = tab.poll(view)
        assert not any(line in str(value) for value in out for line in (import_line, download_line))
        job_lines += [out[7]] if isinstance(out[7], str) else []
    assert job_lines[-1] == f"job {'d' * 12} is rendering"  # the job line did follow the jobs


def test_resume_queues_the_chosen_or_the_latest_stopped_job(tab, manager):
    assert tab.resume(None) == "nothing to resume: no interrupted or failed job"
    manager.jobs = [{"id": "old", "name": "a", "status": "interrupted", "progress": {}, "timestring": "1",
                     "settings_file": "s", "created": 1.0},
                    {"id": "new", "name": "b", "status": "failed", "progress": {}, "timestring": "2",
                     "settings_file": "s", "created": 2.0}]
    assert tab.resume(None) == "queued job job-new: continues job new where it stopped"
    assert tab.resume("old a (0/0 frames kept)") == "queued job job-old: continues job old where it stopped"
    assert tab.resume("gone") == "error: no job 'gone'"


def test_the_output_folder_is_shown_relative_to_the_webui_folder(tab, manager, tmp_path, monkeypatch):
    run_dir = tmp_path / "outputs" / "img2img-images" / "Run_20260101000000"
    manager.jobs = [{"id": "b" * 32, "name": "run", "status": "done", "progress": {}, "run_dir": str(run_dir),
                     "created": 1.0}]
    monkeypatch.chdir(tmp_path)  # the WebUI runs in its own folder
    assert tab.poll({})[4] == str(Path("outputs", "img2img-images", "Run_20260101000000"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the output folder is outside it: the full path
    assert tab.poll({})[4] == str(run_dir)


# --- the built Blocks ---------------------------------------------------------------------

def test_build_ui_wires_every_field(manager):
    demo = build_ui(manager, defaults={"wan_backend": "diffusers"}, deforum_prompts=dict)
    c = demo.wan_components
    assert all(name in c for name in FIELDS)
    assert c["backend"].value == "diffusers"
    assert c["preset"].value == "quality" and c["gpus"].value == 1
    choices = [ch[0] if isinstance(ch, (list, tuple)) else ch for ch in c["preset"].choices]
    assert choices == list(PRESETS)
    assert all(f"{name}: " in c["preset"].info for name in PRESETS) and "group offload" in c["preset"].info
    for name, key in WAN_KEY_FIELDS.items():  # each Wan key's widget is its row's
        if name not in ("steps", "guidance", "guidance_2"):  # these name the model's value
            assert c[name].label == key.label, name
        else:
            assert c[name].label.startswith(key.label), name
        if key.choices:
            assert [ch[0] if isinstance(ch, (list, tuple)) else ch for ch in c[name].choices] == list(key.choices)
        assert (c[name].info or "") == key.info, name
    config = demo.get_config_file() if hasattr(demo, "get_config_file") else demo.config
    ids = {c[name]._id for name in FIELDS}
    inputs = set()
    for dep in config["dependencies"]:
        inputs |= set(dep["inputs"])
    assert ids <= inputs  # every field feeds a handler (Plan, Generate, Save)
    for button in ("plan", "generate", "interrupt", "skip", "save", "clear_batch", "deforum", "refresh"):
        assert any(c[button]._id in [t[0] if isinstance(t, (list, tuple)) else t for t in dep.get("targets", [])]
                   for dep in config["dependencies"]), button


def test_style_css_matches_the_standalone_css():
    assert (ROOT / "style.css").read_text(encoding="utf-8") == CSS


def test_standalone_app_serves_the_tab_and_the_api(manager, tmp_path):
    from fastapi.testclient import TestClient

    from deforum_wan.cli.ui import build_app

    app = build_app(manager, outdir=tmp_path)
    client = TestClient(app)
    assert client.get("/").status_code == 200
    manager.store_state = {}
    routes = {getattr(r, "path", "") for r in app.router.routes}
    assert "/wan_api/jobs" in routes and GRADIO_MAJOR >= 3


def test_gradio_serves_the_outputs_but_never_the_job_database(manager, tmp_path):
    from fastapi.testclient import TestClient

    from deforum_wan.cli.ui import build_app
    from deforum_wan.service.jobstore import jobs_db_path

    db = jobs_db_path(tmp_path)
    db.parent.mkdir(parents=True)
    db.write_bytes(b"SQLite format 3\x00 the queue")
    frame = tmp_path / "run" / "x_000000000.png"
    frame.parent.mkdir()
    frame.write_bytes(b"frame bytes")
    client = TestClient(build_app(manager, outdir=tmp_path))
    prefix = "/gradio_api/file=" if GRADIO_MAJOR >= 4 else "/file="
    assert client.get(prefix + str(frame)).content == b"frame bytes"
    refused = client.get(prefix + str(db))
    assert refused.status_code in (403, 404) and b"the queue" not in refused.content


def test_the_standalone_tab_and_api_ask_for_a_login_when_given_one(manager, tmp_path):
    from fastapi.testclient import TestClient

    from deforum_wan.cli.ui import build_app
    from deforum_wan.service.guard import Guard

    client = TestClient(build_app(manager, outdir=tmp_path, guard=Guard(credentials={"ann": "pw"})),
                        base_url="http://127.0.0.1")
    manager.store_state = {}
    assert client.get("/wan_api/models").status_code == 401
    assert client.get("/wan_api/models", auth=("ann", "pw")).status_code == 200
    page = client.get("/config")
    assert page.status_code == 401 or "auth_required" in page.text  # gradio's login first


@pytest.mark.parametrize("argv, message", [
    (["ui", "--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines in: give --auth USER:PASS"),
    (["ui", "--auth", "nobody"], "--auth takes USER:PASS"),
    (["ui", "--host", "0.0.0.0", "--api-token", "tok"], "--host 0.0.0.0 lets other machines in: give --auth"
                                                          " USER:PASS (--api-token admits API calls, it is no login"),
    (["ui", "--host", "0.0.0.0", "--auth", "bob:"], "--auth takes USER:PASS pairs separated by commas: item 1 has"
                                                    " an empty user or password"),
    (["ui", "--auth", "admin:s3cr3t,XYZ"], "--auth takes USER:PASS pairs separated by commas: item 2 has no ':'"),
    (["ui", "--api-token", " "], "--api-token must be one word"),
])
def test_ui_refuses_an_open_network_server_in_one_line(argv, message, tmp_path, capsys):
    from deforum_wan.cli.main import main

    assert main([*argv, "--outdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1


def test_a_parseq_file_says_so_on_import_and_in_the_plan(tab, tmp_path):
    frames = [{"frame": f, "deforum_prompt": "a cat" if f < 6 else "a dog", "seed": 50 + f, "seed_delta": 1,
               "zoom": 1 + 0.01 * f, "zoom_delta": 1.01} for f in range(12)]
    data = {"max_frames": 48, "prompts": {"0": "ignored"}, "parseq_manifest":
            json.dumps({"options": {"output_fps": 24}, "rendered_frames": frames})}
    path = tmp_path / "parseq.json"
    path.write_text(json.dumps(data))
    status = tab.import_files([upload(path)])[-1]
    assert "Parseq manifest: 12 frames at 24 fps, keyframes for prompts, seed, zoom" in status
    values = tab.field_values(data)
    table, view, _ = tab.plan(*values, data, [])
    assert "Parseq manifest: 12 frames" in table and "seed (Parseq)" in view and "prompt (Parseq)" in view
    assert "guidance (Parseq)" not in view  # the manifest has no scale


@pytest.mark.parametrize("overrides", [True, False])
def test_frames_and_fps_show_what_a_parseq_manifest_renders(tab, tmp_path, overrides):
    frames = [{"frame": f, "deforum_prompt": "a cat", "seed": 50 + f} for f in range(12)]
    data = {"max_frames": 48, "fps": 15, "prompts": {"0": "ignored"}, "parseq_non_schedule_overrides": overrides,
            "parseq_manifest": json.dumps({"options": {"output_fps": 24}, "rendered_frames": frames})}
    path = tmp_path / "parseq.json"
    path.write_text(json.dumps(data))
    out = tab.import_files([upload(path)])
    values, base, status = out[:len(FIELDS)], out[len(FIELDS)], out[-1]
    fields = dict(zip(FIELDS, values))
    rendered = load_settings(fields_to_settings(fields, base))  # what Generate would render
    assert (fields["frames"], fields["fps"]) == (rendered.max_frames, rendered.fps)
    assert (rendered.max_frames, rendered.fps) == ((12, 24) if overrides else (48, 15))
    said = "Frames and Output fps show the manifest's 12 frames at 24 fps (its non-schedule overrides)," \
        " not the file's 48 frames at 15 fps"
    assert (said in status) == overrides, status
    plan_status = tab.plan(*values, base, [])[2]
    assert f"{rendered.max_frames} frames at {rendered.fps:g} fps" in plan_status
