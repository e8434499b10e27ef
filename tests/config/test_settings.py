"""Settings import: real Deforum files, all key variants, hostile input."""
import json
import os
import subprocess
import sys

import deforum_oracle
import pytest
from helpers import real_settings_files
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan.config.keys import KEYS
from deforum_wan.config.settings import load_settings, parse_settings_text, resolve_batch_name
from deforum_wan.errors import SettingsError


def _prompt_text(p):
    return (p.positive, p.negative)


@pytest.mark.parametrize("path", real_settings_files(), ids=lambda p: p.name)
def test_real_files_load_with_deforums_prompts_and_seed(path):
    raw = json.loads(path.read_text(encoding="utf-8-sig"))
    s = load_settings(path)
    assert s.max_frames == int(raw.get("max_frames", 120))
    assert s.fps == float(raw.get("fps", 15))
    if raw.get("seed", -1) != -1:
        assert s.seed == raw["seed"] and not s.seed_was_random
    # Per-frame prompt as Deforum computes it (args.py folding, render.py ffill/bfill).
    prompts = raw.get("prompts")
    pos, neg = raw.get("animation_prompts_positive", ""), raw.get("animation_prompts_negative", "")
    if pos or neg:
        prompts = deforum_oracle.apply_pos_neg(prompts, pos, neg)
    max_f = s.max_frames - 1
    by_frame = {}
    for key, text in prompts.items():
        frame = int(key) if str(key).isdigit() else int(eval_key(key, max_f))
        by_frame[frame] = text
    series = deforum_oracle.prompt_series(by_frame, s.max_frames)
    ours = {p.frame: p for p in s.prompts}
    current = None
    for f in range(s.max_frames):
        current = ours.get(f, current)
        pos_d, _, neg_d = series[f].partition("--neg")
        # Same text up to whitespace and the emphasis/LoRA syntax we strip (warned).
        assert current.positive in " ".join(pos_d.split()) or "emphasis" in " ".join(s.warnings)
        assert " ".join(current.negative.split()) == " ".join(neg_d.split()) or "emphasis" in " ".join(s.warnings)


def eval_key(key, max_f):
    from deforum_wan.config.schedule import evaluate_number
    return evaluate_number(key.strip("'\""), max_f=max_f)


def test_deforum_default_file(deforum_dir):
    s = load_settings(deforum_dir / "sdwebui_default_settings.txt")
    assert [p.frame for p in s.prompts] == [0, 30, 60, 90]
    assert s.prompts[2].positive == "a beautiful coconut"
    assert s.prompts[2].negative == "photo, realistic nsfw, nude"
    # positive_prompts/negative_prompts are write-only: never applied again.
    assert s.prompts[0].negative == "nsfw, nude"
    assert s.seed_was_random and 0 <= s.seed < 2**32
    assert s.cfg[0] == 7 and s.steps == 25 and s.color_coherence == "LAB"


def test_webpilot_positive_prompts_not_doubled(deforum_dir):
    s = load_settings(deforum_dir / "webpilot_20250919110444_settings.txt")
    assert len(s.prompts) == 1
    assert s.prompts[0].positive.count("jungle") == 1
    assert "<lora" not in s.prompts[0].positive and s.prompts[0].negative == ""
    assert any("emphasis" in w for w in s.warnings)


def test_xmyx_empty_prompt_takes_positive_and_negative_fields(deforum_dir):
    s = load_settings(deforum_dir / "xmyx_Evolve-Glitch-2.txt")
    assert s.prompts[0].positive == "Symmetrical Centred"
    assert s.prompts[0].negative.startswith("nsfw, nudes")
    assert s.seed_behavior == "fixed"


def test_edream_width_height_fall_back_to_512_like_deforum(deforum_dir):
    s = load_settings(deforum_dir / "edream_test-settings.txt")
    assert (s.W, s.H) == (512, 512)
    assert any("width" in w for w in s.warnings)


