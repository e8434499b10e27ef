"""GGUF headers: read without the data, shapes in torch order, the quantisation users name,
told by the same detector as safetensors; bad files refused in one line before anything is
allocated for what they claim."""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import ROOT, to_original_name, write_gguf, write_gguf_header

from deforum_wan.errors import WanError
from deforum_wan.models.detect import detect
from deforum_wan.models.gguf_header import FILE_TYPES, GGML_TYPES, read_gguf_header
from deforum_wan.models.headers import read_header

Q4_K, Q8_0, F16, F32 = 12, 8, 1, 0


def test_the_type_tables_are_gguf_pys():
    import gguf

    for kind, (name, block, size) in GGML_TYPES.items():
        qtype = gguf.GGMLQuantizationType(kind)
        assert (qtype.name, *gguf.GGML_QUANT_SIZES[qtype]) == (name, block, size)
    for value, label in FILE_TYPES.items():
        assert gguf.LlamaFileType(value).name in (f"MOSTLY_{label}", f"ALL_{label}")


def test_a_gguf_py_file_reads_as_torch_shapes_and_detects(tiny_models_dir, tmp_path):
    import gguf
    from diffusers import WanTransformer3DModel

    state = {to_original_name(k): v for k, v in
             WanTransformer3DModel.from_pretrained(tiny_models_dir / "tiny-random" / "transformer").state_dict().items()}
    pick = lambda name, a: "Q8_0" if a.ndim == 2 and a.shape[-1] % 32 == 0 else "F16" if a.ndim == 2 else "F32"  # noqa: E731
    path = write_gguf(tmp_path / "t.gguf", state, pick, file_type=gguf.LlamaFileType.MOSTLY_Q8_0)
    header = read_header(path)
    assert {k: t.shape for k, t in header.tensors.items()} == {k: tuple(v.shape) for k, v in state.items()}
    assert header.tensors["blocks.0.ffn.2.weight"].dtype == "Q8_0"  # its rows are 32 long
    assert header.tensors["blocks.0.self_attn.q.weight"].dtype == "F16"
    assert header.tensors["patch_embedding.weight"].dtype == "F32" and len(header.shape("patch_embedding.weight")) == 5
    reader = gguf.GGUFReader(path)  # gguf-py lists ggml's order: ours is its reverse
    assert {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors} == \
        {k: t.shape for k, t in header.tensors.items()}
    assert header.metadata["general.architecture"] == "wan" and header.quant == "Q8_0"
    found = detect(header)
    assert (found.kind, found.layout, found.variant, found.quant) == ("transformer", "original", "t2v", "Q8_0")
    assert found.config["ffn_dim"] == 32 and found.config["in_channels"] == 4


def _published(model_id: str, kind: int):
    from test_detect import _meta_shapes

    tensors, cfg = _meta_shapes(model_id)
    # ComfyUI-GGUF: vectors and the 5-D patch embedding F32, matrices quantised
    return {to_original_name(k): (kind if len(t.shape) == 2 else F32, t.shape) for k, t in tensors.items()}, cfg


@pytest.mark.parametrize("model_id,variant", [("wan2.1-t2v-14b", "t2v"), ("wan2.2-i2v-a14b", "i2v")])
def test_published_quantised_files_detect_and_name_their_quantisation(model_id, variant, tmp_path):
    tensors, cfg = _published(model_id, Q4_K)
    path = write_gguf_header(tmp_path / "x.gguf", tensors, {"general.architecture": "wan", "general.file_type": 15})
    found = detect(read_header(path))
    assert (found.kind, found.variant, found.size, found.quant) == ("transformer", variant, "14B", "Q4_K_M")
    assert found.config["num_layers"] == cfg["num_layers"] and found.config["in_channels"] == cfg["in_channels"]
    # a converter that wrote a ggml type id as file_type (12: Q4_K, which reads as Q3_K_L) is not believed
    tensors, _ = _published(model_id, Q8_0)
    path = write_gguf_header(tmp_path / "y.gguf", tensors, {"general.file_type": 13})
    assert read_header(path).quant == "Q8_0"


