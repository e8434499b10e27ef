"""Parseq manifests: Deforum's adapter rules (parseq_adapter.py), one-line refusals, and a
manifest that spells out a plain file's schedules plans exactly as that file does."""
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from deforum_wan.cli.main import main
from deforum_wan.config.frames import frame_values
from deforum_wan.config.planner import format_plan, make_plan
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import SettingsError

BASE = {"max_frames": 8, "fps": 15, "W": 64, "H": 64, "prompts": {"0": "a lighthouse"}, "seed": 3,
        "seed_behavior": "fixed", "animation_mode": "2D", "zoom": "0: (1)"}


def manifest(frames: list[dict], **options) -> str:
    return json.dumps({"options": {"output_fps": 24, **options}, "rendered_frames": frames})


def rendered(n: int, **fields) -> list[dict]:
    """``n`` frames; each field a function of the frame, its delta as Parseq's renderer makes it."""
    out = []
    for f in range(n):
        entry = {"frame": f}
        for name, fn in fields.items():
            entry[name] = fn(f)
            if name != "deforum_prompt":
                prev = fn(f - 1) if f else None
                entry[name + "_delta"] = fn(f) if f == 0 else (1 + fn(f) - prev if name == "zoom" else fn(f) - prev)
        out.append(entry)
    return out


def load(frames, options=None, **keys):
    return load_settings(dict(BASE, parseq_manifest=manifest(frames, **(options or {})), **keys))


@pytest.mark.parametrize("value, says", [
    ("{not json", "not JSON"),
    ('{"rendered_frames": [{"frame": 0}]}', "no 'options'"),
    ('{"options": {}, "rendered_frames": []}', "no rendered_frames"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "zoom": "fast"}]}', "zoom must be a number"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "zoom": NaN}]}', "NaN"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "zoom": null}]}', "zoom must be a number"),
    ('{"options": {}, "rendered_frames": [{"frame": 1}]}', "no frame 0"),
    ('{"options": {"output_fps": -3}, "rendered_frames": [{"frame": 0}]}', "output_fps"),
    ('[1, 2]', "JSON object"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "zoom": 1e999}]}', "zoom must be a number"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "zoom": 1' + "0" * 400 + '}]}', "integer of"),
    ('{"options": {}, "rendered_frames": [{"frame": 0, "deforum_prompt": "a \\ud800"}]}', "lone surrogate"),
    ("https://sd-parseq.web.app/api/manifest/abc", "URL, which is not fetched"),
])
def test_a_bad_manifest_is_one_line(value, says):
    with pytest.raises(SettingsError) as info:
        load_settings(dict(BASE, parseq_manifest=value))
    assert says in str(info.value) and "\n" not in str(info.value)


def test_absurd_manifests_are_refused_before_parsing():
    with pytest.raises(SettingsError, match="larger than 100 MB"):
        load_settings(dict(BASE, parseq_manifest="{" + " " * (100 * 2**20)))
    with pytest.raises(SettingsError, match="100001 rendered frames"):
        load_settings(dict(BASE, parseq_manifest=manifest([{"frame": i} for i in range(100_001)])))


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_an_empty_manifest_leaves_the_file_alone(empty):
    plain = load_settings(dict(BASE))
    settings = load_settings(dict(BASE, parseq_manifest=empty))
    assert settings.parseq is None
    assert make_plan(settings).to_json() == make_plan(plain).to_json()


def test_non_schedule_overrides_set_length_and_fps():
    frames = rendered(12, zoom=lambda f: 1.0)
    on = load(frames)
    assert (on.max_frames, on.fps) == (12, 24)
    off = load(frames, parseq_non_schedule_overrides=False)
    assert (off.max_frames, off.fps) == (8, 15)  # the file's; the manifest is cut to 8
    assert len(off.camera.series["zoom"]) == 8


def test_a_shorter_manifest_repeats_its_last_entry_deltas_included():
    frames = rendered(5, zoom=lambda f: 1 + 0.01 * f, angle=lambda f: 2.0 * f)
    s = load(frames, parseq_non_schedule_overrides=False)
    zoom, angle = s.camera.series["zoom"], s.camera.series["angle"]
    assert zoom[:5] == pytest.approx([1.0, 1.01, 1.01, 1.01, 1.01])  # deltas: 1 + difference
    assert zoom[5:] == pytest.approx([1.01] * 3) and angle[5:] == pytest.approx([2.0] * 3)  # the motion goes on
    absolute = load(frames, parseq_non_schedule_overrides=False, parseq_use_deltas=False)
    assert absolute.camera.series["zoom"] == pytest.approx([1, 1.01, 1.02, 1.03, 1.04, 1.04, 1.04, 1.04])


