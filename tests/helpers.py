"""What tests share (import it as ``helpers``; tests/ is on pytest's pythonpath): the project's
paths, the real Deforum settings files, small tiny-model settings for jobs, waits, a served app."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "example_settings.txt"
FIXTURES = ROOT / "tests" / "fixtures"


def _deforum_settings_dir() -> Path | None:
    # Real Deforum files live beside the project (never committed; see docs/development.md).
    env = os.environ.get("DEFORUM_SETTINGS_DIR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "deforum-settings"]:
        if candidate.is_dir():
            return candidate
    return None


DEFORUM_DIR = _deforum_settings_dir()


def real_settings_files() -> list[Path]:
    if DEFORUM_DIR is None:
        return []
    return sorted(p for p in DEFORUM_DIR.iterdir() if p.suffix in (".txt", ".json"))


# Two prompts -> a T2V window then an I2V window: 12 frames, a few seconds on the CPU.
QUICK = {"max_frames": 12, "prompts": {"0": "a lighthouse at dawn", "6": "the lighthouse at night"},
         "cfg_scale_schedule": "0: (5)"}
# One prompt, one full-length T2V window (keep-warm reuses its pipeline).
SINGLE = {"max_frames": 12, "prompts": {"0": "a lighthouse at dawn"}, "wan_clip_duration": 0,
          "cfg_scale_schedule": "0: (5)"}
# Many short windows: long enough to stop or kill in the middle.
LONG = {"max_frames": 24, "wan_clip_duration": 0.3, "steps": 4, "cfg_scale_schedule": "0: (5)",
        "prompts": {"0": "a lighthouse at dawn", "12": "the lighthouse at night"}}


def settings(overrides: dict, **more) -> dict:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data.update(overrides)
    data.update(more)
    return data


def worker_env() -> dict:
    # One torch thread per worker (2-core CI machine); never reach for the hub.
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def frames_on_disk(run_dir: str | Path, timestring: str) -> list[Path]:
    return sorted(Path(run_dir).glob(f"{timestring}_" + "[0-9]" * 9 + ".png"))


def manifest(run_dir: str | Path, timestring: str) -> dict:
    return json.loads((Path(run_dir) / f"{timestring}_manifest.json").read_text(encoding="utf-8"))


class Served:
    """An ASGI app on a real uvicorn at a free local port, for as long as the ``with`` lasts."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "uvicorn to start")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


# A value each kind of key refuses (tests of the key table, the settings reader and the API).
BAD = {"number": "wide", "positive": -1, "int": 2.5, "strict_flag": "maybe", "choice": "nope",
       "preset": "turbo", "loras": "x.safetensors", "distill": "x.bin", "model": "wan9-unknown"}


# --- Wan transformer names: diffusers' layout back to the original one (Wan's repo, ComfyUI) -----

# Whole names outside the blocks, then parts inside a block: the inverse of diffusers'
# convert_wan_transformer_to_diffusers (the tests run that converter on the result to prove it).
_TOP_TO_ORIGINAL = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"),
    ("scale_shift_table", "head.modulation"),
    ("proj_out.", "head.head."),
]
_BLOCK_TO_ORIGINAL = [
    ("attn1", "self_attn"), ("attn2", "cross_attn"), (".to_out.0.", ".o."), (".to_q.", ".q."), (".to_k.", ".k."),
    (".to_v.", ".v."), (".add_k_proj.", ".k_img."), (".add_v_proj.", ".v_img."), (".norm_added_k.", ".norm_k_img."),
    ("scale_shift_table", "modulation"), ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm__swap"), ("norm3", "norm2"), ("norm__swap", "norm3"),
    ("proj_in", "before_proj"), ("proj_out", "after_proj"),
]


def to_original_name(name: str) -> str:
    """A diffusers WanTransformer3DModel parameter name in Wan's original key layout."""
    if name.startswith(("blocks.", "vace_blocks.")):
        for old, new in _BLOCK_TO_ORIGINAL:
            name = name.replace(old, new)
        return name
    for old, new in _TOP_TO_ORIGINAL:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def write_safetensors_header(path: Path, tensors: dict[str, tuple[str, tuple]], data_bytes: int | None = None) -> Path:
    """A safetensors file of ``name -> (dtype, shape)`` with zeros for data (``data_bytes`` of
    them instead of what the header says: a file that lies)."""
    from deforum_wan.models.st_header import DTYPE_BYTES

    entries, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(entries).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        f.write(bytes(offset if data_bytes is None else data_bytes))
    return path


