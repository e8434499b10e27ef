"""wan_camera guide through the planner and the render loop (tiny models, CPU)."""
import json

import numpy as np
import pytest
from PIL import Image

from deforum_wan.backends.base import BackendOptions
from deforum_wan.backends.chain import load_backend
from deforum_wan.config.camera import describe, summarize
from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.models.registry import get_model

BASE = {"W": 64, "H": 64, "fps": 16, "max_frames": 20, "seed": 3, "prompts": {"0": "a lighthouse"},
        "wan_model": "tiny-random", "wan_clip_duration": 0.6, "wan_overlap": 2, "wan_retime": "native",
        "color_coherence": "None", "skip_video_creation": True, "animation_mode": "2D", "zoom": "0: (1)"}
PAN = {"translation_x": "0: (2)"}


def plan_of(**extra):
    return make_plan(load_settings({**BASE, **extra}))


def test_a_moving_window_is_guided_with_the_methods_shares_at_deforums_strength():
    plan = plan_of(**PAN)
    assert [w.wan_camera for w in plan.windows] == ["guide"] * len(plan.windows)
    w = plan.windows[0]
    assert (w.camera_free, w.camera_lock) == (0.04, 0.10)  # strength_schedule's default 0.65
    half = plan_of(**PAN, strength_schedule="0: (0.325)").windows[0]
    assert (half.camera_free, half.camera_lock) == (0.02, 0.05)
    given = plan_of(**PAN, wan_camera_free=0.2, wan_camera_lock=0.3).windows[0]
    assert (given.camera_free, given.camera_lock) == (0.2, 0.3)
    assert "free 20%, held 30% of the steps (wan_camera_free/lock)" in given.sources["camera"]


def test_still_windows_cuts_and_wan_camera_off_are_not_guided():
    assert {w.wan_camera for w in plan_of().windows} == {""}  # zoom 1, no pan: still
    assert {w.wan_camera for w in plan_of(**PAN, wan_camera="off").windows} == {""}
    # the camera starts moving at frame 12: the first window is still, later ones move
    late = plan_of(translation_x="0: (0), 11: (0), 12: (3)")
    assert late.windows[0].wan_camera == "" and late.windows[-1].wan_camera == "guide"
    cut = plan_of(**PAN, strength_schedule="0: (0.65), 10: (0), 11: (0.65)", wan_retime="blend")
    at_cut = [w for w in cut.windows if w.cut]
    assert at_cut and all(w.wan_camera == "" for w in at_cut)  # strength 0: a fresh frame


def test_vace_mode_keeps_the_warp_in_vace_windows_and_guides_the_others():
    plan = plan_of(**PAN, wan_camera="vace", wan_continue_model="tiny-random-vace")
    assert plan.windows[0].wan_camera == "guide" and {w.wan_camera for w in plan.windows[1:]} == {"vace"}


def test_the_camera_prompt_hint_describes_each_windows_move():
    plan = plan_of(**PAN, wan_camera_prompt=True)
    assert plan.windows[0].prompt == "a lighthouse, camera pans left"  # content right: the camera left
    assert plan_of(**PAN).windows[0].prompt == "a lighthouse"
    assert describe({"zoom": 0.9, "pan_x": 0.0, "pan_y": -3.0, "rotation": -5.0, "coverage": 0.8}) == \
        "camera zooms out, tilts down, the view turns counterclockwise"
    settings = load_settings({**BASE, "zoom": "0: (1.05)"})
    assert describe(summarize(settings.camera, 0, 4)) == "camera zooms in"


def test_the_guided_path_is_the_lead_frame_carried_forward_in_time():
    """translation_x 2 at the model's own fps: frame 0 of the path is the lead frame, frame k
    the lead moved 2k pixels right (as 8-bit pixels), covered where the lead reaches."""
    from deforum_wan.render.follow import CameraFollower

    settings = load_settings({**BASE, **PAN})
    plan = make_plan(settings)
    w = plan.windows[0]
    lead = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    guide = CameraFollower(settings.camera, plan).path_guide(w, [lead])
    assert len(guide.frames) == w.native_frames
    np.testing.assert_array_equal(guide.frames[0], lead)
    pixels = np.rint(lead * 255) / 255
    for k, (frame, cover) in enumerate(zip(guide.frames, guide.cover)):
        if k == 0:
            continue
        s = 2 * k
        np.testing.assert_allclose(frame[:, s:], pixels[:, :64 - s], atol=1e-6)
        assert cover[:, s:].min() == 1 and cover[:, :s].max(initial=0) == 0


def test_under_auto_a_guided_model_loads_with_diffusers_first(tiny_models_dir):
    options = BackendOptions(models_dir=str(tiny_models_dir))
    backend, report = load_backend(get_model("tiny-random"), "auto", options, path_guide=True)
    with backend:
        assert backend.name == "diffusers" and backend.takes_path_guide
    assert report[0] == ("official", "tried after diffusers: no step hook to follow Deforum's camera")
    assert report[1][0] == "diffusers" and report[1][1].startswith("chosen")


def _frames(result):
    return [np.asarray(Image.open(p)) for p in sorted(result.run_dir.glob(f"{result.timestring}_*.png"))]


