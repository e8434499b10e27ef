"""The clip plan: timing invariants on real files and on generated schedules."""
import json
import subprocess
import sys

import deforum_oracle
import pytest
from helpers import EXAMPLE, real_settings_files
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan.config.planner import make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError
from deforum_wan.models.registry import get_model


def check_invariants(plan, settings):
    # Segments tile the output timeline; each starts on its keyframe.
    assert plan.segments[0].start == 0 and plan.segments[-1].end == plan.max_frames
    for a, b in zip(plan.segments, plan.segments[1:]):
        assert a.end == b.start and a.start < a.end
    if plan.retime != "native":
        # each prompt key starts a segment; so does each Deforum cut (strength 0)
        cuts = settings.camera.cuts() if settings.camera is not None else []
        assert [s.start for s in plan.segments] == sorted({p.frame for p in settings.prompts} | set(cuts))
        assert [s.start for s in plan.segments if s.cut] == sorted(set(cuts))
    # Windows: 4n+1 frames within the limit, enough frames for what they add.
    for w in plan.windows:
        assert (w.native_frames - 1) % 4 == 0 and w.native_frames <= plan.window_limit
        need = w.new_frames + (0 if w.index == 0 or w.cut else 1 + w.overlap)
        assert need <= w.native_frames and w.new_frames >= 1
        assert w.mode == ("t2v" if (w.index == 0 or w.cut) and not settings.init_image else "i2v")
        assert w.cut == (w.index > 0 and w.mode == "t2v")  # a cut starts over with T2V, no overlap
        assert w.overlap <= plan.overlap
    # Each segment's new native frames come from its windows, in order, without gaps.
    for seg in plan.segments:
        ws = [w for w in plan.windows if w.segment == seg.index]
        assert ws and sum(w.new_frames for w in ws) == seg.native_frames
        assert [w.native_start for w in ws] == [sum(x.new_frames for x in ws[:i]) for i in range(len(ws))]
        assert all(w.prompt == seg.prompt for w in ws)
    # Output ranges of windows are contiguous and cover every frame.
    assert plan.windows[0].start_frame == 0 and plan.windows[-1].end_frame == plan.max_frames
    for a, b in zip(plan.windows, plan.windows[1:]):
        assert a.end_frame == b.start_frame


@pytest.mark.parametrize("path", real_settings_files(), ids=lambda p: p.name)
def test_real_files_plan(path):
    s = load_settings(path)
    plan = make_plan(s)
    check_invariants(plan, s)
    assert plan.max_frames == s.max_frames and plan.fps == s.fps
    # Seed of each window is Deforum's at the window's first frame.
    # Deforum draws random/schedule(-1) seeds from the global RNG; those are ours to derive.
    deterministic = s.seed_behavior in ("iter", "fixed", "ladder", "alternate")
    seeds = deforum_oracle.seeds(s.seed, s.seed_behavior, s.seed_iter_N, s.max_frames) if deterministic else None
    for w in plan.windows:
        if deterministic:
            assert w.seed == seeds[w.start_frame]
        # An SD file's steps and cfg do not drive Wan: the model's own values do...
        model = get_model(w.model)
        assert (w.guidance_scale, w.steps) == (model.guidance, model.steps)
    # ...unless asked for: then Deforum's cfg schedule and steps at the window's first frame.
    deforum = load_settings(path, {"wan_use_deforum_sampling": True, "seed": s.seed})
    for w in make_plan(deforum).windows:
        assert w.guidance_scale == pytest.approx(deforum.cfg[w.start_frame])
        assert w.steps == deforum.steps_at(w.start_frame)
        assert w.sources["guidance_scale"] == "Deforum cfg_scale_schedule"


def test_example_plan_shape():
    s = load_settings(EXAMPLE)
    plan = make_plan(s)
    check_invariants(plan, s)
    assert plan.native_fps == 16 and plan.fps == 12 and plan.window_limit == 17
    assert [seg.start for seg in plan.segments] == [0, 16, 32]
    assert plan.windows[0].model == "tiny-random" and plan.windows[1].model == "tiny-random-i2v"
    assert all(w.overlap == 2 for w in plan.windows[1:])
    # 16 output frames at 12 fps = 4/3 s = 21.33 native frames at 16 fps.
    assert [seg.native_frames for seg in plan.segments] == [21, 21, 21]


