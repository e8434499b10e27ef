"""The speed and memory targets a bench result is judged against (reported as met or not,
never asserted here: tests/gpu/test_gpu_presets.py asserts them)."""
from __future__ import annotations

# The configuration the preset targets are stated for: Wan2.1 T2V-1.3B, one 832x480x81 window, on CUDA.
TARGET_CASE = {"model": "wan2.1-t2v-1.3b", "size": "832x480", "frames": 81}
TARGETS = {
    "loop_over_bare_max": {"cuda": 1.03, "cpu": 1.10},  # our loop over bare diffusers calls
    "rss_long_over_short_max": 1.05,  # RSS flat over window count (4x the frames)
    "import_s_max": 0.2,  # the pure front, in a fresh interpreter, without torch
    "fast_speedup_min": 2.5,  # fast's warm time at least 2.5x shorter than quality's
    "fast_lpips_max": 0.10,  # fast's frames against quality's
    # Only where LPIPS cannot be computed (no lpips package or weights): a stand-in, not
    # the stated bound. TeaCache at 2.6x on Wan 2.1 measured SSIM 0.61 / LPIPS 0.34.
    "fast_ssim_min": 0.80,
    "distill_speedup_min": 8.0,  # fast with a 4-step distilled LoRA
    "low_vram_peak_gib_max": 8.0,  # low-vram's peak reserved VRAM (loading included)
    "a14b_480p_peak_gib_max": 24.0,  # any 14B model at 832x480, its leanest preset
    # The Wan2.1 README's table: T2V-1.3B 480p on one RTX 4090, 261.4 s at 8.19 GB.
    "wan21_table_s_max": 261.4,
}
WAN21_TABLE_GPU = "RTX 4090"


def _check(value, bound, at_least: bool, applies: bool = True) -> dict:
    met = None if value is None else (value >= bound if at_least else value <= bound)
    return {"value": value, ("min" if at_least else "max"): bound, "met": met, "applies": bool(applies)}


def judge(result: dict) -> dict:
    """The targets against this run. Each has ``value``, ``min`` or ``max``, ``met``
    (None: not measured) and ``applies`` (False off the configuration it is stated for)."""
    cuda = result["device"] == "cuda"
    case = (cuda and result["model"] == TARGET_CASE["model"] and result["size"] == TARGET_CASE["size"]
            and result["frames"] == TARGET_CASE["frames"])
    rows = result.get("presets", {})
    quality, fast, low = rows.get("quality"), rows.get("fast"), rows.get("low-vram")

    out: dict = {"case": TARGET_CASE, "applies": case}
    if "loop_over_bare" in result:
        out["loop_over_bare"] = _check(result["loop_over_bare"],
                                       TARGETS["loop_over_bare_max"]["cuda" if cuda else "cpu"], False)
        out["rss_long_over_short"] = _check(result.get("rss_long_over_short"), TARGETS["rss_long_over_short_max"],
                                            False)
    imp = result.get("import")
    if imp:
        out["import_s"] = _check(imp["seconds"], TARGETS["import_s_max"], False)
        if imp["imports_torch"]:  # quick or not, importing torch misses the point
            out["import_s"]["met"] = False
    if fast and quality:
        distilled = fast.get("steps_run") is not None and fast["steps_run"] < (quality.get("steps_run") or 0)
        if distilled:
            out["distill_speedup"] = _check(fast.get("speedup_vs_quality"), TARGETS["distill_speedup_min"], True,
                                            case)
        else:
            out["fast_speedup"] = _check(fast.get("speedup_vs_quality"), TARGETS["fast_speedup_min"], True, case)
        out["fast_lpips"] = _check(fast.get("lpips"), TARGETS["fast_lpips_max"], False, case)
        if fast.get("lpips") is None:
            out["fast_ssim"] = _check(fast.get("ssim"), TARGETS["fast_ssim_min"], True, case)
    if low and low.get("peak_vram_reserved_mb") is not None:
        out["low_vram_peak_gib"] = _check(round(low["peak_vram_reserved_mb"] / 1024, 2),
                                          TARGETS["low_vram_peak_gib_max"], False, case)
    if cuda and "14b" in result["model"] and result["size"] == "832x480":
        peaks = [r["peak_vram_reserved_mb"] for r in rows.values() if r.get("peak_vram_reserved_mb") is not None]
        if peaks:
            out["a14b_480p_peak_gib"] = _check(round(min(peaks) / 1024, 2), TARGETS["a14b_480p_peak_gib_max"], False)
    if quality and case and result["steps"] == 50:
        # The line to beat on its own GPU class; elsewhere it is reported, not judged.
        out["wan21_table_s"] = _check(quality["time_s"], TARGETS["wan21_table_s_max"], False,
                                      WAN21_TABLE_GPU.lower() in (result.get("gpu") or "").lower())
    return out