def _render(tmp_path, tiny_models_dir, name, events=None, **extra):
    from deforum_wan.render.loop import Renderer

    settings = load_settings({**BASE, **extra})
    sink = (lambda e: events.append(e)) if events is not None else None
    return Renderer(settings, tmp_path / name, models_dir=str(tiny_models_dir), on_event=sink).run()


@pytest.mark.slow
def test_a_still_camera_renders_exactly_as_with_the_camera_off(tiny_models_dir, tmp_path):
    guided = _frames(_render(tmp_path, tiny_models_dir, "guide"))
    off = _frames(_render(tmp_path, tiny_models_dir, "off", wan_camera="off"))
    assert len(guided) == 20 and all(np.array_equal(a, b) for a, b in zip(guided, off))


@pytest.mark.slow
def test_a_moving_camera_guides_every_window_from_a_still_and_is_deterministic(tiny_models_dir, tmp_path):
    events = []
    result = _render(tmp_path, tiny_models_dir, "a", events, **PAN)
    first = _frames(result)
    notes = [e["message"] for e in events if e["event"] == "note"]
    assert notes[0] == "window 0: one still frame first, for Deforum's camera to move"
    assert notes[1].startswith("camera adherence: ") and notes[2].startswith("drift: ") and len(notes) == 3
    adherence = result.camera_adherence
    assert adherence["pairs"] + adherence["skipped"] == 19  # every consecutive pair, seams included
    assert len(adherence["windows"]) == len(make_plan(load_settings({**BASE, **PAN})).windows)
    manifest = json.loads((result.run_dir / f"{result.timestring}_manifest.json").read_text())
    assert manifest["camera_adherence"] == adherence
    assert len(first) == 20
    again = _frames(_render(tmp_path, tiny_models_dir, "b", **PAN))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    off = _frames(_render(tmp_path, tiny_models_dir, "off", **PAN, wan_camera="off"))
    assert any(not np.array_equal(a, b) for a, b in zip(first, off))


@pytest.mark.slow
def test_a_guided_render_resumes_to_the_same_frames(tiny_models_dir, tmp_path):
    from deforum_wan.errors import Interrupted
    from deforum_wan.render.loop import Renderer

    whole = _frames(_render(tmp_path, tiny_models_dir, "whole", **PAN))
    settings = load_settings({**BASE, **PAN})
    done = []

    def stop():
        return bool(done)

    renderer = Renderer(settings, tmp_path / "cut", models_dir=str(tiny_models_dir), should_stop=stop,
                        on_event=lambda e: done.append(1) if e["event"] == "window_done" else None)
    with pytest.raises(Interrupted):
        renderer.run()
    ts = renderer.folder.timestring
    result = Renderer(load_settings({**BASE, **PAN}), tmp_path / "cut", models_dir=str(tiny_models_dir),
                      resume=ts).run()
    resumed = _frames(result)
    assert len(resumed) == len(whole) and all(np.array_equal(a, b) for a, b in zip(whole, resumed))


