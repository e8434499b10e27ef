"""What tests share (import it as ``helpers``; tests/ is on pytest's pythonpath): the project's
paths, the real Deforum settings files, small tiny-model settings for jobs, waits, a served app."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

# Wan transformers written as users' single files (the package's own writer, bench --formats uses it too)
from deforum_wan.models.wan_files import quantize_q4_k, to_original_name, write_gguf  # noqa: F401

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
       "preset": "turbo", "loras": "x.safetensors", "distill": "x.bin", "model": "wan9-unknown",
       "control": {"kind": "scribble", "video": "x.mp4"}}


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
