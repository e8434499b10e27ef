"""``bench --random-weights --formats`` on the CPU: the scaled random T2V-1.3B transformer (widened
to 256 for Q4_K's blocks) written as a bf16 folder, an fp8 file and GGUF Q8_0 and Q4_K, each loaded
and stepped in one run; and its section in the GPU script's combined report."""
from __future__ import annotations

import json

from deforum_wan.cli.bench.formats import FORMATS
from deforum_wan.cli.main import main


def test_each_format_is_loaded_and_stepped_side_by_side_and_reported(tmp_path, capsys):
    out = tmp_path / "formats.json"
    md = tmp_path / "formats.md"
    assert main(["bench", "--model", "wan2.1-t2v-1.3b", "--random-weights", "--random-size", "scaled", "--formats",
                 "--window", "--size", "64x64", "--frames", "5", "--steps", "1", "--threads", "1",
                 "--json-file", str(out), "--md", str(md)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text(encoding="utf-8"))["formats"]
    rows = result["rows"]
    assert list(rows) == list(FORMATS) and result["latent"] == [2, 8, 8] and result["steps"] == 1
    for fmt, row in rows.items():
        for key in ("load_s", "peak_rss_load_mb", "step_s", "file_mb", "weights_mb"):
            assert row[key] > 0, (fmt, key, row)
        assert row["peak_vram_mb"] is None  # no CUDA here
        assert fmt in text and f"| {fmt} |" in md.read_text(encoding="utf-8")
    # each held as its file has it: GGUF quantised in memory, the fp8 file in float8, the folder in neither
    assert rows["GGUF Q8_0"]["quantised"] == ["Q8_0"] and rows["GGUF Q4_K"]["quantised"] == ["Q4_K"]
    assert rows["fp8 file"]["float8"] and not rows["fp8 file"]["quantised"]
    assert not rows["bf16 folder"]["float8"] and not rows["bf16 folder"]["quantised"]
    assert rows["GGUF Q4_K"]["weights_mb"] < rows["GGUF Q8_0"]["weights_mb"] < rows["bf16 folder"]["weights_mb"]
    assert rows["GGUF Q4_K"]["file_mb"] < rows["GGUF Q8_0"]["file_mb"] < rows["bf16 folder"]["file_mb"]
    # the GPU script's report gains the section from its formats step
    report = tmp_path / "report"
    report.mkdir()
    out.rename(report / "formats.json")
    assert main(["bench", "report", str(report)]) == 0
    (combined,) = report.glob("*-cpu-random.md")
    section = combined.read_text(encoding="utf-8").split("## T2V-1.3B: weight formats", 1)[1]
    assert all(f"| {fmt} |" in section for fmt in FORMATS)
