"""drift.py: the measures against references written here, VDE against its formula, the chart."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from deforum_wan.render.drift import chart, frame_stats, lab, laplacian_energy, mean_abs_diff, measure, vde


def textured(h=40, w=56, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 3, y * 4, (x + y) * 2], -1) + rng.integers(0, 60, (h, w, 3))
    return np.clip(base + 40, 0, 255).astype(np.uint8)


def test_lab_and_its_statistics_match_scikit_image():
    skcolor = pytest.importorskip("skimage.color")
    frame = textured()
    ref = skcolor.rgb2lab(frame.astype(np.float64) / 255.0)
    np.testing.assert_allclose(lab(frame), ref, atol=0.4)  # OpenCV interpolates its sRGB curve
    px = ref.reshape(-1, 3)
    stats = frame_stats(frame)
    for i, k in enumerate("Lab"):
        assert stats[k] == pytest.approx(px[:, i].mean(), abs=0.15)
        assert stats[f"{k}_std"] == pytest.approx(px[:, i].std(), abs=0.15)
    assert stats["chroma"] == pytest.approx(np.hypot(px[:, 1], px[:, 2]).mean(), abs=0.15)
    # HSV saturation: (max - min) / max per pixel
    f = frame.astype(np.float64)
    hi, lo = f.max(-1), f.min(-1)
    sat = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1), 0)
    assert stats["saturation"] == pytest.approx(sat.mean(), abs=1 / 255)


def test_laplacian_energy_is_the_variance_of_the_four_neighbour_laplacian():
    frame = textured(seed=3)
    grey = np.rint(frame.astype(np.float64) @ [0.299, 0.587, 0.114])  # ITU-R 601 luma, as OpenCV's grey
    p = np.pad(grey, 1, mode="reflect")  # OpenCV's default border (reflect-101)
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    assert laplacian_energy(frame) == pytest.approx(lap.var(), rel=0.01)
    blurred = np.asarray(Image.fromarray(frame).resize((28, 20)).resize((56, 40), Image.BILINEAR))
    assert laplacian_energy(blurred) < 0.5 * laplacian_energy(frame)


def test_vde_is_the_lv_bench_formula():
    values = [2.0, 2.2, 1.8, 3.0]
    n = len(values)
    assert vde(values) == pytest.approx(sum((n - i + 1) * abs(values[i - 1] - 2.0) / 2.0 for i in range(2, n + 1)))
    assert vde(values) == pytest.approx(3 * 0.1 + 2 * 0.1 + 1 * 0.5)
    assert vde([5.0]) == 0.0 and vde([5.0, 5.0, 5.0]) == 0.0
    assert vde([0.0, 1.0]) is None and vde([]) is None


def _tinted(frame: np.ndarray, k: float) -> np.ndarray:
    """More red and more contrast with ``k``."""
    f = frame.astype(np.float32)
    f = (f - f.mean()) * (1 + 0.15 * k) + f.mean() + np.array([12.0, -4.0, -8.0]) * k
    return np.clip(f, 0, 255).astype(np.uint8)


def test_a_drifting_sequence_reports_a_growing_shift_and_vde_per_shot():
    base = textured()
    frames, windows = [], []
    for shot, steps in ((0, 4), (1, 3)):  # a cut after the fourth window starts a second shot
        for k in range(steps):
            start = len(frames)
            frames += [_tinted(base, k + 0.02 * j) for j in range(5)]
            windows.append((shot, start, len(frames), start == 0 or k == 0))
    result = measure(frames, windows)
    chroma = [w["chroma"] for w in result.windows]
    shots = [w["shot"] for w in result.windows]
    assert shots == [0] * 4 + [1] * 3
    first = [w for w in result.windows if w["shot"] == 0]
    assert [w["shift"]["chroma"] for w in first][0] == 0
    assert all(b["shift"]["chroma"] > a["shift"]["chroma"] > -1 for a, b in zip(first, first[1:]))
    assert result.windows[4]["shift"]["chroma"] == 0  # the second shot measures against its own first window
    # the shot's VDE is the formula over the windows' chroma
    assert result.shots[0]["vde_colour"] == pytest.approx(vde(chroma[:4]), abs=1e-3)
    assert result.shots[1]["vde_colour"] == pytest.approx(vde(chroma[4:]), abs=1e-3)
    assert result.shots[0]["windows"] == 4
    # a seam inside a shot is a jump; the cut has none
    assert result.windows[1]["seam"] == pytest.approx(mean_abs_diff(frames[4], frames[5]), abs=1e-3)
    assert result.windows[4]["seam"] is None and result.windows[0]["seam"] is None
    assert result.to_dict()["seam_ratio"] > 1  # the tint jumps at seams, barely moves inside
    assert "drift: window 3" in result.describe() and "VDE colour" in result.describe()


def test_a_still_sequence_has_no_drift():
    base = textured()
    result = measure([base] * 12, [(0, 0, 4, True), (0, 4, 8, False), (0, 8, 12, False)])
    assert all(w["shift"]["lab_mean"] == 0 and w["shift"]["sharpness"] == 0 for w in result.windows)
    assert result.shots[0]["vde_colour"] == 0 and result.shots[0]["vde_clarity"] == 0


def test_the_chart_is_a_png_with_one_point_per_window(tmp_path):
    base = textured()
    frames = [_tinted(base, k // 4) for k in range(16)]
    result = measure(frames, [(0, 4 * i, 4 * i + 4, i == 0) for i in range(4)])
    path = chart(result, tmp_path / "d.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (220, 480, 3)
    red = (img[..., 0] > 200) & (img[..., 1] < 90) & (img[..., 2] < 90)  # the chroma series
    assert red[:20].any()  # its legend
    red[:20] = False
    assert red.any()
    # the chroma line climbs: its right end sits higher (a smaller y) than its left
    cols = np.nonzero(red.any(0))[0]
    left = np.nonzero(red[:, cols[cols > 40][0]])[0].mean()
    right = np.nonzero(red[:, cols[-1]])[0].mean()
    assert right < left


def test_bench_drift_renders_one_still_shot_per_color_match_setting(tiny_models_dir, tmp_path, capsys):
    from deforum_wan.cli.main import build_parser

    md, out = tmp_path / "drift.md", tmp_path / "drift.json"
    args = build_parser().parse_args(
        ["bench", "--drift", "--windows", "3", "--svi", "shot", "--size", "32x32", "--steps", "2", "--threads", "1",
         "--models-dir", str(tiny_models_dir), "--md", str(md), "--json-file", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    r = data["drift"]
    assert list(r["rows"]) == ["off", "deforum", "lab", "svi shot"] and data["windows"] == r["windows"] == 3
    for name, row in r["rows"].items():
        assert [w["window"] for w in row["windows"]] == [0, 1, 2], name
        assert row["windows"][0]["chroma"] == 0 and row["time_s"] > 0 and row["window_s"] > 0, name
        assert row["vde_colour"] is not None and row["vde_clarity"] is not None, name
        assert row["measure_ms"] > 0, name  # what measuring and correcting cost per window
        assert (row["correct_ms"] is None) == (name in ("off", "svi shot")), name
        assert name in ("off", "svi shot") or row["correct_ms"] > 0, name
    # the correction changes the frames: not every setting drifts alike
    assert len({json.dumps(row["windows"]) for row in r["rows"].values()}) > 1
    assert "say nothing about Wan" in r["note"] and "say nothing about Wan" in printed
    for name in ("off", "deforum", "lab", "svi shot"):
        assert f"| {name} |" in md.read_text() and f"\n    {name} " in printed
