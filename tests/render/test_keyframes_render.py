"""Guided images as anchors: each keyframe is a frame Wan is told to produce (the first frame of
an I2V window, the last of an FLF2V or VACE window), lands on its exact output frame and is
never crossfaded; wan_loop's last window ends on frame 0 and its seam is measured."""
from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
from helpers import manifest as read_manifest
from PIL import Image

from deforum_wan.config.frames import frame_values
from deforum_wan.config.planner import LOOP, format_plan, make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError
from deforum_wan.render.images import load_image, read_png
from deforum_wan.render.job import JobSpec, check_job
from deforum_wan.render.loop import Renderer
from deforum_wan.render.names import frame_path

JOB = {"prompts": {"0": "a lighthouse"}, "wan_model": "tiny-random-vace", "animation_mode": "2D",
       "W": 64, "H": 64, "seed": 7, "color_coherence": "None", "wan_camera": "off", "use_looper": True,
       "wan_backend": "diffusers", "cfg_scale_schedule": "0: (5)"}


def _images(folder, n=3):
    rng = np.random.default_rng(3)
    names = []
    for i in range(n):
        name = f"key{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def _job(folder, keys: dict, **more) -> dict:
    return {**JOB, "init_images": json.dumps(keys), **more}


@pytest.mark.parametrize("model", ["tiny-random-vace", "tiny-random-flf2v"])
@pytest.mark.parametrize("fps, duration, overlap, keys", [
    (12, 1.0, 2, {"0": "key0.png", "13": "key1.png", "30": "key2.png"}),
    (16, 0.5, 4, {"0": "key0.png", "max_f/2": "key1.png", "max_f-3": "key2.png"}),
    (24, 2.0, 0, {"0": "key0.png", "7": "key1.png", "8": "key2.png"}),
    (8, 0.7, 1, {"0": "key0.png", "19": "key1.png", "25": "key2.png"}),
])
def test_each_keyframe_starts_a_window_and_ends_the_one_before(tmp_path, model, fps, duration, overlap, keys):
    _images(tmp_path)
    if model == "tiny-random-flf2v":  # every window between two images: one window per stretch, the loop closes it
        duration, keys = 5.0, {**keys, "max_f": "key0.png"}
    job = _job(tmp_path, keys, wan_model=model, fps=fps, max_frames=40, wan_clip_duration=duration,
               wan_overlap=overlap)
    checked = check_job(JobSpec(job, settings_base=str(tmp_path)), tmp_path, confine=False)
    plan, pins = checked.plan, {k.frame: k.image for k in checked.settings.keyframes}
    assert plan.anchors == pins
    for frame, image in pins.items():
        start = next(w for w in plan.windows if w.start_frame == frame and w.start_image)
        assert start.start_image == image and start.overlap == 0 and start.mode == "i2v"
        if frame:
            before = plan.windows[start.index - 1]
            lead = 0 if before.index == 0 or before.cut else before.overlap + 1
            assert before.end_frame == frame and before.last_image == image
            # the image is the window's last frame: exactly 4n+1 with it
            assert before.native_frames == lead + before.new_frames + 1 and before.native_frames % 4 == 1
    assert sum(s.end - s.start for s in plan.segments) == 40
    if model == "tiny-random-flf2v":
        assert all(w.last_image for w in plan.windows[:-1])
    assert "pinned to" in format_plan(plan)


def test_a_plain_i2v_partner_starts_windows_at_keyframes_and_says_so(tmp_path):
    plan = make_plan(load_settings(_job(tmp_path, {"0": "a.png", "20": "b.png"}, wan_model="tiny-random",
                                        max_frames=30)))
    assert [w.start_image for w in plan.windows if w.start_image] == ["a.png", "b.png"]
    assert not any(w.last_image for w in plan.windows)
    assert any("cannot end a window on an image" in w for w in plan.warnings)


def test_flf2v_plans_when_its_windows_have_both_ends_and_is_one_line_otherwise(tmp_path):
    def plan_of(keys, **more):
        return make_plan(load_settings(_job(tmp_path, keys, wan_model="tiny-random-flf2v", max_frames=30, **more)))

    with pytest.raises(SettingsError, match="no window here has a last image") as err:
        plan_of({"0": "a.png"})
    assert "\n" not in str(err.value)
    plan = plan_of({"0": "a.png", "20": "b.png", "max_f": "c.png"}, wan_clip_duration=2)
    assert [w.last_image for w in plan.windows if w.last_image] == ["b.png", "c.png"]
    plan = plan_of({"0": "a.png"}, wan_loop=True, wan_clip_duration=2)
    assert plan.loop and [w.last_image for w in plan.windows] == [LOOP]
    # the frames after the last image, or a stretch longer than one window, have no end to go to
    for keys, more in (({"0": "a.png", "20": "b.png"}, {}), ({"0": "a.png"}, {"wan_loop": True, "wan_clip_duration": 0.5})):
        with pytest.raises(SettingsError, match="end on no image: put guided images at most a window apart") as err:
            plan_of(keys, **more)
        assert "\n" not in str(err.value)


