"""ControlNet units with a video (and wan_control) as a VACE control video: the control frames
equal OpenCV's own calls on the decoded frames, each tiny VACE window is handed exactly its
segment at the unit's weight (read back from the real pipeline call), and every refusal is one
line before any model loads."""
from __future__ import annotations

import cv2
import diffusers
import numpy as np
import pytest
from counter_video import read_counter, write_counter_video

from deforum_wan.config.planner import format_plan
from deforum_wan.config.source_video import SourceReader
from deforum_wan.errors import SettingsError
from deforum_wan.render.control_frames import ControlFrames
from deforum_wan.render.inputs import PathRefused
from deforum_wan.render.job import JobSpec, check_job
from deforum_wan.render.loop import Renderer

JOB = {"prompts": {"0": "a watercolour"}, "wan_model": "tiny-random-vace", "W": 64, "H": 32, "seed": 7,
       "seed_behavior": "fixed", "color_coherence": "None", "fps": 16, "max_frames": 20, "wan_clip_duration": 1,
       "wan_backend": "diffusers", "wan_camera": "off"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("control") / "counter.mp4"
    write_counter_video(path, 40, fps=30)
    return path


def _unit(path, module="canny", weight="0:(0.5)", i=1) -> dict:
    return {f"cn_{i}_enabled": True, f"cn_{i}_module": module, f"cn_{i}_weight": weight, f"cn_{i}_vid_path": str(path)}


@pytest.mark.parametrize("kind", ["canny", "gray", "flow"])
def test_control_frames_are_opencvs_own_calls_on_each_decoded_frame(source, kind):
    kept = list(range(0, 40, 3))
    wanted = kept[2:9]
    got = ControlFrames(kind, SourceReader(source, 64, 32), kept).frames(wanted)
    frames = dict(zip(range(40), SourceReader(source, 64, 32).frames(list(range(40)))))

    def u8(f):
        return cv2.cvtColor(np.clip(np.round(f * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)

    for c, frame in zip(wanted, got):
        if kind == "canny":
            expected = cv2.Canny(u8(frames[c]), 100, 200)
            assert np.array_equal(np.round(frame * 255).astype(np.uint8), np.dstack([expected] * 3)), c
        elif kind == "gray":
            luma = cv2.cvtColor(np.clip(np.round(frames[c] * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
            assert np.abs(frame[..., 0] * 255 - luma).max() <= 1 and np.ptp(frame, axis=-1).max() == 0, c
        else:
            flow = cv2.calcOpticalFlowFarneback(u8(frames[c - 3]), u8(frames[c]), None, 0.5, 3, 15, 3, 5, 1.2, 0)
            mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1])
            hsv = np.dstack([ang * 180 / np.pi / 2, np.full_like(mag, 255),
                             cv2.normalize(mag, None, 0, 255, cv2.NORM_MINMAX)]).astype(np.uint8)
            expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            assert np.array_equal(np.round(frame * 255).astype(np.uint8), expected), c
            assert expected.max() > 0  # the counter changes between the frames: there is motion
    assert any(frame.max() > 0 for frame in got)


class RecordingVACE(diffusers.WanVACEPipeline):
    calls: list[dict] = []

    def __call__(self, *args, **kwargs):
        RecordingVACE.calls.append(kwargs)
        return super().__call__(*args, **kwargs)


def test_each_vace_window_gets_exactly_its_control_segment_at_the_units_weight(tmp_path, source, tiny_models_dir,
                                                                              monkeypatch):
    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    job = {**JOB, **_unit(source, "recolor_luminance", "0:(0.5), 10:(0.8)")}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    plan = checked.plan
    assert plan.control == "gray" and plan.source_frames == list(range(20)) and len(plan.windows) >= 2
    assert [w.control for w in plan.windows] == ["gray"] * len(plan.windows)
    # Deforum's weight schedule (linear between its keys) at each window's first frame
    assert [w.control_scale for w in plan.windows] == pytest.approx([0.5 + 0.03 * min(w.start_frame, 10)
                                                                      for w in plan.windows])
    assert len({w.control_scale for w in plan.windows}) > 1
    text = format_plan(plan)
    assert f"control video {source} (gray; its frames 0-19" in text and "control: VACE generates" in text
    result = Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert result.status == "done" and result.frames == 20
    for w, call in zip(plan.windows, RecordingVACE.calls, strict=True):
        video = [np.asarray(frame, np.float32) for frame in call["video"]]
        mask = [np.asarray(m) for m in call["mask"]]
        shown = video[w.context:]
        assert len(video) == w.native_frames and [read_counter(f) for f in shown] == w.source_frames
        assert all(np.ptp(f, axis=-1).max() <= 1 for f in shown)
        assert all((m == 255).all() for m in mask[w.context:])
        assert call["conditioning_scale"] == w.control_scale


def test_wan_control_canny_frames_reach_the_pipeline(tmp_path, source, tiny_models_dir, monkeypatch):
    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    job = {**JOB, "max_frames": 10, "wan_control": {"kind": "canny", "video": str(source), "weight": 1.5}}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    w, call = checked.plan.windows[0], RecordingVACE.calls[0]
    expected = ControlFrames("canny", SourceReader(source, 64, 32), list(range(10))).frames(w.source_frames)
    shown = np.stack([np.asarray(f) for f in call["video"]])[: len(expected)]
    assert np.array_equal(shown, np.round(expected * 255).astype(np.uint8)) and call["conditioning_scale"] == 1.5


def test_under_video_input_the_control_follows_the_source_frames(tmp_path, source):
    job = {**JOB, "animation_mode": "Video Input", "video_init_path": str(source), "extract_nth_frame": 2,
           "extract_from_frame": 3, **_unit(source, "depth_zoe"), "wan_depth_model": "tiny-depth"}
    plan = check_job(JobSpec(job), tmp_path, confine=False).plan
    assert plan.source_frames == [source_frame for source_frame in range(4, 40, 2)]  # Deforum's extraction
    assert plan.control == "depth" and all(w.control == "depth" and w.source_frames for w in plan.windows)
    # a unit in loopback mode reads the previous frame, not its video: no control
    looped = check_job(JobSpec({**job, "cn_1_loopback_mode": True}), tmp_path, confine=False).plan
    assert looped.control == "" and [w.control for w in looped.windows] == ["gray"] * len(looped.windows)


def test_plan_frames_name_each_frames_control(tmp_path, source, capsys):
    import json

    from deforum_wan.cli.main import main

    settings = tmp_path / "s.json"
    settings.write_text(json.dumps({**JOB, **_unit(source.name, "depth_midas", "0:(0.7)")}))
    (tmp_path / source.name).write_bytes(source.read_bytes())
    assert main(["plan", str(settings), "--frames", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["control"] for f in out["frames"]] == [{"kind": "depth", "strength": 0.7}] * 20
    assert [f["source_frame"] for f in out["frames"]] == list(range(20))
    assert all(w["control"] == "depth" and w["source_frames"] for w in out["windows"])


def test_what_cannot_be_a_control_video_is_one_line(tmp_path, source):
    def refused(extra: dict, match: str, error=SettingsError, confine=False):
        with pytest.raises(error, match=match) as info:
            check_job(JobSpec({**JOB, **extra}), tmp_path, confine=confine)
        assert "\n" not in str(info.value)

    refused({**_unit(source), "wan_model": "tiny-random"}, "cn_1_vid_path .*needs a VACE model .*wan2.1-vace-1.3b")
    refused(_unit(source, "openpose_full"), "pose control is not available: OpenPose's models .*non-commercial")
    refused(_unit(source, "lineart"), "cn_1_module 'lineart' has no VACE control here")
    refused({**_unit(source), **_unit(source, i=3)}, "VACE takes one control video; cn_1_vid_path and cn_3_vid_path")
    refused({**_unit(source), "max_frames": 50}, "cn_1_vid_path counter.mp4 gives 40 frames, the render 50")
    refused({**_unit(source), "wan_backend": "official"}, "conditioning_scale; set wan_backend to diffusers")
    refused(_unit(tmp_path / "none.mp4"), "cn_1_vid_path: video none.mp4: no such file")
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 50)
    refused(_unit(tmp_path / "broken.mp4"), "cn_1_vid_path: video broken.mp4 has no readable video stream")
    refused({"wan_control": "sketch:" + str(source)}, "wan_control kind must be one of")
    refused({"wan_control": {"kind": "flow", "video": "https://example.com/a.mp4"}}, "wan_control .* is a URL",
            PathRefused, confine=True)
    refused(_unit(source), "cn_1_vid_path .*counter.mp4.* must name an existing file inside", PathRefused, confine=True)


def test_a_depth_control_shows_each_window_its_frames_depth(tmp_path, source, tiny_models_dir, monkeypatch):
    from deforum_wan.render.depth import DepthEstimator

    monkeypatch.setattr(diffusers, "WanVACEPipeline", RecordingVACE)
    RecordingVACE.calls = []
    job = {**JOB, "max_frames": 10, **_unit(source, "depth_midas", "0:(1)"), "wan_depth_model": "tiny-depth"}
    checked = check_job(JobSpec(job), tmp_path, confine=False)
    Renderer.for_job(checked, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    [w], [call] = checked.plan.windows, RecordingVACE.calls
    depth = DepthEstimator("Midas-3-Hybrid", str(tiny_models_dir), "tiny-depth")
    frames = SourceReader(source, 64, 32).frames(w.source_frames)
    for frame, shown in zip(frames, call["video"]):
        d = depth(np.round(frame * 255).astype(np.uint8))
        expected = np.round((d - d.min()) / (d.max() - d.min()) * 255)
        shown = np.asarray(shown).astype(np.float32)
        assert np.ptp(shown, axis=-1).max() == 0 and shown.min() == 0 and shown.max() == 255  # grey, 0..1 per frame
        assert np.abs(shown[..., 0] - expected).max() <= 1


def test_a_depth_control_whose_model_is_not_on_disk_is_said_before_the_render(tmp_path, source):
    from deforum_wan.render.depth import missing_depth
    from deforum_wan.webui.depth_needs import depth_to_fetch, missing_message

    checked = check_job(JobSpec({**JOB, **_unit(source, "depth_zoe")}), tmp_path, confine=False)
    assert missing_depth(checked.settings, str(tmp_path / "models"), checked.plan).id == "depth-zoedepth-nyu-kitti"
    assert "Download depth model" in missing_message(checked.settings, str(tmp_path / "models"), checked.plan)
    assert depth_to_fetch(checked.settings).id == "depth-zoedepth-nyu-kitti"
    canny = check_job(JobSpec({**JOB, **_unit(source, "canny")}), tmp_path, confine=False)
    assert missing_depth(canny.settings, str(tmp_path / "models"), canny.plan) is None
