"""ffmpeg in a Python without imageio-ffmpeg (a WebUI's own): frames decoded through the raw
pipe equal imageio-ffmpeg's, the worker's binary is found by path, and a host with no ffmpeg
at all gets one line. The host is real: the WebUIs' gradio venvs (.ci/gradio-envs.sh) have no
imageio-ffmpeg, as A1111's and Forge's Pythons have none."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from counter_video import read_counter, write_counter_video
from helpers import ROOT

from deforum_wan.config.ffmpeg import binary_in, binary_of_python
from deforum_wan.config.source_video import SourceReader, probe, rawvideo_frames

HOST = ROOT / ".venv-gradio3" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
# This venv's packages: the layout of the worker's private folder (imageio_ffmpeg/binaries/...).
PACKAGES = Path(imageio_ffmpeg.__file__).resolve().parents[1]

# Run in the host: the probe and a few decoded frames, or the one line it says.
HOST_SCRIPT = """
import json, sys
from deforum_wan.config import ffmpeg
from deforum_wan.config.source_video import SourceReader, probe
from deforum_wan.errors import WanError
if len(sys.argv) > 2:
    ffmpeg.set_fallback(lambda: ffmpeg.binary_in(sys.argv[2]))
if len(sys.argv) > 3:  # a soundtrack, checked as the tab checks a job's
    from deforum_wan.render.video import check_soundtrack
    try:
        print(json.dumps({"soundtrack": str(check_soundtrack(sys.argv[3]))}))
    except WanError as exc:
        print(json.dumps({"error": str(exc)}))
    sys.exit()
try:
    info = probe(sys.argv[1], "job.txt")
    reader = SourceReader(sys.argv[1], 80, 16)
    frames = reader.frames([0, 7, 39])
    reader.close()
    print(json.dumps({"info": [info.width, info.height, info.fps, info.frames],
                      "frames": [f.tolist() for f in frames], "has_imageio": ffmpeg.has_imageio_ffmpeg()}))
except WanError as exc:
    print(json.dumps({"error": str(exc)}))
"""


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("ffmpeg") / "counter.mp4"
    write_counter_video(path, 40, fps=30)
    return path


@pytest.mark.parametrize("size", [(160, 32), (80, 16), (96, 20)])
def test_the_pipe_decodes_what_imageio_ffmpeg_reads(counter_video, size):
    width, height = size
    output = ["-vf", f"scale={width}:{height}:flags=bicubic", "-fps_mode", "passthrough"]
    reference = imageio_ffmpeg.read_frames(str(counter_video), output_params=output)
    next(reference)  # its header
    expected = list(reference)
    piped = list(rawvideo_frames(counter_video, width, height, output))
    assert len(expected) == 40 and len(piped) == 40
    assert all(a == b for a, b in zip(piped, expected))
    assert [read_counter(np.frombuffer(f, np.uint8).reshape(height, width, 3)) for f in piped] == list(range(40))


def test_a_pipe_closed_early_stops_ffmpeg(counter_video):
    frames = rawvideo_frames(counter_video, 160, 32, [])
    first = next(frames)
    assert read_counter(np.frombuffer(first, np.uint8).reshape(32, 160, 3)) == 0
    frames.close()  # the generator's finally: ffmpeg killed and reaped, no error
    with pytest.raises(StopIteration):
        next(frames)


def test_the_worker_binary_is_found_by_path(tmp_path):
    found = binary_in(PACKAGES)
    assert found is not None and Path(found).parent == PACKAGES / "imageio_ffmpeg" / "binaries"
    assert subprocess.run([found, "-version"], capture_output=True).stdout.startswith(b"ffmpeg version")
    assert binary_in(tmp_path) is None  # a folder without imageio-ffmpeg (not installed yet)
    assert binary_of_python(sys.executable) == imageio_ffmpeg.get_ffmpeg_exe()


def _in_host(*args: str) -> dict:
    if not HOST.exists():
        pytest.skip(f"{HOST.parents[1].name} is missing; create it with .ci/gradio-envs.sh")
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEIO_FFMPEG_EXE", "PYTHONHOME")}
    env.update(PYTHONPATH=str(ROOT / "scripts"), PATH=str(HOST.parent))  # no ffmpeg on PATH
    done = subprocess.run([str(HOST), "-c", HOST_SCRIPT, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_host_without_imageio_ffmpeg_probes_and_decodes_with_the_workers_binary(counter_video):
    host = _in_host(counter_video, PACKAGES)
    assert host.get("has_imageio") is False, host
    assert host["info"] == [160, 32, 30.0, 40]
    reader = SourceReader(counter_video, 80, 16)  # here: through imageio-ffmpeg's read_frames
    here = reader.frames([0, 7, 39])
    reader.close()
    assert [read_counter(np.array(f)) for f in host["frames"]] == [0, 7, 39]
    assert all(np.array_equal(np.array(h, np.float32), w) for h, w in zip(host["frames"], here))
    assert probe(counter_video).frames == 40


def test_a_host_without_imageio_ffmpeg_checks_a_soundtrack(counter_video, tmp_path):
    """The soundtrack probe runs in the host too (it was skipped there)."""
    song = tmp_path / "song.m4a"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=0.5",
                    str(song)], check=True)
    assert _in_host(counter_video, PACKAGES, song) == {"soundtrack": str(song)}
    error = _in_host(counter_video, PACKAGES, counter_video)["error"]  # a video without audio
    assert error.startswith(f"soundtrack file {counter_video} is not audio ffmpeg can read (")


def test_a_host_without_any_ffmpeg_gets_one_line(counter_video):
    error = _in_host(counter_video)["error"]
    assert error.startswith(f"job.txt: video {counter_video.name}: no ffmpeg to read videos with: ")
    assert "\n" not in error and "IMAGEIO_FFMPEG_EXE" in error
