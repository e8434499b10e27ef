"""Deforum's camera (config/camera.py) and its warps (render/warp.py) against Deforum's own warp
functions (fixtures made by running them outside this repository:
tests/fixtures/deforum_camera/README.md), and its properties."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import DEFORUM_DIR, FIXTURES, real_settings_files
from hypothesis import given, settings
from hypothesis import strategies as st

from deforum_wan.config.camera import Camera, depth_to_z, flip_matrix, matrix_2d, offsets_3d, summarize
from deforum_wan.config.settings import read_settings_file
from deforum_wan.render.warp import CameraPath, warp_2d, warp_3d

CAMERA = FIXTURES / "deforum_camera"
STEPS = np.load(CAMERA / "steps.npz")
META = json.loads((CAMERA / "steps.json").read_text())
W, H = META["size"]


def _flip(c) -> tuple | None:
    return (c["perspective_flip_theta"], c["perspective_flip_phi"], c["perspective_flip_gamma"],
            c["perspective_flip_fv"])


@pytest.mark.parametrize("i", range(len(META["2d"])))
def test_2d_step_is_deforums_to_the_bit(i):
    c = META["2d"][i]
    if c["flip"]:  # Deforum drops the translation under the flip (an np.matmul out buffer): so do its images
        c = dict(c, translation_x=0.0, translation_y=0.0)
    out = warp_2d(STEPS["image"], matrix_2d(c, W, H, _flip(c) if c["flip"] else None), c["border"])
    assert np.array_equal(out, STEPS[f"2d_{i}"])


def test_2d_flip_moves_by_the_translation_deforum_meant():
    c = next(c for c in META["2d"] if c["flip"])
    moved = matrix_2d(c, W, H, _flip(c))
    still = matrix_2d(dict(c, translation_x=0.0, translation_y=0.0), W, H, _flip(c))
    # the flipped, rotated frame of the translated point is where the untranslated one lands
    point = np.array([5.0, 7.0, 1.0])
    shifted = point + [c["translation_x"], c["translation_y"], 0.0]
    a, b = moved @ point, still @ shifted
    assert np.allclose(a[:2] / a[2], b[:2] / b[2])
    assert not np.allclose(moved, still)


@pytest.mark.parametrize("i", range(len(META["3d"])))
def test_3d_step_is_deforums_to_the_bit(i):
    c = META["3d"][i]
    z = depth_to_z(STEPS["depth"], c["depth_algorithm"]) if c["use_depth"] else None
    z = np.ones((H, W), np.float32) if z is None else z
    src = STEPS["image"]
    if c["enable_perspective_flip"]:
        src = warp_2d(src, flip_matrix(W, H, *_flip(c)), c["border"])
    aspect = W / H if c["aspect_ratio_use_old_formula"] else c["aspect_ratio"]
    p = dict(c, fov_schedule=c["fov"], near_schedule=c["near"], far_schedule=c["far"])
    out = warp_3d(src, offsets_3d(p, z, aspect), c["sampling_mode"], c["padding_mode"])
    # float32 in torch's own order of operations: the same bits, so the same truncated uint8
    assert np.array_equal(out, STEPS[f"3d_{i}"])


CHAIN = np.load(CAMERA / "chain.npz")


@pytest.mark.skipif(DEFORUM_DIR is None, reason="the real Deforum files are not here")
@pytest.mark.parametrize("name", [k for k in CHAIN.files if k != "image"])
def test_the_chained_path_is_deforums_warp_only_loop(name):
    raw = read_settings_file(DEFORUM_DIR / f"{name}.txt")
    ref = CHAIN[name]
    camera = Camera.from_settings({**raw, "use_depth_warping": False}, int(raw["max_frames"]), W, H)
    frames, masks = CameraPath(camera, CHAIN["image"]).at([float(i) for i in range(1, len(ref))])
    for k, (frame, expected) in enumerate(zip(frames, ref[1:]), start=1):
        assert np.array_equal(frame, expected), k
    assert all(0 <= m.min() and m.max() <= 1 + 1e-6 for m in masks)


def _camera(mode="2D", frames=20, **schedules) -> Camera:
    raw = {"animation_mode": mode, "zoom": "0: (1)", "translation_z": "0: (0)", **schedules}
    return Camera.from_settings(raw, frames, 64, 48)


def test_an_integer_pan_leaves_an_exact_stripe_a_zoom_out_an_exact_ring():
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    pan = _camera(translation_x="0: (3)")
    _, [mask] = CameraPath(pan, image).at([2.0])  # two frames: 6 px
    assert np.array_equal(mask[:, :6], np.zeros((48, 6))) and np.array_equal(mask[:, 6:], np.ones((48, 58)))
    zoom_out = _camera(zoom="0: (0.5)")
    _, [mask] = CameraPath(zoom_out, image).at([1.0])
    # half size about the centre: the middle 32x24 is covered, a 16/12 px ring is not
    inner = mask[12:36, 16:48]
    assert inner.min() > 0.99 and mask[:11].max() == 0 and mask[37:].max() == 0
    assert mask[:, :15].max() == 0 and mask[:, 49:].max() == 0


def test_a_still_camera_is_the_identity_and_time_between_frames_is_part_of_a_step():
    image = np.random.default_rng(2).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frames, masks = CameraPath(_camera(), image).at([0.5, 3.0])
    assert all(np.array_equal(f, image) for f in frames) and all(m.min() > 0.999 for m in masks)
    pan = _camera(translation_x="0: (4)")
    [half], _ = CameraPath(pan, image).at([0.5])
    [whole], _ = CameraPath(pan, image).at([1.0])
    assert np.array_equal(half[:, 2:], image[:, :-2]) and np.array_equal(whole[:, 4:], image[:, :-4])


@settings(max_examples=40, deadline=None)
@given(times=st.lists(st.floats(0, 12), min_size=1, max_size=6), mode=st.sampled_from(["2D", "3D"]))
def test_a_frame_does_not_depend_on_which_other_times_were_asked(times, mode):
    """A resume (or another window's split) rebuilds the same frames: the path at t is the same
    whatever other times are asked with it."""
    image = np.random.default_rng(3).integers(0, 255, (16, 24, 3), dtype=np.uint8)
    schedules = ({"angle": "0: (2)", "zoom": "0: (1.03)", "translation_y": "0: (0.7*sin(t/3))"} if mode == "2D"
                 else {"translation_x": "0: (1.5)", "rotation_3d_y": "0: (0.8)", "translation_z": "0: (2)"})
    camera = Camera.from_settings({"animation_mode": mode, **schedules}, 20, 24, 16)
    times = sorted(times)
    together, _ = CameraPath(camera, image).at(times)
    for t, frame in zip(times, together):
        [alone], _ = CameraPath(camera, image).at([t])
        assert np.array_equal(alone, frame)


@settings(max_examples=30, deadline=None)
@given(zoom=st.floats(0.8, 1.25), f=st.floats(0.05, 0.95))
def test_a_step_splits_into_parts_that_compose_to_it(zoom, f):
    camera = _camera(zoom=f"0: ({zoom})", angle="0: (3)")
    a, b = (matrix_2d(camera.params(1, x), 64, 48) for x in (f, 1 - f))
    whole = matrix_2d(camera.params(1), 64, 48)
    assert np.allclose(b @ a, whole, atol=1e-9)  # rotation and zoom about one centre commute


def test_summaries_measure_pan_zoom_rotation_and_coverage():
    pan = summarize(_camera(translation_x="0: (3.2)"), 0, 10)
    assert pan["pan_x"] == pytest.approx(50.0, abs=0.01) and pan["zoom"] == pytest.approx(1.0)
    assert pan["coverage"] == pytest.approx(0.5, abs=0.04)
    zoom = summarize(_camera(zoom="0: (1.02)"), 0, 10)
    assert zoom["zoom"] == pytest.approx(1.02 ** 10, rel=1e-3) and zoom["coverage"] == 1.0
    turn = summarize(_camera(angle="0: (1.5)"), 0, 10)
    assert abs(turn["rotation"]) == pytest.approx(15, abs=0.01)
    dolly = summarize(_camera("3D", translation_z="0: (5)"), 0, 20)
    assert dolly["zoom"] > 1.3 and dolly["coverage"] == 1.0
    assert summarize(Camera.from_settings({"animation_mode": "None"}, 10, 64, 48), 0, 9)["zoom"] == 1.0
    assert Camera.from_settings({}, 10, 64, 48).mode == "2D"  # Deforum's default: its slow zoom moves


@pytest.mark.parametrize("path", real_settings_files(), ids=lambda p: p.name)
def test_every_real_files_camera_reads(path):
    raw = read_settings_file(path)
    camera = Camera.from_settings(raw, int(raw.get("max_frames", 120)), 64, 36)
    if camera.mode in ("2D", "3D"):
        summary = summarize(camera, 0, min(40, int(raw.get("max_frames", 120)) - 1))
        assert 0 <= summary["coverage"] <= 1 and summary["zoom"] > 0


def test_the_camera_command_writes_every_frame_and_a_video(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from deforum_wan.render.video import probe_video

    settings = tmp_path / "s.txt"
    settings.write_text(json.dumps({"animation_mode": "2D", "zoom": "0: (1.05)", "angle": "0: (2)", "W": 64, "H": 48,
                                    "max_frames": 12, "fps": 12, "prompts": {"0": "x"}}))
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "preview"
    done = subprocess.run([sys.executable, "-m", "deforum_wan", "camera", str(settings), "--image", str(image),
                           "--outdir", str(out), "--frames", "0:9"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"{i:09}.png" for i in range(10)]
    first = np.asarray(Image.open(out / "000000000.png"))
    assert first.shape == (48, 64, 3)  # the image at W x H
    camera = Camera.from_settings(json.loads(settings.read_text()), 12, 64, 48)
    frames, _ = CameraPath(camera, first).at([5.0])
    assert np.array_equal(np.asarray(Image.open(out / "000000005.png")), frames[0])
    assert probe_video(out / "camera.mp4")["frames"] == 10
    bad = subprocess.run([sys.executable, "-m", "deforum_wan", "camera", str(settings), "--outdir", str(out),
                          "--frames", "3:99"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --frames 3:99") and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "deforum_wan", "camera", str(settings), "--outdir",
                              str(tmp_path / "p2"), "--image", str(tmp_path / "none.png")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "error: cannot read --image" in missing.stderr
    assert not list((tmp_path / "p2").glob("*.png"))


@pytest.mark.slow
def test_a_cut_starts_a_new_text_to_video_shot(tiny_models_dir, tmp_path):
    from deforum_wan.config.planner import make_plan
    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.loop import Renderer

    data = {"W": 64, "H": 64, "fps": 16, "max_frames": 24, "seed": 3, "prompts": {"0": "a lighthouse"},
            "wan_model": "tiny-random", "wan_clip_duration": 0.6, "animation_mode": "3D",
            "translation_z": "0: (0)", "strength_schedule": "0: (0.65), 12: (0), 13: (0.65)",
            "color_coherence": "None", "skip_video_creation": True}
    settings = load_settings(data)
    plan = make_plan(settings)
    cut = [w for w in plan.windows if w.cut]
    assert [w.start_frame for w in cut] == [12] and cut[0].mode == "t2v" and cut[0].overlap == 0
    result = Renderer(settings, tmp_path, models_dir=str(tiny_models_dir)).run()
    assert result.frames == 24


def test_3d_depth_warping_uses_the_depth_model_on_every_frame(tmp_path):
    """A tiny random DPT (built locally, loaded like the real ones) gives each frame a depth map:
    the path then differs from the flat scene; a missing real model is one line naming the command."""
    from deforum_wan.errors import WanError
    from deforum_wan.models.registry import depth_model_for
    from deforum_wan.render.depth import DepthEstimator

    depth = DepthEstimator("Midas-3-Hybrid", str(tmp_path), override="tiny-depth")
    image = np.random.default_rng(5).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    d = depth(image)
    assert d.shape == (32, 48) and d.dtype == np.float32 and np.isfinite(d).all() and d.std() > 0
    calls = []
    camera = Camera.from_settings({"animation_mode": "3D", "translation_z": "0: (6)", "translation_x": "0: (3)",
                                   "use_depth_warping": True}, 10, 48, 32)
    with_depth, _ = CameraPath(camera, image, depth=lambda img: calls.append(1) or depth(img)).at([1.0, 2.0, 3.0])
    flat, _ = CameraPath(camera, image).at([1.0, 2.0, 3.0])
    assert len(calls) == 3 and not np.array_equal(with_depth[-1], flat[-1])
    assert depth_model_for("Midas-3-Hybrid").id == "depth-dpt-large" and depth_model_for("Zoe").repo
    with pytest.raises(WanError, match="python -m deforum_wan download depth-dpt-large"):
        DepthEstimator("Midas-3-Hybrid", str(tmp_path / "empty"))
    with pytest.raises(WanError, match="no transformers model"):
        depth_model_for("AdaBins")


def test_download_knows_the_depth_models_and_offline_says_so(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-m", "deforum_wan", "download", "depth-dpt-large", "--models-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "HF_HUB_OFFLINE" in done.stderr and "download depth-dpt-large" in done.stderr
    built = subprocess.run([sys.executable, "-m", "deforum_wan", "download", "tiny-depth", "--models-dir",
                            str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert built.returncode == 0 and (tmp_path / "tiny-depth" / "config.json").is_file(), built.stderr


def test_plan_shows_each_windows_camera_and_shortens_windows_under_a_fast_one():
    from deforum_wan.config.planner import format_plan, make_plan
    from deforum_wan.config.settings import load_settings

    base = {"W": 64, "H": 64, "fps": 16, "max_frames": 160, "prompts": {"0": "a"}, "wan_model": "tiny-random",
            "animation_mode": "2D", "zoom": "0: (1)"}
    slow = make_plan(load_settings({**base, "translation_x": "0: (0.2)"}))
    fast = make_plan(load_settings({**base, "translation_x": "0: (1.5)"}))
    assert max(w.native_frames for w in slow.windows) == 81  # the model's whole window
    assert max(w.native_frames for w in fast.windows) < 81 and len(fast.windows) > len(slow.windows)
    assert all(w.camera["coverage"] >= 0.5 for w in fast.windows[1:-1])
    unlimited = make_plan(load_settings({**base, "translation_x": "0: (1.5)", "wan_camera_min_coverage": 0}))
    assert max(w.native_frames for w in unlimited.windows) == 81
    data = fast.to_json()
    assert set(data["windows"][0]["camera"]) == {"zoom", "pan_x", "pan_y", "rotation", "coverage"}
    assert data["windows"][0]["camera"]["pan_x"] > 0
    assert any("zoom" in line and "cover" in line for line in format_plan(fast).splitlines())


def test_each_native_frame_of_a_window_has_its_output_time():
    from deforum_wan.config.planner import make_plan, native_times
    from deforum_wan.config.settings import load_settings

    plan = make_plan(load_settings({"W": 64, "H": 64, "fps": 12, "max_frames": 60, "prompts": {"0": "a", "30": "b"},
                                    "wan_model": "tiny-random", "wan_clip_duration": 1.5, "wan_overlap": 2}))
    for w in plan.windows:
        times = native_times(plan, w)
        assert len(times) == w.native_frames and times == sorted(times)
        lead = 0 if w.index == 0 else w.overlap + 1
        assert times[lead] == pytest.approx(w.start_frame, abs=1)  # its first new frame is where it starts
        step = times[1] - times[0]
        assert step == pytest.approx(12 / 16, abs=0.05)  # 16 fps native onto 12 fps output: fractional
    # a continuation starts at the frame it conditions on, which the previous window made
    prev, nxt = plan.windows[0], plan.windows[1]
    assert any(abs(native_times(plan, nxt)[0] - t) < 1e-9 for t in native_times(plan, prev))


@pytest.mark.slow
def test_vace_windows_follow_deforums_camera_exactly_where_it_covers(tiny_models_dir, tmp_path):
    """wan_camera vace: a continuation window's frames are the conditioning frame moved by the
    camera wherever the warp covers them (Deforum's exact motion) and Wan's own where it uncovers."""
    from PIL import Image

    from deforum_wan.config.planner import make_plan, native_times
    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.follow import SEAM_PX, shrink
    from deforum_wan.render.loop import Renderer

    data = {"W": 64, "H": 64, "fps": 16, "max_frames": 20, "seed": 3, "prompts": {"0": "a lighthouse"},
            "wan_model": "tiny-random", "wan_continue_model": "tiny-random-vace", "wan_clip_duration": 0.6,
            "wan_overlap": 2, "wan_retime": "native", "wan_camera": "vace", "animation_mode": "2D",
            "zoom": "0: (1)", "translation_x": "0: (2)", "color_coherence": "None", "skip_video_creation": True}
    settings = load_settings(data)
    plan = make_plan(settings)
    result = Renderer(settings, tmp_path, models_dir=str(tiny_models_dir)).run()
    w = plan.windows[1]
    times = native_times(plan, w)
    png = lambda i: np.asarray(Image.open(result.run_dir / f"{result.timestring}_{i:09}.png"))  # noqa: E731
    anchor = png(round(times[0]))
    kept_any = uncovered_differs = False
    camera = settings.camera.scaled(plan.width, plan.height)
    guided = times[w.overlap + 1:]
    frames, covers = CameraPath(camera, anchor, times[0]).at(guided)
    for t, frame, cover in zip(guided, frames, covers):
        if round(t) >= result.frames or round(t) >= w.end_frame:
            break
        out = png(round(t))
        keep = shrink(cover >= 0.999, SEAM_PX)
        assert np.array_equal(out[keep], frame[keep])  # the camera's pixels, exactly
        kept_any |= bool(keep.any())
        hole = cover < 0.5
        uncovered_differs |= bool(hole.any() and not np.array_equal(out[hole], frame[hole]))
    assert kept_any and uncovered_differs