def test_plan_frames_name_the_keyframe_in_force_and_its_anchor(tmp_path):
    settings = load_settings(_job(tmp_path, {"0": "a.png", "max_f/2": "b.png"}, max_frames=21))
    rows = frame_values(settings)
    assert [r["keyframe"] for r in rows] == ["a.png"] * 10 + ["b.png"] * 11
    assert [r["frame"] for r in rows if r["anchor"]] == [0, 10]


def test_the_plan_command_shows_keyframes_anchors_and_pins(tmp_path, capsys):
    from deforum_wan.cli.main import main

    (tmp_path / "s.txt").write_text(json.dumps(_job(tmp_path, {"0": "a.png", "max_f/2": "b.png"}, max_frames=21,
                                                    wan_loop=True, wan_clip_duration=1)))
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "s.txt"), "--json", "--frames"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [(f["frame"], f["keyframe"]) for f in plan["frames"] if f["anchor"]] == [(0, "a.png"), (10, "b.png")]
    assert plan["loop"] and plan["anchors"] == {"0": "a.png", "10": "b.png"}
    assert main(["plan", str(tmp_path / "s.txt"), "--frames"]) == 0
    out = capsys.readouterr().out
    assert "[pinned to b.png]" in out and "[guided by b.png]" in out
    assert main(["plan", str(tmp_path / "s.txt")]) == 0
    out = capsys.readouterr().out
    assert "start a.png, end b.png" in out and "end frame 0 (loop)" in out


class RecordingVACE(diffusers.WanVACEPipeline):
    calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        RecordingVACE.calls.append(kwargs)
        return super().__call__(*args, **kwargs)


class RecordingFLF2V(diffusers.WanImageToVideoPipeline):
    calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        RecordingFLF2V.calls.append(kwargs)
        return super().__call__(*args, **kwargs)

    def prepare_latents(self, *args, **kwargs):  # the conditioning tensors the transformer is given
        out = super().prepare_latents(*args, **kwargs)
        RecordingFLF2V.calls[-1]["condition"] = out[1].detach().cpu().numpy()
        return out


@pytest.mark.parametrize("fps, duration, overlap", [(12, 1.0, 2), (16, 0.6, 1)])
def test_vace_anchors_hold_the_image_with_mask_0_and_the_written_frame_is_it(
        tmp_path, tiny_models_dir, monkeypatch, fps, duration, overlap):
    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    names = _images(tmp_path)
    job = _job(tmp_path, {"0": names[0], "11": names[1], "19": names[2]}, fps=fps, max_frames=26,
               wan_clip_duration=duration, wan_overlap=overlap)
    checked = check_job(JobSpec(job, settings_base=str(tmp_path)), tmp_path, confine=False)
    plan = checked.plan
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert result.status == "done" and len(RecordingVACE.calls) == len(plan.windows)
    for w, call in zip(plan.windows, RecordingVACE.calls, strict=True):
        video = [np.asarray(frame, np.float32) / 255 for frame in call["video"]]
        mask = [np.asarray(m) for m in call["mask"]]
        assert len(video) == w.native_frames
        if w.start_image:
            assert np.abs(video[0] - load_image(w.start_image, 64, 64, tmp_path)).max() <= 1 / 255 and (mask[0] == 0).all()
        if w.last_image:  # the last pixel frame: alone in the last latent frame (4n+1 frames)
            assert (w.native_frames - 1) % 4 == 0
            assert np.abs(video[-1] - load_image(w.last_image, 64, 64, tmp_path)).max() <= 1 / 255 and (mask[-1] == 0).all()
            assert all((m == 255).all() for m in mask[w.context or 1:-1])
    for frame, image in plan.anchors.items():
        written = read_png(frame_path(result.run_dir, result.timestring, frame)).astype(np.float32) / 255
        assert np.abs(written - load_image(image, 64, 64, tmp_path)).max() <= 1 / 255