def test_svi_with_one_seed_for_every_window_is_named():
    said = "Stable Video Infinity advises a different seed per window"
    base = {"wan_model": "tiny-random-i2v", "W": 64, "H": 64}
    for svi in ("film", "shot", "pro"):
        assert any(said in w for w in load_settings({**base, "wan_svi": svi, "seed_behavior": "fixed"}).warnings)
    assert not any(said in w for w in load_settings({**base, "wan_svi": "pro", "seed_behavior": "iter"}).warnings)
    assert not any(said in w for w in load_settings({**base, "wan_svi": "off", "seed_behavior": "fixed"}).warnings)


def test_string_cadence_and_keys_past_max_frames(deforum_dir):
    s = load_settings(deforum_dir / "sdwebui_simple.input_settings.txt")
    assert [p.frame for p in s.prompts] == [0]
    assert sum("past max_frames" in w for w in s.warnings) == 3
    s = load_settings(deforum_dir / "dorplaut_settings.json")
    assert s.raw["diffusion_cadence"] == "2"  # unknown keys kept as they were


@pytest.mark.parametrize("name", ["r1_real_dorplaut_settings-example_stray_V.json",
                                  "r2_real_xmyx_Scene-Change_unquoted_karras.txt",
                                  "r3_real_colab_StableFun_inverted_prompts.txt"])
def test_real_broken_files_fail_with_one_clear_line(deforum_dir, name):
    with pytest.raises(SettingsError) as err:
        load_settings(deforum_dir / "broken" / name)
    msg = str(err.value)
    assert msg.startswith(name + ": ") and "\n" not in msg


def _base(**kw):
    d = {"prompts": {"0": "a cat"}, "max_frames": 20, "fps": 10, "seed": 1, "W": 64, "H": 64,
         "wan_model": "tiny-random"}
    d.update(kw)
    return d


def test_legacy_animation_prompts_win_also_as_json_string():
    s = load_settings(_base(animation_prompts=json.dumps({"0": "legacy --neg bad", "10": "two"})))
    assert [(p.frame, p.positive, p.negative) for p in s.prompts] == [(0, "legacy", "bad"), (10, "two", "")]
    s = load_settings(_base(animation_prompts={"5": "dict form"}))
    assert s.prompts[0].positive == "dict form" and s.prompts[0].frame == 0


def test_expression_prompt_keys():
    s = load_settings(_base(prompts={"0": "a", "2*5": "b", "max_f-4": "c"}))
    assert [p.frame for p in s.prompts] == [0, 10, 15]


def test_pos_neg_fields_are_folded_like_deforum():
    s = load_settings(_base(prompts={"0": "cat --neg dog", "5": "bird"},
                            animation_prompts_positive="photo,", animation_prompts_negative="--neg ugly"))
    assert (s.prompts[0].positive, s.prompts[0].negative) == ("photo, cat", "dog ugly")
    assert (s.prompts[1].positive, s.prompts[1].negative) == ("photo, bird", "ugly")


def test_legacy_keys_converted():
    s = load_settings(_base(color_coherence="Match Frame 0 HSV", skip_video_for_run_all=True))
    assert s.color_coherence == "HSV" and s.skip_video_creation
    assert "skip_video_for_run_all" not in s.raw


def test_bom_and_crlf(tmp_path):
    p = tmp_path / "s.txt"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(_base(), indent=4).replace("\n", "\r\n").encode())
    assert load_settings(p).max_frames == 20


def test_size_rounded_down_with_warning():
    s = load_settings(_base(W=70, H=100))
    assert (s.W, s.H) == (64, 96) and any("rounded" in w for w in s.warnings)


def test_random_seed_is_drawn_once_and_written_back():
    s = load_settings(_base(seed=-1))
    assert s.seed_was_random and s.to_dict()["seed"] == s.seed
    again = load_settings(s.to_dict())
    assert again.seed == s.seed and not again.seed_was_random


def test_round_trip_keeps_unknown_keys_and_prompts():
    s = load_settings(_base(my_custom_key={"x": [1, 2]}, wan_overlap=3))
    d = json.loads(json.dumps(s.to_dict()))
    assert d["my_custom_key"] == {"x": [1, 2]} and d["wan_overlap"] == 3
    again = load_settings(d)
    assert [(p.frame, p.positive) for p in again.prompts] == [(p.frame, p.positive) for p in s.prompts]