def test_a_field_overrides_only_when_frame_0_has_it():
    frames = rendered(8, zoom=lambda f: 1.0)
    for entry in frames[1:]:
        entry["scale"] = 12.0  # not in frame 0: Deforum's cfg_scale_schedule stays
    s = load(frames, cfg_scale_schedule="0: (5)")
    assert s.cfg.values == [5.0] * 8
    frames[0]["scale"] = 9.0
    assert load(frames).cfg.values == [9.0] + [12.0] * 7


def test_prompts_seeds_and_strength_come_from_the_manifest():
    def prompt(f):
        w = f / 7
        return f"a cat: {1 - w:.3f} AND a dog: {w:.3f} --neg blur: 1 AND haze: 1"

    frames = rendered(8, deforum_prompt=prompt, seed=lambda f: 100.25 + f, strength=lambda f: 0.0 if f == 6 else 0.5,
                      scale=lambda f: 4.0 + f)
    for entry in frames:
        entry["subseed"], entry["subseed_strength"] = int(entry["seed"]) + 1, entry["seed"] % 1
    s = load(frames, animation_prompts_positive="ignored in Parseq mode")
    plan = make_plan(s)
    # a segment where the strongest part changes (frame 4) and at the cut (strength 0 at 6)
    assert [(seg.start, seg.prompt, seg.cut) for seg in plan.segments] == [
        (0, "a cat", False), (4, "a dog", False), (6, "a dog", True)]
    assert plan.segments[0].negative_prompt == "blur"
    rows = frame_values(s)
    assert rows[4]["prompt"] == "a cat: 0.429 AND a dog: 0.571" and rows[4]["negative_prompt"] == "blur: 1 AND haze: 1"
    assert [r["seed"] for r in rows] == [100 + f for f in range(8)]
    assert rows[2]["subseed"] == 103 and rows[2]["subseed_strength"] == pytest.approx(0.25)
    assert [r["cfg"] for r in rows] == [4.0 + f for f in range(8)]
    assert plan.windows[0].seed == 100
    assert any("strongest part" in w for w in plan.warnings)


def test_without_parseq_seeds_schedule_uses_the_files_seed():
    # Deforum's Parseq mode evaluates seed_schedule with s = -1 (random seeds): here s is the seed
    frames = rendered(8, zoom=lambda f: 1.0)
    s = load(frames, seed_behavior="schedule", seed_schedule="0: (s)", seed=42)
    assert [r["seed"] for r in frame_values(s)] == [42] * 8


def test_the_manifests_cadence_is_the_one_reported():
    frames = rendered(8, zoom=lambda f: 1.0)
    s = load(frames, options={"cadence": 3})
    assert any("cadence (diffusion_cadence: 3" in w for w in s.warnings)


def test_plan_json_frames(tmp_path, capsys):
    frames = rendered(6, deforum_prompt=lambda f: "red --neg blue", zoom=lambda f: 1 + 0.1 * f,
                      translation_x=lambda f: 3.0 * f * f)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dict(BASE, parseq_manifest=manifest(frames))))
    assert main(["plan", str(path), "--json", "--frames"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["max_frames"], out["fps"], len(out["frames"])) == (6, 24, 6)
    row = out["frames"][3]
    assert set(row) >= {"frame", "prompt", "negative_prompt", "seed", "subseed", "subseed_strength", "cfg",
                        "strength", "camera"}
    assert (row["prompt"], row["negative_prompt"]) == ("red", "blue")
    assert row["camera"]["zoom"] == pytest.approx(1.1) and row["camera"]["translation_x"] == pytest.approx(15.0)
    assert set(row["camera"]) == {"angle", "zoom", "translation_x", "translation_y", "translation_z", "rotation_3d_x",
                                  "rotation_3d_y", "rotation_3d_z", "transform_center_x", "transform_center_y",
                                  "perspective_flip_theta", "perspective_flip_phi", "perspective_flip_gamma",
                                  "perspective_flip_fv", "fov", "near", "far"}
    assert main(["plan", str(path), "--frames"]) == 0
    table = capsys.readouterr().out
    assert "zoom*" in table and "Parseq manifest: 6 frames at 24 fps, keyframes for prompts, zoom" in table


def test_plain_files_get_frames_too():
    s = load_settings(dict(BASE, prompts={"0": "sea `t*2`", "4": "sky --neg fog"}, zoom="0: (1), 7: (1.7)",
                           seed_behavior="iter", animation_prompts_negative="dark"))
    rows = frame_values(s)
    assert [r["prompt"] for r in rows[:5]] == ["sea 0", "sea 2", "sea 4", "sea 6", "sky"]
    assert rows[0]["negative_prompt"] == "dark" and rows[4]["negative_prompt"] == "fog  dark"
    assert [r["seed"] for r in rows[:3]] == [3, 4, 5]
    assert [r["camera"]["zoom"] for r in rows] == pytest.approx([1 + 0.1 * f for f in range(8)])
    assert rows[0]["subseed"] == -1 and rows[0]["subseed_strength"] == 0
    strong = frame_values(load_settings(dict(BASE, strength_schedule="0: (1.4), 3: (1.4), 4: (-0.5)")))
    assert [r["strength"] for r in strong] == [1.0] * 4 + [0.0] * 4  # clamped as Deforum sends it


_values = st.floats(-5, 5, allow_nan=False).map(lambda v: round(v, 3))


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 24), zoom=st.lists(st.floats(0.8, 1.2).map(lambda v: round(v, 3)), min_size=1, max_size=4),
       angle=st.lists(_values, min_size=1, max_size=4), tx=st.lists(_values, min_size=1, max_size=4),
       strength=st.lists(st.sampled_from([0.0, 0.4, 0.65]), min_size=1, max_size=3),
       cfg=st.lists(st.floats(1, 12).map(lambda v: round(v, 2)), min_size=1, max_size=3),
       prompts=st.lists(st.sampled_from(["a cat", "a dog --neg rain", "(sea:1.3) at dusk"]), min_size=1, max_size=3,
                        unique=True),
       seed=st.integers(0, 2**32 - 1), deltas=st.booleans())
