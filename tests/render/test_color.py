"""color.py: Deforum's colour coherence and the overlap crossfade."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deforum_wan.render.color import ColorMatcher, crossfade, crossfade_weights, match_color, match_histograms


def deforum_maintain_colors(prev_img, color_match_sample, mode):
    """Deforum's maintain_colors (deforum_helpers/colors.py), verbatim logic, on skimage."""
    from skimage.exposure import match_histograms as sk_match

    kw = {"channel_axis": -1}
    if mode == "RGB":
        return sk_match(prev_img, color_match_sample, **kw)
    elif mode == "HSV":
        a = cv2.cvtColor(prev_img, cv2.COLOR_RGB2HSV)
        b = cv2.cvtColor(color_match_sample, cv2.COLOR_RGB2HSV)
        return cv2.cvtColor(sk_match(a, b, **kw), cv2.COLOR_HSV2RGB)
    else:
        a = cv2.cvtColor(prev_img, cv2.COLOR_RGB2LAB)
        b = cv2.cvtColor(color_match_sample, cv2.COLOR_RGB2LAB)
        return cv2.cvtColor(sk_match(a, b, **kw), cv2.COLOR_LAB2RGB)


def textured(h=48, w=64, seed=0):
    """A smooth, natural-ish RGB image (blurred noise plus gradients)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3).astype(np.float32)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = (noise - noise.mean()) * 3 + 128 + np.stack([x, y, x + y], -1) * 0.8 - 40
    return np.clip(img, 0, 255).astype(np.uint8)


def drifted(base, step):
    """What chained I2V does to colour: each step shifts, tints and flattens a little."""
    gain = np.array([1 - 0.03 * step, 1 - 0.01 * step, 1 + 0.02 * step], np.float32)
    offset = np.array([4.0, -3.0, 2.0], np.float32) * step
    mean = base.reshape(-1, 3).mean(0)
    return np.clip((base - mean) * gain * (1 - 0.04 * step) + mean + offset, 0, 255).astype(np.uint8)


def lab_mean_error(a, b):
    la = cv2.cvtColor(a, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    lb = cv2.cvtColor(b, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    return np.abs(la.mean(0) - lb.mean(0)).max()


@pytest.mark.parametrize("seed", range(5))
def test_match_histograms_equals_skimage(seed):
    sk = pytest.importorskip("skimage.exposure")
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) // (seed + 1)  # sparse histograms too
    ref = rng.integers(0, 200, (17, 23, 3), dtype=np.uint8)  # sizes may differ
    ours = match_histograms(img, ref)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, sk.match_histograms(img, ref, channel_axis=-1))


@pytest.mark.parametrize("mode", ["LAB", "HSV", "RGB"])
def test_match_color_equals_deforum(mode):
    pytest.importorskip("skimage")
    base = textured()
    for step in (1, 4):
        frame = drifted(base, step)
        np.testing.assert_array_equal(match_color(frame, base, mode), deforum_maintain_colors(frame, base, mode))


@pytest.mark.parametrize("mode", ["LAB", "HSV", "RGB"])
def test_match_color_undoes_drift(mode):
    base = textured()
    for step in range(1, 9):
        frame = drifted(base, step)
        before = lab_mean_error(frame, base)
        out = match_color(frame, base, mode)
        assert out.dtype == np.uint8 and out.shape == base.shape
        assert before > 2.0  # the drift is real
        assert lab_mean_error(out, base) < 0.25 * before, (mode, step)


def test_none_returns_frame_unchanged():
    frame = drifted(textured(), 3)
    assert match_color(frame, textured(), "None") is frame


@pytest.mark.parametrize("mode", ["RGB", "HSV", "LAB"])
def test_color_matcher_reused_over_frames_equals_deforum(mode):
    """The render builds one matcher from frame 0 and applies it to every later frame."""
    anchor = textured(seed=7)
    matcher = ColorMatcher(anchor, mode)
    for step in range(1, 5):
        frame = drifted(textured(seed=step), step)
        np.testing.assert_array_equal(matcher(frame), deforum_maintain_colors(frame, anchor, mode))
    with pytest.raises(ValueError, match="uint8"):
        matcher(anchor.astype(np.float32))


def test_match_color_rejects_bad_input():
    img = textured()
    with pytest.raises(ValueError, match="mode"):
        match_color(img, img, "Video Input")
    with pytest.raises(ValueError, match="uint8"):
        match_color(img.astype(np.float32), img, "LAB")


def test_crossfade_endpoints_and_weights():
    a = np.zeros((4, 2, 3, 3), np.float32)
    b = np.ones((4, 2, 3, 3), np.float32)
    out = crossfade(a, b)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.2, 0.4, 0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(crossfade_weights(1), [0.5])
    assert crossfade(a[:0], b[:0]).shape == (0, 2, 3, 3)
    same = np.full((3, 2, 2, 3), 0.3, np.float32)
    np.testing.assert_array_equal(crossfade(same, same), same)  # equal windows come back exactly
    with pytest.raises(ValueError):
        crossfade(a, b[:3])


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 200))
def test_crossfade_weights_are_even_steps_inside_0_1(n):
    w = crossfade_weights(n).astype(np.float64)
    assert w.shape == (n,) and 0 < w[0] and w[-1] < 1
    steps = np.diff(np.concatenate([[0.0], w, [1.0]]))
    np.testing.assert_allclose(steps, 1 / (n + 1), rtol=0, atol=1e-6)  # evenly from a (0) to b (1)


frame = hnp.arrays(np.float32, (2, 3, 3), elements=st.floats(-1, 1, width=32))


@settings(max_examples=100, deadline=None)
@given(a=frame, b=frame, n=st.integers(1, 40))
def test_crossfade_moves_monotonically_from_a_to_b(a, b, n):
    # the same pair of frames repeated: the blend must walk from a to b, never back
    out = crossfade(np.repeat(a[None], n, 0), np.repeat(b[None], n, 0)).astype(np.float64)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    lo, hi = np.minimum(a64, b64), np.maximum(a64, b64)
    assert np.all(out >= lo - 1e-6) and np.all(out <= hi + 1e-6)
    dist_to_b = np.abs(out - b64)
    assert np.all(np.diff(dist_to_b, axis=0) <= 0)
    assert np.all(dist_to_b[0] <= np.abs(a64 - b64))