def test_orig_shape_and_a_gguf_umt5(tmp_path):
    path = write_gguf_header(tmp_path / "flat.gguf", {"w": (F16, (6, 4))}, {"comfy.gguf.orig_shape.w": [2, 3, 4]})
    assert read_gguf_header(path).shape("w") == (2, 3, 4)
    names = {"token_embd.weight": (Q8_0, (256384, 4096))}
    for i in range(24):
        names.update({f"enc.blk.{i}.attn_q.weight": (Q8_0, (4096, 4096)),
                      f"enc.blk.{i}.attn_rel_b.weight": (F32, (32, 64))})
    found = detect(read_header(write_gguf_header(tmp_path / "umt5-xxl-encoder-Q8_0.gguf", names,
                                                 {"general.file_type": 7})))
    assert (found.kind, found.size, found.quant, found.config["d_model"]) == ("text_encoder", "UMT5-XXL", "Q8_0", 4096)


def _bad_files(tmp_path):
    good = write_gguf_header(tmp_path / "good.gguf", {"a.weight": (F16, (64, 64))})
    raw = good.read_bytes()
    yield "truncated", raw[: len(raw) - 100]
    yield "cut in the header", raw[:40]
    yield "not gguf", b"GGML" + raw[4:]
    yield "big-endian", raw[:4] + (3).to_bytes(4, "big") + raw[8:]
    lying = write_gguf_header(tmp_path / "l.gguf", {"a.weight": (F16, (64, 64))}, data_bytes=100)
    yield "lies about its size", lying.read_bytes()
    huge = write_gguf_header(tmp_path / "h.gguf", {"a.weight": (F32, (1 << 20, 1 << 20))}, data_bytes=64)
    yield "claims a 4 TiB tensor", huge.read_bytes()
    absurd = write_gguf_header(tmp_path / "d.gguf", {"a.weight": (F32, (1 << 40, 1))}, data_bytes=64)
    yield "absurd dimensions", absurd.read_bytes()
    yield "an array of 2**60 items", b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + \
        (1).to_bytes(8, "little") + (1).to_bytes(8, "little") + b"k" + (9).to_bytes(4, "little") + \
        (4).to_bytes(4, "little") + (1 << 60).to_bytes(8, "little") + bytes(64)
    yield "a key of 2**62 bytes", b"GGUF" + (3).to_bytes(4, "little") + bytes(8) + (1).to_bytes(8, "little") + \
        (1 << 62).to_bytes(8, "little") + bytes(64)
    yield "a billion tensors", b"GGUF" + (3).to_bytes(4, "little") + (10 ** 9).to_bytes(8, "little") + bytes(72)


def test_bad_files_are_one_line_each(tmp_path):
    for what, data in list(_bad_files(tmp_path)):
        path = tmp_path / "bad.gguf"
        path.write_bytes(data)
        with pytest.raises(WanError) as err:
            read_header(path)
        assert "bad.gguf" in str(err.value) and "\n" not in str(err.value), what


def test_a_header_claiming_huge_tensors_costs_no_memory(tmp_path):
    # A real-sized header (a 14B Q4_K_M's 1300 tensors) whose data is missing, read in a fresh
    # process: its peak memory is the interpreter's, not the 8 GB the header claims.
    tensors, _ = _published("wan2.1-t2v-14b", Q4_K)
    path = write_gguf_header(tmp_path / "claims.gguf", tensors, data_bytes=4096)
    code = ("import resource, sys; from deforum_wan.models.headers import read_header\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try: read_header(sys.argv[1])\nexcept Exception as e: print(type(e).__name__, e, file=sys.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "scripts")})
    assert "WanError" in run.stderr and "claims" in run.stderr
    assert int(run.stdout) < 16 * 1024  # KiB of growth while reading