def test_a_manifest_of_a_schedules_values_plans_as_that_schedule(n, zoom, angle, tx, strength, cfg, prompts, seed,
                                                                 deltas):
    def keyframes(values):
        return ", ".join(f"{i * n // len(values)}: ({v})" for i, v in enumerate(values))

    plain = load_settings(dict(BASE, max_frames=n, zoom=keyframes(zoom), angle=keyframes(angle),
                               translation_x=keyframes(tx), strength_schedule=keyframes(strength),
                               cfg_scale_schedule=keyframes(cfg), seed=seed,
                               prompts={str(i * n // len(prompts)): p for i, p in enumerate(prompts)}))
    rows = frame_values(plain)
    frames = [{"frame": r["frame"], "deforum_prompt": plain.frame_prompts[r["frame"]], "seed": r["seed"],
               "subseed": r["subseed"], "subseed_strength": r["subseed_strength"],
               "scale": r["cfg"], "strength": r["strength"], "zoom": r["camera"]["zoom"],
               "angle": r["camera"]["angle"], "translation_x": r["camera"]["translation_x"]} for r in rows]
    if deltas:  # the same steps as Parseq's deltas (the step from f-1 to f); the absolute fields unused
        for entry in frames:
            for name in ("zoom", "angle", "translation_x"):
                entry[name + "_delta"], entry[name] = entry[name], 99.0
    parseq = load_settings(dict(BASE, max_frames=n, seed=seed, parseq_use_deltas=deltas,
                                parseq_manifest=manifest(frames, output_fps=15)))
    assert frame_values(parseq) == rows
    def planned(settings):  # what the render does; sources, notes and warnings say where it came from
        plan = make_plan(settings).to_json()
        for w in plan["windows"]:
            del w["sources"]
        return {k: v for k, v in plan.items() if k not in ("warnings", "parseq")}

    assert planned(parseq) == planned(plain)
    assert format_plan(make_plan(parseq)).count("warning") >= format_plan(make_plan(plain)).count("warning")


def test_a_manifest_file_is_read_for_a_job_only_from_the_allowed_folders(tmp_path, capsys):
    from deforum_wan.render.inputs import PathRefused, confine_job_paths

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir(), elsewhere.mkdir()
    text = manifest(rendered(5, zoom=lambda f: 1.0))
    (out / "song.json").write_text(text)
    (elsewhere / "secret.json").write_text(text)
    job = confine_job_paths(dict(BASE, parseq_manifest="song.json"), out, tmp_path)
    assert job["parseq_manifest"] == text and load_settings(job).max_frames == 5
    with pytest.raises(PathRefused, match="inside the output folder"):
        confine_job_paths(dict(BASE, parseq_manifest=str(elsewhere / "secret.json")), out, tmp_path)
    # not read where no job reads it: one line instead
    with pytest.raises(SettingsError, match="read only for a job"):
        load_settings(dict(BASE, parseq_manifest="song.json"))
    # the command line reads the files its user names
    settings = tmp_path / "s.json"
    settings.write_text(json.dumps(dict(BASE, parseq_manifest=str(elsewhere / "secret.json"))))
    assert main(["plan", str(settings), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_frames"] == 5