def test_batch_name_resolution_and_sanitizing():
    s = load_settings(_base(batch_name="My run: {seed}/{timestring}"))
    assert resolve_batch_name(s.batch_name, "20240101010101", s) == "My_run__1_20240101010101"


HOSTILE = [
    ("not json", "{", "invalid JSON"),
    ("truncated", '{"prompts": {"0": "a"', "invalid JSON"),
    ("list", "[1, 2]", "JSON object"),
    ("empty", "", "empty"),
    ("prompts list", {"prompts": ["a"]}, "mapping"),
    ("prompt key word", {"prompts": {"zero": "a"}}, "unknown name"),
    ("prompt key import", {"prompts": {"__import__('os')": "a"}}, "frame key"),
    ("prompt key attr", {"prompts": {"max_f.real": "a"}}, "not allowed"),
    ("prompt key negative", {"prompts": {"-3": "a"}}, "negative"),
    ("prompt key fraction", {"prompts": {"1.5": "a"}}, "whole"),
    ("prompt value list", {"prompts": {"0": ["a"]}}, "text"),
    ("only keys past end", {"prompts": {"500": "a"}}, "inside max_frames"),
    ("max_frames zero", {"max_frames": 0}, "max_frames"),
    ("max_frames text", {"max_frames": "many"}, "max_frames"),
    ("max_frames huge", {"max_frames": 10**9}, "max_frames"),
    ("fps negative", {"fps": -5}, "fps"),
    ("fps null", {"fps": None}, "fps"),
    ("W text", {"W": "wide"}, "W"),
    ("H tiny", {"H": 3}, "H"),
    ("cfg unbalanced", {"cfg_scale_schedule": "0: (7"}, "unbalanced"),
    ("cfg hostile", {"cfg_scale_schedule": "0: (__import__('os').getcwd())"}, "math function"),
    ("cfg huge exponent", {"cfg_scale_schedule": "0: (2**99999)"}, "exponent"),
    ("seed text", {"seed": "lucky"}, "seed"),
    ("seed_iter_N zero", {"seed_iter_N": 0}, "seed_iter_N"),
    ("seed behavior", {"seed_behavior": "chaos"}, "seed_behavior"),
    ("batch dotdot", {"batch_name": "../escape"}, ".."),
    ("batch absolute", {"batch_name": "/etc/x"}, "absolute"),
    ("batch windows abs", {"batch_name": "C:\\x"}, "absolute"),
    ("batch nul", {"batch_name": "a\x00b"}, "NUL"),
    ("resume bad", {"resume_from_timestring": True, "resume_timestring": "../../x"}, "14 digits"),
    ("model unknown", {"wan_model": "wan9"}, "unknown model"),
    ("overlap text", {"wan_overlap": "lots"}, "wan_overlap"),
    ("retime unknown", {"wan_retime": "warp"}, "wan_retime"),
    ("animation_prompts bad json", {"animation_prompts": "{oops"}, "animation_prompts"),
    # Non-string values where text is meant.
    ("preset list", {"wan_preset": ["fast"]}, "wan_preset must be text"),
    ("preset dict", {"wan_preset": {"fast": 1}}, "wan_preset must be text"),
    ("preset number", {"wan_preset": 0}, "wan_preset must be one of"),
    ("preset bool", {"wan_preset": False}, "wan_preset must be text"),
    # Numbers no evaluation may make: huge, complex, a division by zero inside a function.
    ("cfg tower", {"cfg_scale_schedule": "0: (10**10**10)"}, "too large"),
    ("cfg product", {"cfg_scale_schedule": "0: (" + "*".join(["9999999999"] * 40) + ")"}, "out of range"),
    ("cfg 2**100000", {"cfg_scale_schedule": "0: (2**100000)"}, "too large"),
    ("cfg huge literal", {"cfg_scale_schedule": "0: (" + "9" * 500 + ")"}, "out of range"),
    ("cfg complex", {"cfg_scale_schedule": "0: ((-8)**0.5)"}, "not a real number"),
    ("cfg log(2,1)", {"cfg_scale_schedule": "0: (log(2,1))"}, "log(): float division by zero"),
    ("seed_schedule log(2,1)", {"seed_behavior": "schedule", "seed_schedule": "0: (log(2, 1))"}, "log()"),
    ("prompt key tower", {"prompts": {"10**10**10": "a"}}, "too large"),
    ("fps huge int", {"fps": 10**400}, "fps holds an integer of 1329 bits; at most 64"),
    ("W huge text", {"W": "9" * 400}, "W must be a number"),
    ("cfg huge int", {"cfg_scale_schedule": 10**400}, "cfg_scale_schedule holds an integer"),
    ("cfg 64-bit int", {"cfg_scale_schedule": 2**63}, "cfg_scale_schedule: a value of 9.22337e+18 is out of range"),
    ("unknown key huge int", {"my_key": 10**30}, "my_key holds an integer of 100 bits"),
    # Lone surrogates (JSON's "\ud800") anywhere: values, keys, nested.
    ("prompt surrogate", {"prompts": {"0": "a \ud800"}}, "prompts['0'] holds a lone surrogate ('\\ud800')"),
    ("prompt key surrogate", {"prompts": {"0\udcff": "a"}}, "a key of prompts holds a lone surrogate"),
    ("batch surrogate", {"batch_name": "run\ud800"}, "batch_name holds a lone surrogate"),
    ("key surrogate", {"\ud800": 1}, "a key of settings holds a lone surrogate"),
    ("init surrogate", {"use_init": True, "init_image": "\udfff.png"}, "init_image holds a lone surrogate"),
    ("lora surrogate", {"wan_loras": [{"path": "\ud800.safetensors"}]}, "wan_loras[0]['path'] holds"),
    # Paths the OS cannot take.
    ("init nul", {"use_init": True, "init_image": "a\x00.png"}, "init_image contains a NUL"),
    ("init long", {"use_init": True, "init_image": "a" * 5000}, "init_image is 5000 characters long"),
    ("soundtrack nul", {"add_soundtrack": "File", "soundtrack_path": "a\x00.wav"}, "soundtrack_path contains a NUL"),
    ("soundtrack long", {"add_soundtrack": "File", "soundtrack_path": "a" * 4097}, "soundtrack_path is 4097"),
    ("soundtrack list", {"add_soundtrack": "File", "soundtrack_path": ["a.wav"]}, "soundtrack_path must be text"),
    ("lora nul", {"wan_loras": ["a\x00.safetensors"]}, "wan_loras contains a NUL"),
    ("lora dict nul", {"wan_loras": [{"path": "a\x00.safetensors"}]}, "wan_loras contains a NUL"),
    ("lora long", {"wan_loras": ["a" * 5000]}, "wan_loras is 5000 characters long"),
    ("distill nul", {"wan_distill_lora": "a\x00.safetensors"}, "wan_distill_lora contains a NUL"),    # What the backend options trust the reader to have refused.
    ("lora weight", {"wan_loras": [{"path": "a.safetensors", "weight": "strong"}]},
     "wan_loras weight must be a number, got 'strong'"),
    ("offload unknown", {"wan_offload": "disk"}, "wan_offload must be one of"),
    ("cache_threshold text", {"wan_cache_threshold": "high"}, "wan_cache_threshold must be a number in (0, 10]"),
    ("gpus zero", {"wan_gpus": 0}, "wan_gpus must be between 1 and 64"),
]