def _texture(size=128, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((size // 4, size // 4, 3)).astype(np.float32)
    return (cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def test_adherence_recovers_a_known_pan_zoom_and_rotation_within_a_pixel():
    from deforum_wan.render.adherence import measure
    from deforum_wan.render.warp import CameraPath

    settings = load_settings({**BASE, "W": 128, "H": 128, "max_frames": 12, "translation_x": "0: (2)",
                              "translation_y": "0: (-1)", "zoom": "0: (1.01)", "angle": "0: (0.5)"})
    camera = settings.camera
    frames, _ = CameraPath(camera, _texture(), 0.0).at([float(t) for t in range(12)])
    followed = measure(camera, frames, [(0, 0, 6), (1, 6, 12)])
    assert followed.pairs == 10 and followed.skipped == 0
    assert followed.px < 0.5 and followed.deg < 0.1, followed
    assert [w["window"] for w in followed.windows] == [0, 1] and all(w["px"] < 1 for w in followed.windows)
    frozen = measure(camera, [frames[0]] * 12, [(0, 0, 12)])  # a video that ignores the camera
    assert frozen.px > 2.0 and frozen.deg > 0.4
    assert "mean error over 10 frame pairs" in followed.describe()
    depth = load_settings({**BASE, "W": 128, "H": 128, "max_frames": 6, "animation_mode": "3D",
                           "translation_x": "0: (1)", "translation_z": "0: (3)", "rotation_3d_z": "0: (1)"}).camera
    frames, _ = CameraPath(depth, _texture(), 0.0).at([float(t) for t in range(6)])
    assert measure(depth, frames, [(0, 0, 6)]).px < 0.5  # 3D (flat depth) too
    flat = measure(camera, [np.full((128, 128, 3), 90, np.uint8)] * 3, [(0, 0, 3)])
    assert flat.pairs == 0 and flat.skipped == 2 and flat.to_dict()["px"] is None


@pytest.mark.slow
def test_bench_camera_compares_off_guide_a_grid_and_vace(tiny_models_dir, tmp_path, capsys):
    from deforum_wan.cli.main import build_parser

    md, out, settings = tmp_path / "camera.md", tmp_path / "camera.json", tmp_path / "move.txt"
    settings.write_text(json.dumps({"animation_mode": "3D", "translation_z": "0: (2)", "rotation_3d_y": "0: (0.5)",
                                    "prompts": {"0": "a harbour at dusk"}, "W": 512, "H": 512,
                                    "wan_depth_model": "tiny-depth"}))  # depth warping (3D's default) on
    args = build_parser().parse_args(
        ["bench", "--camera", "--repeat", "1", "--size", "64x64", "--frames", "12", "--steps", "4",
         "--threads", "1", "--models-dir", str(tiny_models_dir), "--grid", "0.25:0.5", "--settings", str(settings),
         "--md", str(md), "--json-file", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    r = json.loads(out.read_text())["camera"]
    assert list(r["rows"]) == ["off", "guide", "guide 0.25/0.5", "vace"]
    assert r["camera"]["animation_mode"] == "3D" and r["vace_model"] == "tiny-random-vace"
    for name, row in r["rows"].items():
        assert row["time_s"] > 0 and row["pairs"] > 0 and row["px"] >= 0 and row["deg"] >= 0, name
        if name != "off":
            assert row["psnr_db_vs_off"] > 0 and 0 < row["ssim_vs_off"] < 1, name
    # 4 steps: guide's defaults hold 1 step, the grid's skips 1 and holds 2: other frames
    assert r["rows"]["guide"]["psnr_db_vs_off"] != r["rows"]["guide 0.25/0.5"]["psnr_db_vs_off"]
    assert "| guide 0.25/0.5 |" in md.read_text() and "guide 0.25/0.5" in printed


def test_bench_grid_is_read_in_one_line():
    from deforum_wan.cli.bench.camera import parse_grid
    from deforum_wan.errors import WanError

    assert parse_grid("0.02:0.05, 0.04:0.1") == [(0.02, 0.05), (0.04, 0.1)] and parse_grid(None) == []
    for bad in ("0.1", "a:b", "0.3:0.2", "0.5:2"):
        with pytest.raises(WanError, match="--grid"):
            parse_grid(bad)


def vace_request():
    """A VACE continuation window's request as the render loop builds it, camera frames included."""
    from deforum_wan.backends.base import GenerateRequest
    from deforum_wan.render.follow import CameraFollower

    settings = load_settings({**BASE, **PAN, "wan_camera": "vace", "wan_continue_model": "tiny-random-vace"})
    plan = make_plan(settings)
    w = plan.windows[1]
    rng = np.random.default_rng(5)
    context = rng.random((w.overlap + 1, plan.height, plan.width, 3), dtype=np.float32)
    frames, keep = CameraFollower(settings.camera, plan).vace_frames(w, context)
    return GenerateRequest(mode="i2v", prompt="p", negative_prompt="", num_frames=w.native_frames, width=plan.width,
                           height=plan.height, seed=1, guidance_scale=5.0, steps=1, context=context,
                           vace_frames=frames, vace_keep=keep)


def test_the_official_vace_inputs_carry_the_camera_frames_and_mask_as_diffusers_does():
    torch = pytest.importorskip("torch")
    from deforum_wan.backends.diffusers_backend import vace_inputs
    from deforum_wan.backends.official import _vace_tensors

    req = vace_request()
    lead = len(req.context)
    keep = req.vace_keep.astype(bool)
    assert keep.any() and not keep.all()  # the pan uncovers an edge: some pixels kept, some generated
    [frames], [masks] = _vace_tensors(req, torch.device("cpu"))
    shown = (frames.permute(1, 2, 3, 0).numpy() + 1) / 2
    generate = masks[0].numpy() > 0.5  # wan/vace.py's own threshold
    for j, warped in enumerate(req.vace_frames[: req.num_frames - lead]):
        np.testing.assert_allclose(shown[lead + j], warped, atol=1e-6)  # the warped frame, whole
        assert np.array_equal(generate[lead + j], ~keep[j])
    assert not generate[:lead].any()
    video, mask = vace_inputs(req)  # the diffusers backend: the same frames and the same mask
    for i in range(req.num_frames):
        np.testing.assert_allclose(np.asarray(video[i]) / 255.0, shown[i], atol=1 / 255 + 1e-6)
        assert np.array_equal(np.asarray(mask[i]) > 127, generate[i])


def test_the_loop_pastes_camera_pixels_only_where_the_backend_kept_them():
    from deforum_wan.render.follow import paste_kept

    out = [np.full((2, 2, 3), 0.25, np.float32) for _ in range(3)]
    warped = np.full((2, 2, 2, 3), 0.75, np.float32)
    share = np.array([[[1.0, 0.3], [0.0, 0.5]]] * 2, np.float32)  # 0.3: the backend generated it
    paste_kept(out, warped, share, 1)
    assert np.array_equal(out[0], np.full((2, 2, 3), 0.25, np.float32))  # before the camera frames
    for frame in out[1:]:
        assert np.array_equal(frame[..., 0], [[0.75, 0.25], [0.25, 0.75]])
