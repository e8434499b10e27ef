"""What a render with real weights gets: the model's size, steps, guidance and shift unless a
Wan key (or, when asked for, Deforum's schedules) says otherwise; Wan's default negative
prompt when none is given; VACE continuation windows that keep the frames they continue."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import EXAMPLE

from deforum_wan.backends.base import GenerateRequest
from deforum_wan.backends.diffusers_backend import vace_inputs
from deforum_wan.config.planner import format_plan, make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError
from deforum_wan.models.registry import MODELS, WAN_NEGATIVE, get_model

# What a Stable Diffusion Deforum file holds (Deforum's defaults): 512x512, 25 steps, cfg 7.
SD_FILE = {"W": 512, "H": 512, "steps": 25, "cfg_scale_schedule": "0: (7)", "fps": 16, "max_frames": 120,
           "seed": 5, "prompts": {"0": "a red fox in snow"}, "animation_mode": "None"}


def plan_of(**keys):
    return make_plan(load_settings({**SD_FILE, **keys}))


def test_an_sd_file_renders_with_the_models_own_values():
    plan = plan_of(wan_model="wan2.1-t2v-1.3b")
    t2v, vace = get_model("wan2.1-t2v-1.3b"), get_model("wan2.1-vace-1.3b")
    assert (plan.width, plan.height) == (832, 480) and "nearest" in plan.size_source
    first, later = plan.windows[0], plan.windows[1]
    assert (first.steps, first.guidance_scale, first.shift) == (t2v.steps, t2v.guidance, t2v.shift) == (50, 6.0, 8.0)
    assert (later.steps, later.guidance_scale, later.shift) == (vace.steps, vace.guidance, vace.shift)
    assert first.sources == {"steps": "model wan2.1-t2v-1.3b: Wan2.1 generate.py (50 steps for text-to-video)",
                             "guidance_scale": f"model wan2.1-t2v-1.3b: {t2v.source('guidance')}",
                             "shift": f"model wan2.1-t2v-1.3b: {t2v.source('shift')}",
                             "negative_prompt": "model wan2.1-t2v-1.3b (Wan's default)"}
    assert "Wan2.1 README" in first.sources["shift"] and "Wan2.1 README" in first.sources["guidance_scale"]
    assert "shift 16" in later.sources["shift"]  # VACE: generate.py's shift for vace
    a14b = plan_of(wan_model="wan2.2-t2v-a14b").windows[0]
    assert (a14b.steps, a14b.guidance_scale, a14b.guidance_scale_2, a14b.shift) == (40, 4.0, 3.0, 12.0)


# Each registry default against the upstream files it names (Wan2.1 generate.py's defaults,
# Wan2.2 wan/configs/*.py, the Wan2.1 README's advice for T2V-1.3B).
UPSTREAM = {"Wan2.1 generate.py": {"steps": {"t2v": 50, "flf2v": 50, "vace": 50, "i2v": 40}, "guidance": 5.0},
            "wan_ti2v_5B": {"steps": 50, "shift": 5.0, "guidance": 5.0},
            "wan_t2v_A14B": {"steps": 40, "shift": 12.0, "guidance": 4.0, "guidance_2": 3.0},
            "wan_i2v_A14B": {"steps": 40, "shift": 5.0, "guidance": 3.5, "guidance_2": 3.5}}


def test_every_default_names_its_source_and_matches_it():
    for spec in MODELS.values():
        values = ["steps", "shift", "guidance"] + (["guidance_2"] if spec.guidance_2 is not None else [])
        for value in values:
            assert spec.source(value), f"{spec.id} {value}: no source"
        if spec.tiny:
            assert all(spec.source(v).startswith("tiny test model") for v in values)
            continue
        config = spec.source("steps").split("wan/configs/")[-1].split(".py")[0]
        if spec.family == "wan2.2":
            assert {v: getattr(spec, v) for v in values} == {v: UPSTREAM[config][v] for v in values}, spec.id
            continue
        gen = UPSTREAM["Wan2.1 generate.py"]
        assert spec.steps == gen["steps"][spec.kind] and f"{spec.steps} steps" in spec.source("steps")
        if spec.id == "wan2.1-t2v-1.3b":  # the README's advice, generate.py's value named beside it
            assert (spec.shift, spec.guidance) == (8.0, 6.0)
            assert "--sample_shift 8" in spec.source("shift") and "gives 5.0" in spec.source("shift")
            assert "3.0 at 480p" in spec.source("shift") and "--sample_guide_scale 6" in spec.source("guidance")
            continue
        assert spec.guidance == gen["guidance"] and "Wan2.1 generate.py" in spec.source("guidance")
        shift = {"flf2v": 16.0, "vace": 16.0}.get(spec.kind, 3.0 if spec.sizes[0] == (832, 480) else 5.0)
        assert spec.shift == shift and f"shift {shift:g}" in spec.source("shift"), spec.id
    plan = plan_of(wan_model="wan2.2-t2v-a14b").to_json()  # plan --json carries them
    assert plan["windows"][0]["sources"]["guidance_scale_2"] == (
        "model wan2.2-t2v-a14b: Wan2.2 wan/configs/wan_t2v_A14B.py (sample_guide_scale, low noise)")


def test_wan_keys_win_then_deforum_when_asked_then_the_model():
    w = plan_of(wan_model="wan2.1-t2v-1.3b", wan_steps=30, wan_guidance=4.5, wan_shift=3, wan_guidance_2=2,
                wan_size="480x832").windows[0]
    assert (w.steps, w.guidance_scale, w.shift, w.guidance_scale_2) == (30, 4.5, 3.0, 2.0)
    assert set(w.sources.values()) >= {"wan_steps", "wan_guidance", "wan_shift", "wan_guidance_2"}
    plan = plan_of(wan_model="wan2.1-t2v-1.3b", wan_use_deforum_sampling=True, cfg_scale_schedule="0: (7), 20: (3)")
    assert [(w.steps, w.guidance_scale) for w in plan.windows][0] == (25, 7.0)
    assert plan.windows[-1].guidance_scale == pytest.approx(load_settings(
        {**SD_FILE, "cfg_scale_schedule": "0: (7), 20: (3)"}).cfg[plan.windows[-1].start_frame])
    assert plan.windows[0].sources["steps"] == "Deforum steps"
    # a Wan key still beats Deforum's schedule
    assert plan_of(wan_model="wan2.1-t2v-1.3b", wan_use_deforum_sampling=True, wan_steps=12).windows[0].steps == 12
    assert (plan_of(wan_model="wan2.1-t2v-1.3b", wan_size="480x832").width,) == (480,)


@pytest.mark.parametrize("size, expected", [((512, 512), (832, 480)), ((512, 768), (480, 832)),
                                            ((1920, 1080), (832, 480)), ((832, 480), (832, 480))])
def test_deforum_size_becomes_the_trained_size_of_the_nearest_aspect(size, expected):
    plan = plan_of(wan_model="wan2.1-t2v-1.3b", W=size[0], H=size[1])
    assert (plan.width, plan.height) == expected
    assert ("trained size" in plan.size_source) and (size == expected) == ("a trained size" in plan.size_source)
    wide = plan_of(wan_model="wan2.1-t2v-14b", W=1920, H=1080)  # 14B knows 1280x720 too: same aspect, first listed
    assert (wide.width, wide.height) == (1280, 720)


def test_the_plan_says_where_each_value_came_from():
    text = format_plan(plan_of(wan_model="wan2.1-t2v-1.3b", wan_guidance=4))
    assert "size 832x480 (model wan2.1-t2v-1.3b: trained size nearest to W/H 512x512)" in text
    assert "steps 50 (model wan2.1-t2v-1.3b: Wan2.1 generate.py (50 steps for text-to-video))" in text and "guidance 4 (wan_guidance)" in text
    assert "negative prompt Wan's default" in text and "VACE context" in text
    data = make_plan(load_settings({**SD_FILE, "wan_model": "wan2.1-t2v-1.3b"})).to_json()
    assert data["size_source"] and data["windows"][0]["sources"]["steps"].startswith("model wan2.1-t2v-1.3b: Wan2.1 generate.py")


def test_the_negative_prompt_is_wans_default_unless_given():
    plan = plan_of(wan_model="wan2.1-t2v-14b", wan_continue_model="wan2.1-i2v-14b-720p")
    assert plan.windows[0].negative_prompt == WAN_NEGATIVE
    assert plan.windows[1].negative_prompt == "镜头晃动，" + WAN_NEGATIVE  # Wan2.1's I2V config prefix
    assert get_model("wan2.1-flf2v-14b-720p").default_negative == "镜头切换，镜头晃动，" + WAN_NEGATIVE
    assert all(m.default_negative == WAN_NEGATIVE for m in MODELS.values() if m.family == "wan2.2")
    given = plan_of(prompts={"0": "a fox --neg blurry"}).windows[0]
    assert given.negative_prompt == "blurry" and "negative_prompt" not in given.sources


def test_vace_continuation_keeps_the_frames_it_continues_i2v_crossfades():
    vace = plan_of(wan_model="wan2.1-t2v-1.3b", wan_overlap=4)
    assert vace.windows[0].context == 0 and all(w.context == 5 for w in vace.windows[1:])
    i2v = plan_of(wan_model="wan2.1-t2v-14b", wan_continue_model="wan2.1-i2v-14b-720p", wan_overlap=4)
    assert all(w.context == 0 for w in i2v.windows)
    with pytest.raises(SettingsError, match="VACE models run on one GPU"):
        plan_of(wan_model="wan2.1-t2v-1.3b", wan_gpus=2)


def test_vace_inputs_keep_the_context_frames_with_black_masks():
    rng = np.random.default_rng(0)
    context = rng.random((3, 32, 48, 3), dtype=np.float32)
    req = GenerateRequest(mode="i2v", prompt="p", negative_prompt="", num_frames=9, width=48, height=32,
                          seed=1, guidance_scale=5, steps=1, context=context)
    video, mask = vace_inputs(req)
    assert len(video) == len(mask) == 9
    for i in range(3):
        assert np.abs(np.asarray(video[i], np.float32) / 255 - context[i]).max() <= 0.5 / 255 + 1e-6
        assert np.asarray(mask[i]).max() == 0  # black: keep
    assert all(np.asarray(m).min() == 255 for m in mask[3:])  # white: generate
    assert all(np.asarray(v).std() == 0 for v in video[3:])  # mid grey to fill


@pytest.mark.slow
@pytest.mark.parametrize("partner, kept", [("tiny-random-vace", True), ("tiny-random-i2v", False)])
def test_a_vace_windows_first_frames_are_its_context(partner, kept, tiny_models_dir, tmp_path):
    """Stop after the first window, read the frames it carried (the conditioning frame and the
    overlap), resume: with VACE the overlap on disk is exactly those frames; an I2V-only
    partner crossfades them with frames it generated without seeing them."""
    from PIL import Image

    from deforum_wan.render.loop import Renderer
    from deforum_wan.render.run_folder import RunFolder

    data = dict(json.loads(EXAMPLE.read_text()), fps=16, max_frames=24, wan_retime="native", wan_overlap=3,
                wan_clip_duration=0.8, wan_continue_model=partner, prompts={"0": "a lighthouse"},
                animation_prompts_negative="", color_coherence="None", skip_video_creation=True)
    stop = {"now": False}

    def on_event(event):
        if event["event"] == "window_done":
            stop["now"] = True

    settings = load_settings(data)
    assert len(make_plan(settings).windows) >= 2
    with pytest.raises(Exception, match="resume"):
        Renderer(settings, tmp_path, models_dir=str(tiny_models_dir), on_event=on_event,
                 should_stop=lambda: stop["now"]).run()
    ts = next(tmp_path.rglob("*_manifest.json")).name.split("_")[0]
    folder = RunFolder.at(next(tmp_path.rglob("*_manifest.json")).parent, ts)
    with np.load(folder.carry_file) as carry:
        tail, tail_start = carry["tail"], int(carry["state"][0])
    Renderer(load_settings(folder.settings_file), tmp_path, models_dir=str(tiny_models_dir), resume=ts).run()
    overlap = [np.asarray(Image.open(folder.frame(tail_start + 1 + i)), np.float32) / 255 for i in range(3)]
    error = max(np.abs(frame - tail[1 + i]).max() for i, frame in enumerate(overlap))
    if kept:
        assert error <= 1 / 255 + 1e-6  # the video's own frames (PNG rounding only)
    else:
        assert error > 4 / 255  # blended with what the I2V window generated


def test_t2v_14b_continues_with_the_480p_i2v_model_at_480p():
    at_480 = plan_of(wan_model="wan2.1-t2v-14b", W=832, H=480)
    assert at_480.continue_model == "wan2.1-i2v-14b-480p" and at_480.windows[1].shift == 3.0
    at_720 = plan_of(wan_model="wan2.1-t2v-14b", W=1280, H=720)
    assert at_720.continue_model == "wan2.1-i2v-14b-720p" and at_720.windows[1].shift == 5.0
    # a partner the user names is kept
    assert plan_of(wan_model="wan2.1-t2v-14b", W=832, H=480,
                   wan_continue_model="wan2.1-i2v-14b-720p").continue_model == "wan2.1-i2v-14b-720p"


@pytest.mark.parametrize("value", [None, 5, 1.5, ["a"], {"x": 1}])
def test_a_prompt_that_is_not_text_fails_in_one_line(value):
    with pytest.raises(SettingsError) as err:
        load_settings({**SD_FILE, "prompts": {"0": "a fox", "10": value}})
    assert "prompt '10' must be text" in str(err.value) and "\n" not in str(err.value)


def test_backtick_weights_are_stripped_with_the_emphasis():
    s = load_settings({**SD_FILE, "prompts": {"0": "a (red:`0.5+t/40`) fox, (snow:1.2), (sky:`sin(t)`)"}})
    assert s.prompts[0].positive == "a red fox, snow, sky"


@pytest.mark.parametrize("fit, expected", [("crop", "centre"), ("fit", "bars"), ("stretch", "stretched")])
def test_init_images_keep_their_aspect_unless_stretched(fit, expected, tmp_path):
    from PIL import Image

    from deforum_wan.render.loop import load_image

    # a 2:1 image: left half red, right half blue; rendered into a square
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20, 0] = 255
    img[:, 20:, 2] = 255
    img[:, :4] = (0, 255, 0)  # a green edge: cropped away by crop only
    Image.fromarray(img).save(tmp_path / "init.png")
    out = load_image(str(tmp_path / "init.png"), 32, 32, fit=fit)
    assert out.shape == (32, 32, 3)
    green_edge = out[16, 0, 1] > 0.9
    if expected == "bars":  # letterboxed: black above and below, the whole width kept
        assert out[0].max() == 0 and out[-1].max() == 0 and green_edge and out[16, -3, 2] > 0.9
    elif expected == "centre":  # fills the frame with the middle: the edges are gone
        assert out[0].max() > 0.9 and not green_edge and out[16, 4, 0] > 0.9 and out[16, -3, 2] > 0.9
    else:  # stretched: fills the frame and keeps the edges
        assert out[0].max() > 0.9 and green_edge and out[16, -3, 2] > 0.9
    assert load_settings({**SD_FILE, "wan_init_fit": fit}).init_fit == fit


@pytest.mark.parametrize("keys", [{"wan_model": "wan2.1-flf2v-14b-720p", "use_init": True, "init_image": "a.png"},
                                  {"wan_model": "wan2.1-t2v-14b", "wan_continue_model": "wan2.1-flf2v-14b-720p"}])
def test_flf2v_is_refused_by_the_plan_before_any_load(keys):
    with pytest.raises(SettingsError, match="first and a last image") as err:
        plan_of(**keys)
    assert "\n" not in str(err.value)