@pytest.mark.parametrize("label,data,needle", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_settings_table(label, data, needle):
    with pytest.raises(SettingsError) as err:
        if isinstance(data, str):
            load_settings(parse_settings_text(data, "f.txt"), name="f.txt")
        else:
            load_settings(_base(**data), name="f.txt")
    msg = str(err.value)
    assert msg.startswith("f.txt: ") and needle in msg and "\n" not in msg


def test_a_number_no_float_holds_is_a_one_line_error():
    from deforum_wan.config.schedule import ExprError
    from deforum_wan.config.values import number

    with pytest.raises(ExprError, match="^fps must be a number, got an integer of 1329 bits$"):
        number(10**400, "fps", 1, 240)  # the tab and the presets read values without load_settings


def test_file_too_large(tmp_path):
    p = tmp_path / "big.txt"
    p.write_bytes(b'{"x": "' + b"a" * (17 * 2**20) + b'"}')
    with pytest.raises(SettingsError, match="^big.txt: settings file is larger than 16 MB$"):
        load_settings(p)


def test_a_file_with_a_5000_digit_number_is_one_line(tmp_path):
    p = tmp_path / "digits.txt"
    p.write_text('{"prompts": {"0": "a"}, "x": ' + "1" * 5000 + "}")  # beyond Python's int-string limit
    with pytest.raises(SettingsError, match="^digits.txt: invalid JSON: a number has too many digits$"):
        load_settings(p)


def test_a_lone_surrogate_from_a_file_is_refused_and_printable(tmp_path):
    p = tmp_path / "s.txt"
    p.write_text('{"prompts": {"0": "a \\ud800 b"}}')  # the file itself is valid UTF-8 JSON
    with pytest.raises(SettingsError) as err:
        load_settings(p)
    assert str(err.value).encode("utf-8").decode() == "s.txt: prompts['0'] holds a lone surrogate ('\\ud800'), not text"


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(tmp_path / "nope.txt")
    p = tmp_path / "bin.txt"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SettingsError, match="not UTF-8"):
        load_settings(p)


