"""Deforum's Video Input as Wan video-to-video: the source frame of every output frame (Deforum's
extraction, as its own vid2frames keeps them), each window handed exactly its segment of the
source (read back from the counter drawn into the frames the real pipeline received), the
strength from strength_schedule, and what cannot restyle a video refused in one line."""
from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
from counter_video import read_counter, write_counter_video
from helpers import FIXTURES

from deforum_wan.backends.base import GenerateRequest, check_request
from deforum_wan.config.planner import format_plan, min_denoise
from deforum_wan.errors import SettingsError, WanError
from deforum_wan.models.registry import get_model
from deforum_wan.render.job import JobSpec, check_job
from deforum_wan.render.loop import Renderer

TABLE = [c for c in json.loads((FIXTURES / "deforum_video_input" / "extraction.json").read_text())["cases"]
         if c["total"] == 40]
JOB = {"prompts": {"0": "a watercolour"}, "wan_model": "tiny-random", "animation_mode": "Video Input",
       "W": 64, "H": 32, "seed": 7, "seed_behavior": "fixed", "color_coherence": "None"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "counter.mp4"
    write_counter_video(path, 40, fps=30)
    return path


def _extraction(case: dict) -> dict:
    return {k: case[k] for k in ("extract_from_frame", "extract_to_frame", "extract_nth_frame")}


@pytest.mark.parametrize("fps", [8, 15, 24, 30])
def test_every_output_frame_restyles_the_kept_frame_deforum_would(tmp_path, source, fps):
    for case in TABLE:
        job = {**JOB, "video_init_path": str(source), "fps": fps, "wan_clip_duration": 0.6,
               "strength_schedule": "0: (0.7), 5: (0.7), 6: (0.2)", **_extraction(case)}
        checked = check_job(JobSpec(job), tmp_path, confine=False)
        plan, kept = checked.plan, case["source_frames"]
        assert plan.max_frames == len(kept) and plan.source_frames == kept, (fps, case)
        assert plan.fps == fps and plan.windows and all(w.mode == "v2v" for w in plan.windows)
        for w in plan.windows:
            lead = 0 if w.index == 0 else w.overlap + 1
            assert len(w.source_frames) == w.native_frames - lead
            # Its new frames show the kept frames of its own output frames (one either side at
            # the rounding of native to output time), in order; past its end the segment goes on.
            new = w.source_frames[:w.new_frames]
            near = set(kept[max(w.start_frame - 1, 0): w.end_frame + 1])
            assert set(new) <= near and new == sorted(new), (fps, case, w.index)
            assert w.source_frames == sorted(w.source_frames)
            strength = 0.7 if w.start_frame < 6 else 0.2
            assert w.denoise == pytest.approx(max(1 - strength, min_denoise(w.steps)), abs=1e-4)
        assert plan.windows[0].source_frames[0] == kept[0]
        covered = {s for w in plan.windows for s in w.source_frames}
        if fps <= plan.native_fps:  # no kept frame skipped (above Wan's 16 fps, it samples them)
            assert set(kept) <= covered


def test_native_retime_maps_wan_frames_to_the_source_by_time(tmp_path, source):
    job = {**JOB, "video_init_path": str(source), "fps": 10, "wan_retime": "native"}
    plan = check_job(JobSpec(job), tmp_path, confine=False).plan
    kept = list(range(40))
    assert plan.fps == 16 and plan.max_frames == 64  # 40 frames at 10 fps = 4 s at Wan's 16 fps
    assert plan.source_frames == [kept[min(int(i * 10 / 16 + 0.5), 39)] for i in range(64)]


class RecordingV2V(diffusers.WanVideoToVideoPipeline):
    """diffusers' own pipeline, keeping what each call was handed and what it returned."""
    calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        RecordingV2V.calls.append({**kwargs, "result": np.asarray(out.frames[0])})
        return out


def test_each_window_gets_exactly_its_segment_of_the_source(tmp_path, source, tiny_models_dir, monkeypatch):
    monkeypatch.setattr(diffusers, "WanVideoToVideoPipeline", RecordingV2V)
    RecordingV2V.calls = []
    job = {**JOB, "video_init_path": str(source), "fps": 15, "extract_nth_frame": 2, "extract_from_frame": 3,
           "wan_clip_duration": 1, "strength_schedule": "0: (0.6), 7: (0.6), 8: (0.25)", "wan_backend": "auto"}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    plan = checked.plan
    assert plan.source_frames == list(range(4, 40, 2)) and len(plan.windows) >= 2
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert result.status == "done" and result.frames == plan.max_frames
    assert len(RecordingV2V.calls) == len(plan.windows)
    for w, call in zip(plan.windows, RecordingV2V.calls):
        video = [np.asarray(frame) for frame in call["video"]]
        assert len(video) == w.native_frames and video[0].shape == (32, 64, 3)
        assert call["strength"] == pytest.approx(w.denoise) and "num_frames" not in call
        lead = 0 if w.index == 0 else w.overlap + 1
        assert [read_counter(frame) for frame in video[lead:]] == w.source_frames
        if lead:  # the video so far: the previous window's last frames, not the source
            previous = plan.windows[w.index - 1]
            done = RecordingV2V.calls[w.index - 1]["result"]
            tail = done[:previous.new_frames] if previous.index == 0 else \
                done[1:][:previous.overlap + previous.new_frames]
            expected = np.round(tail[-lead:] * 255)
            assert np.abs(np.stack(video[:lead]).astype(np.float32) - expected).max() <= 1


def test_what_cannot_restyle_a_video_is_one_line(tmp_path, source):
    base = {**JOB, "video_init_path": str(source), "fps": 15}
    for keys, why in (({"wan_model": "tiny-random-i2v"}, "restyles the video with a text-to-video model"),
                      ({"wan_backend": "official"}, "set wan_backend to diffusers or auto"),
                      ({"wan_continue_model": "tiny-random-i2v"}, "remove wan_continue_model")):
        with pytest.raises(SettingsError, match=why) as caught:
            check_job(JobSpec({**base, **keys}), tmp_path, confine=False)
        assert "\n" not in str(caught.value)
    frames = np.zeros((5, 32, 64, 3), np.float32)
    req = dict(prompt="a", negative_prompt="", num_frames=5, width=64, height=32, seed=1, guidance_scale=5, steps=2)
    check_request(GenerateRequest(mode="v2v", video=frames, strength=0.5, **req), get_model("tiny-random"))
    for model, kwargs, why in (
            ("tiny-random-i2v", dict(mode="v2v", video=frames, strength=0.5), "video-to-video takes a text-to-video"),
            ("tiny-random", dict(mode="v2v", strength=0.5), "v2v takes a video"),
            ("tiny-random", dict(mode="v2v", video=frames[:4], strength=0.5), "num_frames 5"),
            ("tiny-random", dict(mode="v2v", video=frames, strength=0.0), r"strength in \(0, 1\]")):
        with pytest.raises(WanError, match=why):
            check_request(GenerateRequest(**kwargs, **req), get_model(model))


def test_plan_says_which_source_frames_condition_each_window(tmp_path, source):
    job = {**JOB, "video_init_path": str(source), "fps": 15, "wan_clip_duration": 1}
    plan = check_job(JobSpec(job), tmp_path, confine=False).plan
    text = format_plan(plan)
    assert f"video input {source} (source frames 0-39" in text
    for w in plan.windows:
        row = next(line for line in text.splitlines() if line.startswith(f"{w.index:>3} "))
        assert f"{w.source_frames[0]}-{w.source_frames[-1]}" in row and "v2v" in row


def test_the_plan_command_reads_the_video_next_to_its_settings_file(tmp_path, source):
    import subprocess
    import sys

    (tmp_path / "clip.mp4").write_bytes(source.read_bytes())
    (tmp_path / "s.txt").write_text(json.dumps({**JOB, "video_init_path": "clip.mp4", "extract_nth_frame": 4}))
    run = subprocess.run([sys.executable, "-m", "deforum_wan", "plan", str(tmp_path / "s.txt"), "--json"],
                         cwd=tmp_path.parent, capture_output=True, text=True, timeout=120)  # not the file's folder
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["source_frames"] == list(range(0, 40, 4)) and plan["max_frames"] == 10
    assert plan["video_input"] == str(tmp_path / "clip.mp4")


def test_plan_frames_name_each_output_frames_source_frame(tmp_path, source, capsys):
    from deforum_wan.cli.main import main

    (tmp_path / "clip.mp4").write_bytes(source.read_bytes())
    settings = {**JOB, "video_init_path": "clip.mp4", "extract_nth_frame": 3, "extract_from_frame": 5}
    (tmp_path / "s.txt").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(["plan", str(tmp_path / "s.txt"), "--json", "--frames"]) == 0
    plan = json.loads(capsys.readouterr().out)
    kept = [c for c in range(40) if c >= 5 and c % 3 == 0]  # Deforum's rule on the 40-frame source
    assert [f["source_frame"] for f in plan["frames"]] == kept == plan["source_frames"]
    assert main(["plan", str(tmp_path / "s.txt"), "--frames"]) == 0
    assert f"(source frame {kept[-1]})" in capsys.readouterr().out


def test_a_relative_video_is_saved_as_the_file_read_and_an_unread_one_is_not_rendered(tmp_path, source):
    from deforum_wan.config.settings import load_settings

    (tmp_path / "clip.mp4").write_bytes(source.read_bytes())
    job = {**JOB, "video_init_path": "clip.mp4", "max_frames": 3}
    checked = check_job(JobSpec(job, settings_base=str(tmp_path)), tmp_path / "out", confine=False)
    saved = checked.settings.to_dict()  # what the run folder's settings file holds, for a resume
    assert saved["video_init_path"] == str(tmp_path / "clip.mp4") and saved["max_frames"] == 40
    unread = load_settings(job)  # the tab's save: the video is not opened
    assert unread.max_frames == 3 and unread.video_input.kept == ()
    with pytest.raises(WanError, match="Video Input source was not read"):
        Renderer(unread, tmp_path / "out").run()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_stopped_video_input_run_resumes_to_the_same_frames(tmp_path, source, tiny_models_dir):
    from deforum_wan.errors import Interrupted
    from deforum_wan.render.images import read_png

    job = {**JOB, "video_init_path": str(source), "fps": 15, "extract_nth_frame": 2, "wan_clip_duration": 0.6}

    def render(outdir, **kwargs):
        return Renderer.for_job(check_job(JobSpec(job), outdir, confine=False), outdir,
                                models_dir=str(tiny_models_dir), sync_writes=True, **kwargs).run()

    whole = render(tmp_path / "whole")
    assert len(check_job(JobSpec(job), tmp_path, confine=False).plan.windows) >= 3
    stop: list[int] = []
    with pytest.raises(Interrupted):
        render(tmp_path / "cut", should_stop=lambda: bool(stop),
               on_event=lambda e: stop.append(1) if e["event"] == "window_done" and e["window"] == 1 else None)
    (run_dir,) = (tmp_path / "cut").iterdir()
    ts = next(run_dir.glob("*_settings.txt")).name[:14]
    # The resume reads the run's own settings file (the video's path and kept frames in it).
    resumed = Renderer.for_job(check_job(JobSpec(job, resume=ts), tmp_path / "cut", confine=False), tmp_path / "cut",
                               models_dir=str(tiny_models_dir)).run()
    assert resumed.status == "done" and resumed.frames == whole.frames == 20
    names = sorted(p.name[14:] for p in whole.run_dir.glob(f"{whole.timestring}_[0-9]*.png"))
    assert len(names) == 20
    for name in names:
        a = read_png(whole.run_dir / f"{whole.timestring}{name}")
        b = read_png(run_dir / f"{ts}{name}")
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 1, name


class RecordingVACE(diffusers.WanVACEPipeline):
    calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        RecordingVACE.calls.append(kwargs)
        return super().__call__(*args, **kwargs)


def test_a_vace_model_regenerates_each_segment_from_its_grey_frames(tmp_path, source, tiny_models_dir, monkeypatch):
    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    job = {**JOB, "wan_model": "tiny-random-vace", "video_init_path": str(source), "fps": 15,
           "extract_nth_frame": 2, "wan_clip_duration": 1, "wan_backend": "diffusers"}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    plan = checked.plan
    assert [w.mode for w in plan.windows] == ["t2v"] + ["i2v"] * (len(plan.windows) - 1) and len(plan.windows) >= 2
    assert all(w.control == "gray" and w.source_frames for w in plan.windows)
    assert "gray: VACE regenerates" in format_plan(plan)
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert result.status == "done" and result.frames == plan.max_frames == 20
    for w, call in zip(plan.windows, RecordingVACE.calls, strict=True):
        video = [np.asarray(frame, np.float32) for frame in call["video"]]
        mask = [np.asarray(m) for m in call["mask"]]
        lead = w.context
        assert len(video) == len(mask) == w.native_frames and lead == (0 if w.index == 0 else w.overlap + 1)
        shown = video[lead:]
        assert [read_counter(frame) for frame in shown] == w.source_frames
        assert all(np.ptp(frame, axis=-1).max() <= 1 for frame in shown)  # grey: R = G = B
        assert all((m == 255).all() for m in mask[lead:]) and all((m == 0).all() for m in mask[:lead])


def _mask_video(path, frames: int) -> None:
    """White (change) on the left half, black (keep) on the right, at the counter video's size."""
    import imageio_ffmpeg

    frame = np.zeros((32, 160, 3), np.uint8)
    frame[:, :80] = 255
    writer = imageio_ffmpeg.write_frames(str(path), (160, 32), fps=30, macro_block_size=16, quality=9)
    writer.send(None)
    for _ in range(frames):
        writer.send(frame)
    writer.close()


def test_a_mask_video_keeps_the_source_outside_it_on_a_vace_model(tmp_path, source, tiny_models_dir, monkeypatch):
    from deforum_wan.config.source_video import SourceReader
    from deforum_wan.render.images import read_png

    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    _mask_video(tmp_path / "mask.mp4", 40)
    job = {**JOB, "wan_model": "tiny-random-vace", "video_init_path": str(source), "fps": 16,
           "extract_nth_frame": 2, "wan_clip_duration": 1, "wan_backend": "diffusers", "use_mask_video": True,
           "video_mask_path": str(tmp_path / "mask.mp4")}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    assert f"video mask {tmp_path / 'mask.mp4'}: each frame changes only where" in format_plan(checked.plan)
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert result.status == "done" and result.frames == 20
    for w, call in zip(checked.plan.windows, RecordingVACE.calls, strict=True):
        for m in call["mask"][w.context:]:  # generated on the left, kept on the right
            m = np.asarray(m)
            assert (m[:, :28] == 255).all() and (m[:, 36:] == 0).all()
    # The right half of every output frame is its source frame, exactly (fps 16: no retime blend).
    sources = SourceReader(source, 64, 32).frames(checked.plan.source_frames)
    for i, expected in enumerate(sources):
        frame = read_png(result.run_dir / f"{result.timestring}_{i:09d}.png")
        assert np.abs(frame[:, 40:].astype(np.int16) - np.round(expected[:, 40:] * 255)).max() <= 1, i
        assert np.abs(frame[:, :24] / 255 - expected[:, :24]).mean() > 0.05, i  # the left half generated
    # Inverted, the left half is kept instead.
    inverted = check_job(JobSpec({**job, "invert_mask": True}), tmp_path, confine=False)
    result = Renderer.for_job(inverted, tmp_path / "inverted", models_dir=str(tiny_models_dir)).run()
    for i, expected in enumerate(sources):
        frame = read_png(result.run_dir / f"{result.timestring}_{i:09d}.png")
        assert np.abs(frame[:, :24].astype(np.int16) - np.round(expected[:, :24] * 255)).max() <= 1, i


def test_a_mask_video_that_cannot_be_used_is_one_line(tmp_path, source):
    _mask_video(tmp_path / "short.mp4", 10)
    base = {**JOB, "wan_model": "tiny-random-vace", "video_init_path": str(source), "use_mask_video": True}
    with pytest.raises(SettingsError, match="video_mask_path short.mp4 gives 10 frames, the video 40; the mask must"):
        check_job(JobSpec({**base, "video_mask_path": str(tmp_path / "short.mp4")}), tmp_path, confine=False)
    _mask_video(tmp_path / "long.mp4", 40)
    with pytest.raises(SettingsError, match="use_mask_video needs a VACE model"):
        check_job(JobSpec({**base, "wan_model": "tiny-random", "video_mask_path": str(tmp_path / "long.mp4")}),
                  tmp_path, confine=False)
    from deforum_wan.render.inputs import PathRefused

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "clip.mp4").write_bytes(source.read_bytes())
    with pytest.raises(PathRefused, match="video_mask_path .*short.mp4.* must name an existing file inside"):
        check_job(JobSpec({**base, "video_init_path": "clip.mp4", "video_mask_path": str(tmp_path / "short.mp4")}),
                  tmp_path / "out")
