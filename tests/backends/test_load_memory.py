"""Peak memory while loading a single-file transformer: a Wan 1.3B-wide transformer (about 400 MB
in bf16 with four blocks, in fp8 e4m3fn with eight) written tensor by tensor in the original key
layout, loaded in a fresh process that reports its peak RSS before and after against the bytes the model holds. Linux only:
the peak is reset after the imports through /proc."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import to_original_name

RSS_BOUND = 1.25  # peak RSS growth while loading / the loaded model's bytes
# quant -> blocks: about 400 MB each (the fixed cost of loading, some 70 MB, stays small beside it)
LAYERS = {"bf16": 4, "fp8": 8, "fp8 scaled": 8}

MEASURE = """
import json, sys
from pathlib import Path
import torch
import diffusers
import diffusers.loaders.single_file_model  # imported before the measure: not the weights' memory
from safetensors.torch import load_file
from deforum_wan.backends.single_file import load_transformer
from deforum_wan.models.detect import detect
from deforum_wan.models.headers import read_header

path = Path(sys.argv[1])
found = detect(read_header(path))


def peak():
    # VmHWM, not ru_maxrss: getrusage also counts the peak of the process this one was forked from.
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


# The imports peaked above what is held now: the peak is reset to the current RSS (Linux).
Path("/proc/self/clear_refs").write_text("5")
before = peak()
model = load_transformer(path, found, torch.bfloat16, None)
loaded = peak()
# Tensors still mapped from the file are in RSS only once read: read every one, as a render does.
with torch.no_grad():
    for t in list(model.parameters()) + list(model.buffers()):
        t.reshape(-1).view(torch.uint8).max()  # every byte, no copy of the tensor
after = peak()
held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
fp8 = sum(t.numel() for t in model.parameters() if t.dtype == torch.float8_e4m3fn)
print(json.dumps({"before": before, "loaded": loaded, "after": after, "model_bytes": held, "float8_bytes": fp8}))
"""


def _write_transformer(path: Path, quant: str) -> int:
    """The 1.3B architecture with LAYERS blocks, built on the meta device and written one tensor
    at a time (no whole state dict in this process); fp8: each matrix in float8 e4m3fn, as
    ComfyUI's plain fp8 files have them; fp8 scaled: each with a float32 scale beside it (ComfyUI's
scaled fp8, kept in float8). The bytes of its data."""
    import torch
    from diffusers import WanTransformer3DModel

    from deforum_wan.models.random_full import published_config

    config = {k: v for k, v in published_config("transformer-t2v-1.3b").items() if not k.startswith("_")}
    with torch.device("meta"):
        model = WanTransformer3DModel(**{**config, "num_layers": LAYERS[quant]})
    shapes = {to_original_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    dtypes = {name: torch.float8_e4m3fn if quant.startswith("fp8") and name.endswith(".weight") and len(shape) == 2
              else torch.bfloat16 for name, shape in shapes.items()}
    if quant == "fp8 scaled":
        for name in [n for n, d in dtypes.items() if d == torch.float8_e4m3fn]:
            shapes[name[:-len(".weight")] + ".scale_weight"], dtypes[name[:-len(".weight")] + ".scale_weight"] = \
                (), torch.float32
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = dtypes[name].itemsize * int(torch.Size(shape).numel())
        label = {torch.float8_e4m3fn: "F8_E4M3", torch.float32: "F32"}.get(dtypes[name], "BF16")
        header[name] = {"dtype": label, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    generator = torch.Generator().manual_seed(0)
    with path.open("wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name, shape in shapes.items():
            tensor = (torch.randn(shape, generator=generator) * 0.02).to(dtypes[name])
            f.write(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return offset


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resets the peak RSS through Linux's /proc")
@pytest.mark.parametrize("quant", sorted(LAYERS))
def test_loading_a_file_peaks_within_a_quarter_over_the_model(tmp_path, quant):
    path = tmp_path / f"wan_wide_{quant.replace(' ', '_')}.safetensors"
    data = _write_transformer(path, quant)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2] / "scripts"),
                                                                     os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # all of it loaded (norms kept in float32, fp8's embeddings in bf16 add to it)
    assert measured["model_bytes"] >= data
    if quant.startswith("fp8"):  # its matrices stayed float8: most of the bytes
        assert measured["float8_bytes"] > 0.8 * measured["model_bytes"], measured
    ratio = (measured["after"] - measured["before"]) / measured["model_bytes"]
    assert ratio >= 0.9  # the weights were all read: the measure saw them
    print(f"{quant}: peak RSS growth while loading {ratio:.2f}x the model's {measured['model_bytes'] / 2**20:.0f} MiB")
    assert ratio <= RSS_BOUND, f"peak RSS grew {ratio:.2f}x the model's bytes while loading"