_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(st.one_of(_surrogates, st.sampled_from("a0\x00 ")), max_size=8),  # lone surrogates, NULs
    st.sampled_from(["0: (10**10**10)", "0: (" + "*".join(["9999999999"] * 20) + ")", "0: (2**100000)",
                     "0: ((-8)**0.5)", "0: (log(2,1))", "0: (round(5, -10**12))", "9" * 400, "a" * 5000,
                     "fast", "File", "true", "3D"]),
)
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.integers(),
                         st.sampled_from([2**63, 2**64, -(10**400)]), st.floats(allow_nan=True), _hostile_text)
_nested = st.recursive(_json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=8), _hostile_text), inner, max_size=3)),
    max_leaves=6)
_keys = st.sampled_from(["W", "H", "fps", "max_frames", "seed", "seed_behavior", "seed_iter_N",
                         "steps", "cfg_scale_schedule", "batch_name", "prompts", "animation_prompts",
                         "color_coherence", "seed_schedule", "enable_steps_scheduling", "steps_schedule",
                         "use_init", "init_image", "add_soundtrack", "soundtrack_path", "animation_mode",
                         "translation_z", "zoom", "strength_schedule", "\ud800", *(k.name for k in KEYS)])


@given(st.dictionaries(_keys, _nested, max_size=8))
def test_fuzz_settings_only_raise_settings_error(data):
    from deforum_wan.config.planner import make_plan
    try:
        make_plan(load_settings(data))
    except SettingsError as exc:
        assert "\n" not in str(exc)
        str(exc).encode("utf-8")  # printable: no lone surrogate left in the message


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "deforum_wan", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="needs FIFOs and /dev/zero")
def test_render_names_each_bad_file_on_its_own_line_and_exits_2(tmp_path):
    """Every file is checked: with several, each bad one fails alone (the good ones would render;
    tests/render/test_render.py renders one beside a bad one); nothing is written."""
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    (tmp_path / "bad.txt").write_text('{"prompts": {"0": "x"}, "max_frames": -1}')
    (tmp_path / "surrogate.txt").write_text('{"prompts": {"0": "\\ud800"}}')
    (tmp_path / "log.txt").write_text('{"prompts": {"0": "x"}, "cfg_scale_schedule": "0: (log(2,1))"}')
    names = ["fifo.txt", "zero.txt", "bad.txt", "surrogate.txt", "log.txt"]
    r = _cli("render", *names, "--outdir", "out", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines == [
        "error: fifo.txt: settings file is not a regular file (a FIFO)",
        "error: zero.txt: settings file is not a regular file (a device)",
        "error: bad.txt: max_frames must be between 1 and 100000, got -1",
        "error: surrogate.txt: prompts['0'] holds a lone surrogate ('\\ud800'), not text",
        "error: log.txt: cfg_scale_schedule at frame 0: log(): float division by zero",
    ]
    assert not (tmp_path / "out").exists()
    single = _cli("plan", "fifo.txt", cwd=tmp_path)  # one file: its error is the command's
    assert single.returncode == 2 and single.stderr == "error: fifo.txt: settings file is not a regular file (a FIFO)\n"


@pytest.mark.parametrize("mode, key, schedule, named", [
    ("3D", "translation_z", "0: (1.75)", "translation_z"),
    ("3D", "rotation_3d_y", "0: (0), 30: (0.5*sin(t/10))", "rotation_3d_y"),
    ("3D", "translation_z", "0: (0)", None),  # still camera
    ("2D", "zoom", "0: (1.0025+0.002*sin(1.25*3.14*t/30))", "zoom"),  # Deforum's default 2D zoom
    ("2D", "zoom", "0: (1.0)", None),
    ("2D", "translation_z", "0: (1.75)", "zoom"),  # a 3D key means nothing in 2D; Deforum's default zoom moves
    ("Interpolation", "translation_z", "0: (1.75)", "animation_mode Interpolation"),
])
def test_what_wan_does_not_apply_is_named_in_one_warning(mode, key, schedule, named):
    raw = {"prompts": {"0": "a lighthouse"}, "max_frames": 60, "animation_mode": mode, key: schedule,
           **({"zoom": "0: (1)"} if named is None and mode == "2D" and key != "zoom" else {})}
    s = load_settings({**raw, "wan_camera": "off"})
    warning = [w for w in s.warnings if w.startswith("not applied to Wan's windows")]
    assert bool(warning) == bool(named), s.warnings
    if named:
        assert named in warning[0]
    assert s.raw[key] == schedule  # kept and written back for Deforum
    followed = load_settings(raw)  # wan_camera guide (the default) follows the camera: not named
    assert followed.wan_camera == "guide"
    if named and mode != "Interpolation":
        assert not any(named in w for w in followed.warnings)


def test_a_file_without_animation_mode_is_2d_as_in_deforum():
    """Deforum's args.py defaults animation_mode to 2D (with its slow default zoom)."""
    from deforum_wan.config.planner import make_plan

    s = load_settings({"prompts": {"0": "a"}, "max_frames": 30, "wan_model": "tiny-random"})
    assert s.camera.mode == "2D" and s.camera.moves
    assert s.camera.series["zoom"][0] == pytest.approx(1.0025)  # 1.0025 + 0.002*sin(0)
    assert {w.wan_camera for w in make_plan(s).windows} == {"guide"}
    broken = load_settings({"prompts": {"0": "a"}, "max_frames": 30, "zoom": "0: (1.01"})
    assert any("zoom" in w and "camera is left still" in w for w in broken.warnings)
    none = load_settings({"prompts": {"0": "a"}, "max_frames": 30, "animation_mode": "None", "zoom": "0: (1.01"})
    assert none.camera is None or none.camera.mode == "None"


def test_a_broken_camera_schedule_leaves_the_camera_still_and_says_so():
    s = load_settings({"prompts": {"0": "a"}, "max_frames": 30, "animation_mode": "3D", "translation_z": "0: (1.75"})
    assert any("translation_z" in w and "camera is left still" in w for w in s.warnings)
    assert s.camera.mode == "None"


def test_real_3d_file_names_its_camera_and_hybrid_video(deforum_dir):
    s = load_settings({**json.loads((deforum_dir / "xmyx_Flashbacks-30s.txt").read_text()), "wan_camera": "off"})
    (warning,) = [w for w in s.warnings if w.startswith("not applied to Wan's windows")]
    assert "the 3D camera (rotation_3d_y, rotation_3d_z, translation_x, translation_y, translation_z" in warning
    assert "hybrid video (hybrid_motion: Optical Flow, hybrid_composite: Normal; wan_camera is off" in warning
    assert s.camera.cuts()[:2] == [50, 98]
    guided = load_settings(json.loads((deforum_dir / "xmyx_Flashbacks-30s.txt").read_text()))
    assert not any("hybrid" in w for w in guided.warnings if w.startswith("not applied"))
