"""Streaming retime: frame counts, timing and memory for any native/output ratio."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deforum_wan.render.retime import Retimer


def _run(n_native, n_out, mode):
    r = Retimer(n_native, n_out, mode)
    out, held = [], 0
    for i in range(n_native):
        frame = np.full((2, 2, 3), float(i), np.float32)  # value = native index
        out += list(r.push(i, frame))
        held = max(held, len(r.frames))
    return r, out, held


@given(st.integers(1, 300), st.integers(1, 300), st.sampled_from(["nearest", "blend", "flow"]))
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


def _blob(x: float, h=48, w=64) -> np.ndarray:
    """A bright blob centred at column x on a still, smooth background, float32 RGB."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    background = (0.2 + 0.1 * np.sin(yy / 7.0) * np.cos(xx / 9.0))[..., None]
    blob = np.exp(-(((xx - x) / 6.0) ** 2 + ((yy - h / 2) / 6.0) ** 2))[..., None]
    return np.clip(background + blob * np.array([0.7, 0.5, 0.3], np.float32), 0, 1).astype(np.float32)


def test_flow_moves_the_content_where_blend_ghosts_it():
    """Native frames 0 and 1 with a blob 10 px apart; the output frame halfway between them
    should show one blob at the midpoint, not two half-bright ones."""
    r = Retimer(2, 4, "flow")  # outputs at p = 0, 0.5, 1.0 (clamped), 1.5 (clamped)
    out = dict(list(r.push(0, _blob(20))) + list(r.push(1, _blob(30))))
    truth = _blob(25)
    blend = 0.5 * _blob(20) + 0.5 * _blob(30)
    flow_err = float(np.abs(out[1] - truth).mean())
    blend_err = float(np.abs(blend - truth).mean())
    assert flow_err < 0.5 * blend_err, (flow_err, blend_err)
    np.testing.assert_array_equal(out[0], _blob(20))  # on a native frame: that frame
    assert out[1].dtype == np.float32 and out[1].shape == truth.shape


def test_flow_equals_blend_when_nothing_moves():
    r_flow, out_flow, _ = _run(21, 16, "flow")
    _, out_blend, _ = _run(21, 16, "blend")
    for (_, a), (_, b) in zip(out_flow, out_blend, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert r_flow.done


def test_flow_on_frames_too_small_to_track_blends():
    """OpenCV's DIS cannot take inputs under 16 pixels a side (5.0 even crashes): blend there."""
    a, b = np.zeros((8, 64, 3), np.float32), np.ones((8, 64, 3), np.float32)
    r = Retimer(2, 4, "flow")
    out = dict(list(r.push(0, a)) + list(r.push(1, b)))
    np.testing.assert_allclose(out[1], 0.5 * a + 0.5 * b, atol=1e-6)

