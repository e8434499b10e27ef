"""Keyframe schedules, safe expressions and seeds against Deforum's behaviour."""
import math
import time

import deforum_oracle
import pytest
from helpers import real_settings_files
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan.config.schedule import (
    ExprError,
    build_schedule,
    compile_expr,
    evaluate_number,
    parse_frame_key,
    parse_keyframes,
    seed_at,
)


def test_linear_between_numeric_keys_and_held_after_last():
    s = build_schedule("0: (7), 30: (5.5)", 40)
    assert s[0] == 7 and s[30] == 5.5 and s[39] == 5.5
    assert s[15] == pytest.approx(6.25)
    assert s[10] == pytest.approx(7 - 1.5 * 10 / 30)


def test_expression_value_is_evaluated_per_frame_until_next_key():
    s = build_schedule("0: (1+0.5*sin(t/4)), 20: (3)", 30)
    for t in range(20):
        assert s[t] == pytest.approx(1 + 0.5 * math.sin(t / 4))
    assert s[25] == 3


def test_non_plain_number_holds_like_deforum():
    # Deforum interpolates only plain numbers; "2*3" is re-evaluated (held) until the next key.
    s = build_schedule("0: (2*3), 10: (0)", 11)
    assert s[5] == 6


def test_expression_keys_and_names():
    s = build_schedule('0: (1), "max_f-9": (max_f), "max_f": (s)', 20, seed=77)
    assert s[10] == 19  # max_f = max_frames - 1
    assert s[19] == 77
    assert s[5] == pytest.approx(1 + (19 - 1) * 5 / 10)


def test_missing_frame_zero_holds_first_value_with_warning():
    s = build_schedule("10: (3), 20: (5)", 30)
    assert s[0] == 3 and s[10] == 3 and s[15] == 4
    assert any("frame 0" in w for w in s.warnings)


def test_keys_past_max_frames_ignored_with_warning():
    s = build_schedule("0: (1), 50: (9)", 10)
    assert s.values == [1.0] * 10
    assert any("50" in w for w in s.warnings)


def test_commas_inside_functions_are_not_separators():
    keys = parse_keyframes("0: (where(t>5, 1, 2)), 10: (3)", 20)
    assert keys == {0: "(where(t>5, 1, 2))", 10: "(3)"}
    s = build_schedule("0: (where(t>5, 1, 2)), 10: (3)", 20)
    assert s[3] == 2 and s[7] == 1


@pytest.mark.parametrize("bad", [
    "0: (7", "0: 7)", "0: ((1)", "0 (7)", "",
    "0: (__import__('os').system('true'))", "0: (t.__class__)", "0: ((1).real)",
    "0: (open('x'))", "0: (lambda: 1)", "0: ([1,2])", "0: ('text')", "0: (9**9**9)",
    "0: (10**100)", "0: (1e308*10)", "0: (1/0)", "0: (x)", "0: (t if t else __x__)",
    "-5: (1)", "2.5: (1)", '"max_f+": (1)', "0: (" + "1+" * 600 + "1)",
])
def test_hostile_or_malformed_schedules_raise_our_error(bad):
    with pytest.raises(ExprError):
        build_schedule(bad, 10)


def test_frame_keys():
    assert parse_frame_key("max_f-20", 120) == 99
    assert parse_frame_key("2*15", 120) == 30
    assert parse_frame_key('"10+5"', 120) == 15
    with pytest.raises(ExprError):
        parse_frame_key("max_f/2", 120)  # 59.5, not whole
    with pytest.raises(ExprError):
        parse_frame_key("0-1", 120)


@pytest.mark.parametrize("behavior", ["iter", "fixed", "ladder", "alternate"])
@pytest.mark.parametrize("iter_n", [1, 2, 5])
def test_seeds_match_deforum_next_seed(behavior, iter_n):
    expected = deforum_oracle.seeds(1000, behavior, iter_n, 60)
    assert [seed_at(f, 1000, behavior, iter_n) for f in range(60)] == expected


def test_random_and_schedule_seeds_are_reproducible():
    a = [seed_at(f, 5, "random") for f in range(20)]
    assert a == [seed_at(f, 5, "random") for f in range(20)]
    assert a[0] == 5 and len(set(a)) > 15
    sched = build_schedule('0:(s), 1:(-1), "max_f-2":(-1), "max_f-1":(s)', 10, seed=5)
    seeds = [seed_at(f, 5, "schedule", schedule=sched) for f in range(10)]
    assert seeds[0] == 5 and seeds[9] == 5 and len(set(seeds[1:9])) > 4


def test_compile_rejects_unknown_names_and_evaluates_allowed():
    assert compile_expr("t*2+max_f", {"t", "max_f"}).evaluate(t=3, max_f=10) == 16
    with pytest.raises(ExprError):
        compile_expr("os", {"t"})
    assert evaluate_number("2*15") == 30


_text = st.text(alphabet=st.sampled_from(list("0123456789:(), t+-*/.maxf_s'\"e<>=abc")), max_size=60)


@given(_text, st.integers(min_value=1, max_value=200))
def test_fuzz_schedule_never_crashes_with_other_errors(text, max_frames):
    try:
        s = build_schedule(text, max_frames)
    except ExprError:
        return
    assert len(s.values) == max_frames
    assert all(math.isfinite(v) for v in s.values)


@given(st.text(max_size=80))
def test_fuzz_arbitrary_text_expressions(text):
    try:
        value = evaluate_number(text, t=1, max_f=10, s=3)
    except ExprError:
        return
    assert math.isfinite(value)