def test_flf2v_windows_get_both_ends_and_a_loop_ends_on_frame_0_with_its_seam_measured(
        tmp_path, tiny_models_dir, monkeypatch):
    monkeypatch.setattr(diffusers, "WanImageToVideoPipeline", RecordingFLF2V)
    RecordingFLF2V.calls = []
    names = _images(tmp_path, 2)
    job = _job(tmp_path, {"0": names[0], "10": names[1]}, wan_model="tiny-random-flf2v", fps=16, max_frames=20,
               wan_clip_duration=1.0, wan_overlap=2, wan_loop=True)
    checked = check_job(JobSpec(job, settings_base=str(tmp_path)), tmp_path, confine=False)
    plan = checked.plan
    assert plan.loop and plan.windows[-1].last_image == LOOP
    events = []
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir), on_event=events.append).run()
    assert result.status == "done" and len(RecordingFLF2V.calls) == len(plan.windows)
    for w, call in zip(plan.windows, RecordingFLF2V.calls, strict=True):
        assert (call.get("last_image") is not None) == bool(w.last_image)
        # the condition's mask channels (one per pixel frame of a latent frame): the first frame given,
        # and the window's last pixel frame, the last channel of its last latent frame; the rest generated
        mask = call["condition"][:, :4]
        assert mask.shape[2] == (w.native_frames - 1) // 4 + 1
        assert (mask[:, :, 0] == 1).all() and (mask[:, :, 1:-1] == 0).all() and (mask[:, :3, -1] == 0).all()
        assert (mask[:, 3, -1] == (1 if w.last_image else 0)).all()
        if w.last_image and w.last_image != LOOP:
            assert np.abs(np.asarray(call["last_image"], np.float32) / 255 - load_image(w.last_image, 64, 64, tmp_path)).max() \
                <= 1 / 255
    head = read_png(frame_path(result.run_dir, result.timestring, 0))
    assert np.array_equal(np.asarray(RecordingFLF2V.calls[-1]["last_image"]), head)  # conditioned on frame 0
    manifest = read_manifest(result.run_dir, result.timestring)
    seam = manifest["loop_seam"]
    frames = [read_png(frame_path(result.run_dir, result.timestring, k)).astype(np.float32) / 255 for k in range(20)]
    steps = [np.abs(frames[k + 1] - frames[k]).mean() for k in range(19)]
    assert seam["seam"] == pytest.approx(np.abs(frames[-1] - frames[0]).mean(), abs=1e-5)
    assert seam["ratio"] == pytest.approx(seam["seam"] / np.median(steps), rel=1e-3)
    assert any("loop seam" in e.get("message", "") for e in events)


def test_a_guided_window_that_ends_on_an_image_follows_the_path_to_it(tmp_path, tiny_models_dir, monkeypatch):
    from deforum_wan.backends import camera_guide

    guides = []
    real = camera_guide.PathGuidance.__init__

    def keep(self, pipe, guide, *args, **kwargs):
        guides.append(guide)
        real(self, pipe, guide, *args, **kwargs)

    monkeypatch.setattr(camera_guide.PathGuidance, "__init__", keep)
    names = _images(tmp_path, 2)
    job = _job(tmp_path, {"0": names[0], "12": names[1]}, fps=16, max_frames=20,
               wan_clip_duration=1.0, wan_camera="guide", zoom="0: (0.96)")
    checked = check_job(JobSpec(job, settings_base=str(tmp_path)), tmp_path, confine=False)
    ending = [w for w in checked.plan.windows if w.last_image and w.wan_camera == "guide"]
    assert ending and "the path leads there" in format_plan(checked.plan)
    Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert len(guides) == len([w for w in checked.plan.windows if w.wan_camera == "guide"])
    guide = guides[[w.index for w in checked.plan.windows if w.wan_camera == "guide"].index(ending[0].index)]
    assert np.abs(guide.frames[-1] - load_image(names[1], 64, 64, tmp_path)).max() <= 1 / 255
    assert (guide.cover[-1] == 1).all() and guide.cover[1:-1].min() < 1  # zooming out uncovers the edges before it


def test_the_tab_plan_shows_each_windows_pins_and_a_cut_only_where_there_is_one(tmp_path):
    from deforum_wan.webui.plan_view import plan_html

    plan = make_plan(load_settings(_job(tmp_path, {"0": "a.png", "13": "b.png"}, max_frames=30, wan_clip_duration=1,
                                        wan_loop=True)))
    html = plan_html(plan)
    assert "i2v (start a.png, end b.png)" in html and "i2v (start b.png)" in html
    assert "end frame 0 (loop)" in html and "(cut)" not in html


def test_pinned_ends_run_on_one_gpu_and_a_guided_image_at_frame_0_replaces_the_init_image(tmp_path):
    with pytest.raises(SettingsError, match="runs on one GPU; set wan_gpus to 1") as err:
        make_plan(load_settings(_job(tmp_path, {"0": "a.png"}, wan_model="tiny-random-flf2v", max_frames=30,
                                     wan_loop=True, wan_gpus=2, wan_clip_duration=2)))
    assert "\n" not in str(err.value)
    plan = make_plan(load_settings(_job(tmp_path, {"0": "a.png"}, max_frames=30, use_init=True, init_image="i.png")))
    assert plan.windows[0].start_image == "a.png"
    assert any("the guided image at frame 0 starts the video instead" in w for w in plan.warnings)