def quantize_q4_k(rows):
    """Rows (a float32 array whose last side is a multiple of 256) as ggml Q4_K blocks (144 bytes
    per 256 values): gguf-py dequantises K-quants but cannot make them. Per 32 values a 6-bit
    scale and min under the block's fp16 ``d`` and ``dmin``, packed as ggml's get_scale_min_k4 reads."""
    import numpy as np

    blocks = np.asarray(rows, dtype=np.float32).reshape(-1, 8, 32)
    low = np.minimum(blocks.min(axis=2), 0)  # ggml's mins are >= 0 and subtracted
    scale = (blocks.max(axis=2) - low) / 15
    d = (scale.max(axis=1) / 63).astype(np.float16)
    dmin = (-low.min(axis=1) / 63).astype(np.float16)
    dd = np.where(d == 0, 1, d.astype(np.float32))[:, None]
    dm = np.where(dmin == 0, 1, dmin.astype(np.float32))[:, None]
    sc = np.clip(np.round(scale / dd), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(-low / dm), 0, 63).astype(np.uint8)
    eff_scale = (d.astype(np.float32)[:, None] * sc)[:, :, None]
    eff_min = (dmin.astype(np.float32)[:, None] * mn)[:, :, None]
    q = np.clip(np.round((blocks + eff_min) / np.where(eff_scale == 0, 1, eff_scale)), 0, 15).astype(np.uint8)
    packed = np.zeros((len(blocks), 12), dtype=np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    q = q.reshape(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    out = np.concatenate([d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), packed, qs], axis=1)
    shape = np.asarray(rows).shape
    return out.reshape(*shape[:-1], shape[-1] // 256 * 144)


def write_gguf(path: Path, state: dict, pick, file_type: int | None = None) -> Path:
    """``state`` (name -> torch tensor) as a GGUF file the way ComfyUI-GGUF's converter writes
    one: architecture "wan", each tensor in the ggml type ``pick(name, array)`` names (F32, F16,
    Q8_0, Q4_0 by gguf-py, Q4_K here), ``general.file_type`` when given."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "wan")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if file_type is not None:
        writer.add_file_type(file_type)
    for name, tensor in state.items():
        array = tensor.detach().float().numpy()
        qtype = getattr(gguf.GGMLQuantizationType, pick(name, array))
        data = quantize_q4_k(array) if qtype == gguf.GGMLQuantizationType.Q4_K else \
            gguf.quants.quantize(array, qtype)
        writer.add_tensor(name, np.ascontiguousarray(data), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_gguf_header(path: Path, tensors: dict[str, tuple[int, tuple]], metadata: dict | None = None,
                      data_bytes: int | None = None) -> Path:
    """A GGUF v3 file of ``name -> (ggml type id, shape in torch order)`` written field by field,
    its data left sparse (``data_bytes`` of it instead of what the header says: a file that lies).
    Metadata values: int (uint32), str, or a list of ints (int32 array)."""
    import struct

    from deforum_wan.models.gguf_header import GGML_TYPES

    def text(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata or {}))
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            out += text(key) + struct.pack("<I", 8) + text(value)
        elif isinstance(value, list):
            out += text(key) + struct.pack("<IIQ", 9, 5, len(value)) + struct.pack(f"<{len(value)}i", *value)
        else:
            out += text(key) + struct.pack("<II", 4, value)
    offset = 0
    for name, (kind, shape) in tensors.items():
        _, block, size = GGML_TYPES[kind]
        out += text(name) + struct.pack(f"<I{len(shape)}QIQ", len(shape), *reversed(shape), kind, offset)
        n = size
        for d in shape:
            n *= d
        offset += -(-(n // block) // 32) * 32
    start = -(-len(out) // 32) * 32
    with open(path, "wb") as f:
        f.write(out)
        f.truncate(start + (offset if data_bytes is None else data_bytes))
    return path