def test_power_is_bounded_by_its_result_not_its_exponent():
    s = build_schedule("0: (cos(t/9)**180), 5: (0.5**300), 9: (2**40)", 12)
    assert s[0] == 1.0 and 0 < s[5] < 1e-80 and s[9] == 2.0**40
    for text in ("0: (9**99999)", "0: (0.5**-99999)"):
        with pytest.raises(ExprError, match="too large"):
            build_schedule(text, 3)
    with pytest.raises(ExprError, match="not a real number"):
        build_schedule("0: ((-8)**0.5)", 3)
    with pytest.raises(ExprError, match="out of range"):
        build_schedule("0: (1e14*1e14)", 3)


HOSTILE_NUMBERS = [
    ("0: (10**10**10)", "too large"),
    ("0: (" + "*".join(["9999999999"] * 40) + ")", "out of range"),  # each product is checked, so no int grows
    ("0: (2**100000)", "too large"),
    ("0: ((2**50)**(2**50))", "too large"),
    ("0: (" + "9" * 900 + ")", "out of range"),  # a literal no float holds
    ("0: (" + "9" * 400 + "/1)", "out of range"),
    ("0: ((-8)**0.5)", "not a real number"),
    ("0: ((-8)**(1/3))", "not a real number"),
    ("0: (log(2,1))", "log(): float division by zero"),
    ("0: (log(0))", "log(): math domain error"),
    ("0: (1 % 0)", "modulo by zero"),
    ("0: (1.5 // 0)", "division by zero"),
    ("0: (0**-1)", "negative power"),
    ("0: (exp(1000))", "exp(): math range error"),
    ("0: (floor(1e308*10))", "out of range"),
    ("0: (where(1, 10**16, 0))", "too large"),
    ("0: (1\x00)", "not a valid expression"),
    ("0: (\ud800)", "not a valid expression"),
    ("0: (" + "-" * 900 + "1)", "too complex"),
    ("0: (" + "(" * 300 + "1" + ")" * 300 + ")", "not a valid expression"),  # deeper than the parser allows
]


@pytest.mark.parametrize("text, needle", HOSTILE_NUMBERS, ids=[t[:40] for t, _ in HOSTILE_NUMBERS])
def test_hostile_numbers_are_one_line_expr_errors(text, needle):
    start = time.monotonic()
    with pytest.raises(ExprError) as err:
        build_schedule(text, 10, name="cfg")
    assert time.monotonic() - start < 2  # refused, not computed
    message = str(err.value)
    assert message.startswith("cfg") and needle in message and "\n" not in message, message


@pytest.mark.parametrize("value", [10**400, float("nan"), float("inf"), -1e16])
def test_a_bare_number_schedule_must_be_a_finite_real_in_range(value):
    with pytest.raises(ExprError, match="out of range"):
        build_schedule(value, 5, name="cfg")
    with pytest.raises(ExprError, match="out of range"):
        evaluate_number(value)


def test_round_with_a_huge_digit_count_is_exact_and_quick():
    start = time.monotonic()
    # Python's round(5, -10**8) computes 10**(10**8) (about a minute); 20 digits suffice below 1e15.
    assert evaluate_number("round(5, -10**8)") == 0 and evaluate_number("round(123.456, 10**8)") == 123.456
    assert time.monotonic() - start < 2
    assert evaluate_number("round(1234.5678, 2)") == 1234.57 and evaluate_number("round(1250, -2)") == 1200


_hostile_tokens = st.lists(st.sampled_from(["10", "9999999999", "**", "*", "/", "//", "%", "-", "(", ")", ",",
                                            "0.5", "0", "1e308", "log(", "round(", "exp(", "sqrt(", "t", "e",
                                            "\x00", "\ud800", "9" * 30]), max_size=25).map("".join)


@given(_hostile_tokens)
def test_fuzz_hostile_tokens_only_raise_expr_error(text):
    try:
        value = evaluate_number(text, t=3)
    except ExprError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= 1e15


def test_a_doubled_key_is_read_as_deforum_reads_it():
    # Deforum splits "0: 0: (x)" on every ':' and keeps [0] and [1]: the value is 0.
    assert build_schedule("0: 0: (sin(t)*5), 10: (2)", 12).values[:2] == [0.0, 0.2]


def test_a_long_per_frame_schedule_is_read_and_the_keyframe_count_bounded():
    text = ", ".join(f"{i}: ({i * 0.001:.6f})" for i in range(20_000))  # ~300 000 characters
    assert len(text) > 200_000 and build_schedule(text, 20_000)[19_999] == pytest.approx(19.999)
    with pytest.raises(ExprError, match="keyframes; at most"):
        build_schedule(", ".join(["0: (1)"] * 100_001), 5)


@pytest.mark.parametrize("path", [p for p in real_settings_files()
                                  if p.name in ("webpilot_20250919110444_settings.txt", "xmyx_Classic-3D-Motion-2.txt",
                                                "edream_test-settings.txt")], ids=lambda p: p.name)
def test_the_camera_schedules_of_real_files_read(path):
    from deforum_wan.config.settings import read_settings_file

    raw = read_settings_file(path)
    for key in ("translation_x", "translation_y", "translation_z", "rotation_3d_x", "rotation_3d_y",
                "rotation_3d_z", "zoom", "angle", "strength_schedule"):
        assert len(build_schedule(raw[key], int(raw["max_frames"]), 1, key).values) == int(raw["max_frames"])