def test_a_vace_loop_keeps_its_tail_and_ends_on_frame_0(tmp_path, tiny_models_dir, monkeypatch):
    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    job = {**JOB, "use_looper": False, "fps": 16, "max_frames": 24, "wan_clip_duration": 1.0, "wan_loop": True}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    last = checked.plan.windows[-1]
    assert last.last_image == LOOP and last.context and last.index > 0
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    call = RecordingVACE.calls[-1]
    video = [np.asarray(frame) for frame in call["video"]]
    mask = [np.asarray(m) for m in call["mask"]]
    assert np.array_equal(video[-1], read_png(frame_path(result.run_dir, result.timestring, 0))) and (mask[-1] == 0).all()
    assert all((m == 0).all() for m in mask[:last.context]) and all((m == 255).all() for m in mask[last.context:-1])
    assert read_manifest(result.run_dir, result.timestring)["loop_seam"]["median_step"] > 0


def test_a_stopped_loop_with_guided_images_resumes_to_the_same_frames(tmp_path, tiny_models_dir):
    from deforum_wan.errors import Interrupted

    names = _images(tmp_path, 2)
    job = _job(tmp_path, {"0": str(tmp_path / names[0]), "9": str(tmp_path / names[1])}, fps=16, max_frames=24,
               wan_clip_duration=0.6, wan_overlap=1, wan_loop=True, seed_behavior="fixed")

    def render(outdir, resume=None, **kwargs):
        return Renderer.for_job(check_job(JobSpec(job, resume=resume), outdir, confine=False), outdir,
                                models_dir=str(tiny_models_dir), sync_writes=True, **kwargs).run()

    whole = render(tmp_path / "whole")
    windows = check_job(JobSpec(job), tmp_path, confine=False).plan.windows
    assert len(windows) >= 4 and windows[-1].last_image == LOOP
    stop: list[int] = []
    with pytest.raises(Interrupted):
        render(tmp_path / "cut", should_stop=lambda: bool(stop),
               on_event=lambda e: stop.append(1) if e["event"] == "window_done" and e["window"] == 1 else None)
    (run_dir,) = (tmp_path / "cut").iterdir()
    ts = next(run_dir.glob("*_settings.txt")).name[:14]
    resumed = render(tmp_path / "cut", resume=ts)  # the last window reads frame 0 back from disk
    assert resumed.status == "done" and resumed.frames == whole.frames == 24
    for k in range(24):
        a = read_png(frame_path(whole.run_dir, whole.timestring, k)).astype(np.int16)
        b = read_png(frame_path(run_dir, ts, k)).astype(np.int16)
        assert np.abs(a - b).max() <= 1, k
    seam, again = read_manifest(whole.run_dir, whole.timestring)["loop_seam"], read_manifest(run_dir, ts)["loop_seam"]
    assert again["seam"] == pytest.approx(seam["seam"], abs=2e-3) and seam["median_step"] > 0



def test_the_camera_preview_shows_each_guided_image_at_its_frame_and_moves_on_from_it(tmp_path):
    from deforum_wan.render.camera_preview import write_preview

    names = _images(tmp_path, 2)
    settings = load_settings(_job(tmp_path, {"0": str(tmp_path / names[0]), "6": str(tmp_path / names[1])},
                                  max_frames=10, zoom="0: (1.05)"))
    write_preview(settings, tmp_path / "preview")
    frame = [np.asarray(Image.open(tmp_path / "preview" / f"{i:09}.png"), np.int16) for i in range(10)]
    for k, name in ((0, names[0]), (6, names[1])):
        expected = np.asarray(Image.open(tmp_path / name), np.int16)
        assert np.abs(frame[k] - expected).max() <= 1, k
    second = np.asarray(Image.open(tmp_path / names[1]), np.int16)
    assert np.abs(frame[5] - second).mean() > 20 and np.abs(frame[7] - second).mean() < np.abs(frame[5] - second).mean()


@pytest.mark.parametrize("keys, more, message", [
    ({"0": "a.png", "9": "b.png"}, {"wan_overlap": 15, "wan_clip_duration": 1},
     "wan_overlap=15 leaves no room for the image a 17-frame window ends on; use at most 14"),
    ({}, {"use_looper": False, "wan_loop": True, "max_frames": 8}, "wan_loop: the video is one window"),
])
def test_what_cannot_pin_its_frames_is_one_line(tmp_path, keys, more, message):
    with pytest.raises(SettingsError, match=message) as err:
        make_plan(load_settings(_job(tmp_path, keys, **{"max_frames": 30, **more})))
    assert "\n" not in str(err.value)
