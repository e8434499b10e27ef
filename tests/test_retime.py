"""Streaming retime: frame counts, timing and memory for any native/output ratio."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from deforum_wan.retime import Retimer


def _run(n_native, n_out, mode):
    r = Retimer(n_native, n_out, mode)
    out, held = [], 0
    for i in range(n_native):
        frame = np.full((2, 2, 3), float(i), np.float32)  # value = native index
        out += list(r.push(i, frame))
        held = max(held, len(r.frames))
    return r, out, held


@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["nearest", "blend"]))
def test_exact_output_count_in_order_and_bounded_memory(n_native, n_out, mode):
    r, out, held = _run(n_native, n_out, mode)
    assert [j for j, _ in out] == list(range(n_out)) and r.done
    assert held <= 2  # never more than the two frames an output blends
    values = [f[0, 0, 0] for _, f in out]
    assert all(a <= b + 1e-6 for a, b in zip(values, values[1:]))  # time never runs backwards
    assert values[0] == 0


def test_blend_positions():
    # 21 native frames (16 fps) onto 16 output frames (12 fps): p = j * 21/16.
    _, out, _ = _run(21, 16, "blend")
    for j, f in out:
        p = j * 21 / 16
        assert f[0, 0, 0] == pytest.approx(min(p, 20))


def test_nearest_is_a_native_frame():
    _, out, _ = _run(16, 60, "nearest")
    assert all(float(f[0, 0, 0]).is_integer() for _, f in out)
    assert [f[0, 0, 0] for _, f in out][:5] == [0, 0, 1, 1, 1]


def test_identity_when_counts_match():
    _, out, _ = _run(9, 9, "blend")
    assert [f[0, 0, 0] for _, f in out] == list(range(9))


def test_out_of_order_push_is_refused():
    r = Retimer(5, 5, "blend")
    list(r.push(0, np.zeros((1, 1, 3))))
    with pytest.raises(ValueError):
        list(r.push(2, np.zeros((1, 1, 3))))
