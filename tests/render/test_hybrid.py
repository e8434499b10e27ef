"""Deforum's hybrid video: the video's motion (flow, perspective, affine) as OpenCV computes it
for Deforum, that motion moving the guided path, the camera preview and the adherence measure,
the composite in the guide, and the settings and plan of hybrid files (synthetic videos with a
known pan or zoom, written and decoded for real)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from motion_video import moving_frames, step_matrix, write_video
from PIL import Image

from deforum_wan.config.frames import frame_values
from deforum_wan.config.planner import format_plan, make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.config.source_video import SourceReader
from deforum_wan.errors import SettingsError
from deforum_wan.render.hybrid_motion import VideoMotion, video_motion

W, H = 96, 64
PAN = (3.0, -2.0)
BASE = {"W": W, "H": H, "fps": 16, "seed": 3, "prompts": {"0": "a lighthouse"}, "wan_model": "tiny-random",
        "animation_mode": "2D", "zoom": "0: (1)", "color_coherence": "None", "hybrid_motion": "Optical Flow",
        "hybrid_flow_method": "DIS Medium"}
REAL_HYBRID = ("xmyx_Evolve-Glitch-2.txt", "xmyx_Flashbacks-30s.txt", "xmyx_Scene-Change-30s.txt")


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("hybrid") / "pan.mp4"
    write_video(path, moving_frames(24, W, H, PAN))
    return path


@pytest.fixture(scope="module")
def zoom_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("hybrid") / "zoom.mp4"
    write_video(path, moving_frames(12, W, H, zoom=1.03))
    return path


def settings_of(video, read=True, **extra):
    return load_settings({**BASE, "video_init_path": str(video), **extra}, read_video=read)


def motion_of(video, **extra) -> VideoMotion:
    motion = video_motion(settings_of(video, **extra), W, H)
    assert motion is not None
    return motion


def test_the_flow_of_a_known_pan_is_that_pan(pan_video):
    motion = motion_of(pan_video)
    for f in (1, 2, 10, 23):
        inner = motion.motion(f)[8:-8, 8:-8].reshape(-1, 2)
        np.testing.assert_allclose(np.median(inner, axis=0), PAN, atol=0.1)
    assert motion.motion(0) is None and motion.motion(24) is None  # no step into frame 0, none past the end


@pytest.mark.parametrize("kind", ["Perspective", "Affine"])
def test_the_ransac_fit_of_a_known_zoom_is_that_zoom(zoom_video, kind):
    motion = motion_of(zoom_video, hybrid_motion=kind)
    want = step_matrix(W, H, zoom=1.03)
    ys, xs = np.mgrid[4:H:8, 4:W:8]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1)
    errors = []
    for f in range(1, 12):
        found = motion.motion(f)
        assert found.shape == ((3, 3) if kind == "Perspective" else (2, 3))
        full = np.vstack([found, [0, 0, 1]]) if kind == "Affine" else found
        moved, wanted = grid @ full.T, grid @ want.T
        errors.append(np.linalg.norm(moved[:, :2] / moved[:, 2:] - wanted[:, :2], axis=1).mean())
    assert np.mean(errors) < 0.6 and max(errors) < 1.2, errors  # the zoom moves the corners 1.4 px a frame


@pytest.mark.parametrize("method", ["DIS Medium", "DIS Fine", "Farneback"])
def test_the_flow_is_opencvs_own_call_on_the_same_frames_chained_as_deforum_chains_it(pan_video, method):
    """DIS seeded with the previous pair's flow (Deforum's prev_flow), Farneback at Deforum's
    "normal" preset, on the decoded frames' luma."""
    motion = motion_of(pan_video, hybrid_flow_method=method)
    frames = SourceReader(pan_video, W, H).frames(list(range(6)))
    grey = [cv2.cvtColor((f * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in frames]
    previous = None
    for f in range(1, 6):
        if method == "Farneback":
            want = cv2.calcOpticalFlowFarneback(grey[f - 1], grey[f], None, 0.5, 5, 21, 5, 7, 1.2, 0)
        else:
            dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
            if method == "DIS Fine":
                dis = cv2.DISOpticalFlow_create()
                dis.setGradientDescentIterations(192)
                dis.setFinestScale(0)
                dis.setPatchSize(8)
                dis.setPatchStride(4)
            want = dis.calc(grey[f - 1], grey[f], None if previous is None else previous.copy())
            previous = want
        np.testing.assert_array_equal(motion.motion(f), want)


def test_flow_methods_opencv_lacks_fall_back_to_dis_medium_and_say_so(pan_video):
    for method, why in (("RAFT", "RAFT is a model"), ("DenseRLOF", "opencv-contrib"), ("SF", "opencv-contrib")):
        settings = settings_of(pan_video, hybrid_flow_method=method)
        assert settings.hybrid.flow_method == "DIS Medium"
        assert any(w.startswith(f"hybrid_flow_method {method}: ") and why in w for w in settings.warnings)
    assert not settings_of(pan_video, hybrid_flow_method="Farneback").warnings
    unapplied = settings_of(pan_video, hybrid_composite="After Generation", hybrid_comp_mask_type="Difference",
                            hybrid_use_first_frame_as_init_image=True, hybrid_flow_consistency=True).warnings
    assert [w.split(" ")[0] for w in unapplied] == ["hybrid_comp_mask_type", "hybrid_composite",
                                                    "hybrid_use_first_frame_as_init_image", "hybrid_flow_consistency"]


def test_the_settings_take_max_frames_from_the_video_and_refuse_bad_values_in_one_line(pan_video, tmp_path):
    assert settings_of(pan_video).max_frames == 24  # max_frames 120 by default: the video's frames win
    assert settings_of(pan_video, extract_nth_frame=5).max_frames == 5  # frames 0, 5, 10, 15, 20
    assert settings_of(pan_video, extract_nth_frame=5).hybrid.kept == (0, 5, 10, 15, 20)
    assert settings_of(pan_video, hybrid_use_init_image=True, max_frames=30).max_frames == 30  # Deforum's rule
    with pytest.raises(SettingsError, match="hybrid_motion must be one of None, Optical Flow"):
        settings_of(pan_video, hybrid_motion="Optical Flo")
    with pytest.raises(SettingsError, match="hybrid video needs video_init_path"):
        settings_of("", hybrid_composite="Normal")
    with pytest.raises(SettingsError, match="video missing.mp4: no such file; or set hybrid_motion and"
                       " hybrid_composite to None to render without the hybrid video"):
        settings_of(tmp_path / "missing.mp4")  # shared files keep their author's path: the way on is named
    with pytest.raises(SettingsError, match=r"video missing.mp4: no such file\Z"):  # Video Input needs its video
        load_settings({**BASE, "animation_mode": "Video Input", "video_init_path": str(tmp_path / "missing.mp4")},
                      read_video=True)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SettingsError, match="bad.mp4 has no readable video stream"):
        settings_of(tmp_path / "bad.mp4")
    # hybrid keys in a mode without hybrid (Deforum reads them in 2D/3D only): nothing is read
    assert load_settings({**BASE, "animation_mode": "None"}, read_video=True).hybrid is None
    legacy = settings_of(pan_video, hybrid_motion="None", hybrid_composite=True)  # an older file's flag
    assert legacy.hybrid.composite == "Normal"


def test_a_job_reads_a_hybrid_video_only_from_inside_the_allowed_folders(pan_video, tmp_path):
    from deforum_wan.render.inputs import PathRefused, confine_job_paths

    raw = {**BASE, "video_init_path": str(pan_video)}
    with pytest.raises(PathRefused, match="video_init_path .* must name an existing file inside the output folder"):
        confine_job_paths(dict(raw), tmp_path, tmp_path)
    (tmp_path / "pan.mp4").write_bytes(pan_video.read_bytes())
    assert confine_job_paths({**raw, "video_init_path": "pan.mp4"}, tmp_path, tmp_path)["video_init_path"] == \
        str((tmp_path / "pan.mp4").resolve())


def test_the_guided_path_follows_the_videos_pan_under_a_still_camera(pan_video):
    """Every window is guided by the video (the camera is still), frame k of the path being
    the lead moved by k pans."""
    from deforum_wan.render.follow import CameraFollower

    settings = settings_of(pan_video, wan_retime="native", wan_clip_duration=0.6, wan_overlap=2)
    plan = make_plan(settings)
    assert {w.wan_camera for w in plan.windows} == {"guide"} and {w.motion for w in plan.windows} == {"video"}
    off = make_plan(settings_of(pan_video, hybrid_motion="None"))
    assert {w.wan_camera for w in off.windows} == {""}  # no hybrid, still camera: nothing to follow
    follower = CameraFollower.for_plan(settings, plan, None)
    lead = moving_frames(1, W, H, seed=5)[0].astype(np.float32) / 255
    guide = follower.path_guide(plan.windows[0], [lead])
    pixels = np.rint(lead * 255)
    for k in (1, 4, 8):
        moved = np.rint(guide.frames[k] * 255)
        dx, dy = round(PAN[0] * k), round(PAN[1] * k)
        inner = (slice(max(dy, 0) + 6, H + min(dy, 0) - 6), slice(dx + 6, W - 6))
        shifted = pixels[inner[0].start - dy:inner[0].stop - dy, inner[1].start - dx:inner[1].stop - dx]
        assert np.abs(moved[inner] - shifted).mean() < 3  # the flow's sub-pixel error, bilinear
        assert guide.cover[k][:, :dx].max() < 0.5 and guide.cover[k][inner].min() == 1


def test_the_composite_blends_the_video_frame_into_the_guide_at_the_alpha(pan_video):
    from deforum_wan.render.follow import CameraFollower

    settings = settings_of(pan_video, hybrid_motion="None", hybrid_composite="Normal",
                           hybrid_comp_alpha_schedule="0: (0.25)", wan_retime="native", wan_clip_duration=0.6)
    plan = make_plan(settings)
    assert {w.motion for w in plan.windows} == {"composite"}
    guide = CameraFollower.for_plan(settings, plan, None).path_guide(plan.windows[0],
                                                                     [np.zeros((H, W, 3), np.float32)])
    video = SourceReader(pan_video, W, H).frames([1, 2, 3])
    expected = np.zeros((H, W, 3), np.float32)
    for k, frame in enumerate(video, start=1):  # each step: 3/4 of the path so far, 1/4 of input frame k
        expected = np.clip(np.floor(expected * 0.75 + np.rint(frame * 255) * 0.25 + 0.5), 0, 255)
        np.testing.assert_allclose(guide.frames[k] * 255, expected, atol=1e-3)


def test_the_camera_preview_moves_with_the_video(pan_video, tmp_path):
    from deforum_wan.render.camera_preview import write_preview

    settings = settings_of(pan_video)
    _, notes = write_preview(settings, tmp_path, frames=(0, 6))
    assert "hybrid video pan.mp4: video flow DIS Medium after each camera step" in notes
    frames = [np.asarray(Image.open(tmp_path / f"{i:09}.png")).astype(float) for i in range(7)]
    for k in (2, 6):
        dx, dy = 3 * k, -2 * k
        moved = frames[k][8:H + dy - 8, dx + 8:W - 8]
        shifted = np.abs(moved - frames[0][8 - dy:H - 8, 8:W - dx - 8]).mean()
        unshifted = np.abs(moved - frames[0][8:H + dy - 8, dx + 8:W - 8]).mean()
        assert shifted < 2 and unshifted > 5 * shifted  # the grid's sharp lines, moved bilinearly


def test_adherence_against_the_video_motion_scores_the_video_itself_near_zero(pan_video):
    from deforum_wan.render.adherence import measure

    settings = settings_of(pan_video)
    source = [(f * 255 + 0.5).astype(np.uint8) for f in SourceReader(pan_video, W, H).frames(list(range(12)))]
    followed = measure(settings.camera, source, [(0, 0, 12)], video_motion(settings, W, H))
    still = measure(settings.camera, [source[0]] * 12, [(0, 0, 12)], video_motion(settings, W, H))
    assert followed.px < 0.3 and still.px > 3  # a still video misses the 3.6 px pan
    assert "against the source video's motion after Deforum's camera" in followed.describe()


def test_plan_frames_shows_each_frames_source_frame_and_alpha(pan_video):
    settings = settings_of(pan_video, hybrid_composite="Normal", extract_nth_frame=2,
                           hybrid_comp_alpha_schedule="0: (0.2), 5: (0.6)")
    plan = make_plan(settings)
    rows = frame_values(settings, plan.source_frames)
    assert [r["source_frame"] for r in rows] == list(range(0, 24, 2))
    assert [r["hybrid_alpha"] for r in rows[4:7]] == [pytest.approx(0.52), pytest.approx(0.6), pytest.approx(0.6)]
    text = format_plan(plan)
    assert "hybrid video " in text and "hybrid_composite Normal: input frame f blended" in text
    assert "video+camera" not in text and "  video  " in text  # the motion column
    no_composite = settings_of(pan_video)
    assert "hybrid_alpha" not in frame_values(no_composite, make_plan(no_composite).source_frames)[0]


@pytest.mark.parametrize("name", REAL_HYBRID)
def test_the_real_hybrid_files_plan_with_a_synthetic_video(deforum_dir, pan_video, name):
    raw = json.loads((deforum_dir / name).read_text(encoding="utf-8-sig"))
    raw["video_init_path"] = str(pan_video)
    settings = load_settings(raw, name=name, read_video=True)
    assert settings.max_frames == 24 and settings.hybrid.motion == "Optical Flow"
    plan = make_plan(settings)
    assert plan.source_frames == list(range(24)) and plan.hybrid
    assert all(w.motion.startswith("video") for w in plan.windows if w.wan_camera == "guide")
    assert not any("hybrid" in w for w in settings.warnings if w.startswith("not applied"))
    frames = frame_values(settings, plan.source_frames)
    assert ("hybrid_alpha" in frames[0]) == (raw["hybrid_composite"] != "None")


@pytest.mark.slow
def test_a_render_that_follows_a_panning_video_adheres_to_its_pan_better_than_unguided(tiny_models_dir, pan_video,
                                                                                        tmp_path):
    """The same tiny-model render with the guide on and off, both measured against the video's
    pan: the guided one follows it more closely (the guide held for all the steps; the tiny
    model's random VAE blurs the path it encodes, so closely is not exactly)."""
    from deforum_wan.render.loop import Renderer

    def render(name, **extra):
        settings = settings_of(pan_video, wan_retime="native", wan_clip_duration=0.6, wan_overlap=2, max_frames=12,
                               extract_to_frame=11, skip_video_creation=True, wan_camera_free=0.3,
                               wan_camera_lock=1.0, **extra)
        return Renderer(settings, tmp_path / name, models_dir=str(tiny_models_dir)).run().camera_adherence

    guided, off = render("guide"), render("off", wan_camera="off")
    assert guided["pairs"] >= 5 and off["pairs"] >= 5
    assert guided["px"] < off["px"] and guided["deg"] < off["deg"], (guided, off)


def test_the_camera_and_the_video_compose_in_deforums_order_and_adherence_undoes_both(pan_video, tmp_path):
    """A 2D camera zooming in and rotating, then the video's pan: the preview's frames score
    near zero against both, and far off against the camera alone."""
    from deforum_wan.render.adherence import measure
    from deforum_wan.render.camera_preview import write_preview

    settings = settings_of(pan_video, zoom="0: (1.02)", angle="0: (1.5)")
    write_preview(settings, tmp_path, image=None, frames=(0, 8))
    frames = [np.asarray(Image.open(tmp_path / f"{i:09}.png")) for i in range(9)]
    both = measure(settings.camera, frames, [(0, 0, 9)], video_motion(settings, W, H))
    camera_only = measure(settings.camera, frames, [(0, 0, 9)])
    assert both.pairs >= 6 and both.px < 0.6 and camera_only.px > 3


@pytest.mark.parametrize("composite", ["Normal", "Before Motion"])
def test_the_composite_comes_after_or_before_the_videos_motion(pan_video, composite):
    from deforum_wan.render.hybrid_motion import flow_map, remap_reflect

    motion = motion_of(pan_video, hybrid_composite=composite, hybrid_comp_alpha_schedule="0: (0.5)")
    lead = moving_frames(1, W, H, seed=9)[0]
    moved, _ = motion.step(lead, np.ones((H, W), np.float32), 1)
    video = motion.frame(1).astype(np.float32)

    def blend(image):
        return np.clip(np.floor(image.astype(np.float32) * 0.5 + video * 0.5 + 0.5), 0, 255).astype(np.uint8)

    def move(image):
        return remap_reflect(image, flow_map(motion.motion(1), 1.0))

    want = blend(move(lead)) if composite == "Normal" else move(blend(lead))
    np.testing.assert_array_equal(moved, want)
    other = move(blend(lead)) if composite == "Normal" else blend(move(lead))
    assert np.abs(moved.astype(int) - other).mean() > 1


@pytest.mark.parametrize("kind", ["Optical Flow", "Affine"])
def test_use_prev_img_measures_from_the_moved_frame_itself(pan_video, kind):
    """hybrid_motion_use_prev_img: the motion from the frame being moved to input frame f, so
    input frame 0 carried along stays on the video (its error does not grow step by step)."""
    motion = motion_of(pan_video, hybrid_motion=kind, hybrid_motion_use_prev_img=True)
    image, cover = motion.frame(0), np.ones((H, W), np.float32)
    for f in range(1, 7):
        image, cover = motion.step(image, cover, f)
        error = np.abs(image[8:-8, 8:-8].astype(float) - motion.frame(f)[8:-8, 8:-8]).mean()
        still = np.abs(motion.frame(0)[8:-8, 8:-8].astype(float) - motion.frame(f)[8:-8, 8:-8]).mean()
        assert error < 0.25 * still, (f, error, still)  # a little bilinear blur per step
    # 6 pans of (3, -2): the left 18 and the bottom 12 columns and rows come from outside
    assert cover[:, :14].max() < 0.5 and cover[-10:].max() < 0.5 and cover[4:H - 16, 24:-4].min() > 0.99