def test_native_retime_keeps_wan_fps_and_rescales_keys():
    s = load_settings(EXAMPLE, {"wan_retime": "native"})
    plan = make_plan(s)
    check_invariants(plan, s)
    assert plan.fps == 16 and plan.max_frames == 64
    assert [seg.start for seg in plan.segments] == [0, 21, 43]
    assert all(seg.native_frames == seg.end - seg.start for seg in plan.segments)


def test_clip_duration_and_model_window():
    s = load_settings(EXAMPLE, {"wan_clip_duration": 0, "max_frames": 200, "prompts": {"0": "x"}})
    plan = make_plan(s)
    # 267 native frames: 81 + 3 x 78 (81 - 1 - overlap 2) is the fewest windows; balanced.
    assert plan.window_limit == 81 and len(plan.windows) == 4
    assert max(w.native_frames for w in plan.windows) <= 81
    s = load_settings(EXAMPLE, {"wan_clip_duration": 2.0})
    assert make_plan(s).window_limit == 33


def test_init_image_makes_first_window_i2v():
    s = load_settings(EXAMPLE, {"use_init": True, "init_image": "start.png"})
    plan = make_plan(s)
    assert plan.windows[0].mode == "i2v" and plan.windows[0].model == "tiny-random-i2v"


def test_i2v_only_model_without_init_image_is_an_error():
    with pytest.raises(SettingsError, match="image-to-video only"):
        make_plan(load_settings(EXAMPLE, {"wan_model": "tiny-random-i2v"}))


def test_overlap_too_large_is_an_error():
    with pytest.raises(SettingsError, match="wan_overlap"):
        make_plan(load_settings(EXAMPLE, {"wan_overlap": 16}))


def test_motion_strength_scales_shift():
    a = make_plan(load_settings(EXAMPLE)).windows[1].shift
    b = make_plan(load_settings(EXAMPLE, {"wan_motion_strength": 2.0})).windows[1].shift
    assert b == pytest.approx(2 * a)


@given(
    max_frames=st.integers(1, 400),
    fps=st.sampled_from([8, 12, 15, 16, 24, 25, 30, 60]),
    keys=st.lists(st.integers(0, 450), max_size=6),
    overlap=st.integers(0, 8),
    clip=st.sampled_from([0, 0.5, 1.0, 2.5, 5.0]),
    model=st.sampled_from(["tiny-random", "tiny-random-ti2v", "wan2.1-t2v-14b", "wan2.2-t2v-a14b"]),
    retime=st.sampled_from(["blend", "flow", "nearest", "native"]),
)
def test_plan_invariants_hold_for_any_schedule(max_frames, fps, keys, overlap, clip, model, retime):
    prompts = {"0": "first", **{str(k): f"p{k}" for k in keys}}
    try:
        s = load_settings({"prompts": prompts, "max_frames": max_frames, "fps": fps, "W": 64, "H": 64,
                           "seed": 3, "wan_model": model, "wan_overlap": overlap,
                           "wan_clip_duration": clip, "wan_retime": retime})
        plan = make_plan(s)
    except SettingsError as exc:
        assert "wan_overlap" in str(exc)  # the only refusal these inputs can meet
        return
    check_invariants(plan, s)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "deforum_wan", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_cli_plan_json_from_any_folder(tmp_path):
    r = _cli("plan", str(EXAMPLE), "--json", "--set", "wan_overlap=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {"fps", "max_frames", "model", "native_fps", "segments", "windows"} <= set(data)
    assert {"start", "end", "prompt", "negative_prompt"} <= set(data["segments"][0])
    assert {"index", "segment", "mode", "start_frame", "end_frame", "native_frames", "seed",
            "guidance_scale", "steps", "prompt", "negative_prompt"} <= set(data["windows"][0])
    assert data["overlap"] == 1 and data["windows"][0]["mode"] == "t2v"
    assert list(tmp_path.iterdir()) == []  # planning writes nothing


def test_cli_plan_table_and_model_override(tmp_path):
    r = _cli("plan", str(EXAMPLE), "--model", "tiny-random-ti2v", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "tiny-random-ti2v" in r.stdout and "24 fps" in r.stdout


@pytest.mark.parametrize("content,needle", [
    ("{oops", "invalid JSON"),
    ('{"prompts": {"__import__(\'os\')": "x"}}', "frame key"),
    ('{"prompts": {"0": "x"}, "batch_name": "../../etc"}', ".."),
    ('{"prompts": {"0": "x"}, "W": "wide"}', "W must be"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, content, needle):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    r = _cli("plan", str(f), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad.txt: ") and needle in lines[0]
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]
