"""wan_gpus > 1: the torchrun command, the relay of rank 0's lines, and selection (no GPU here)."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.backends.multigpu import _Group, _rank_parser, request_from_json, request_to_json, torchrun_command
from deforum_wan.config.settings import load_settings
from deforum_wan.errors import BackendError, Interrupted, WanError
from deforum_wan.models.registry import get_model


def _req(**kw):
    base = dict(mode="t2v", prompt='a "fox" --in snow', negative_prompt="blur, text", num_frames=81,
                width=1280, height=720, seed=123456789, guidance_scale=5.0, steps=40)
    return GenerateRequest(**{**base, **kw})


def test_official_command_is_a_torchrun_group_with_fsdp_and_ulysses():
    cmd = torchrun_command(model_id="wan2.1-t2v-14b", engine="official", gpus=4, weights="/w/Wan2.1-T2V-14B",
                           serve_dir="/t/serve", options=BackendOptions(official_repo_path="/src/Wan2.1"),
                           python="/py")
    assert cmd[:6] == ["/py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert cmd[6] == "deforum_wan.backends.multigpu"
    parsed = _rank_parser().parse_args(cmd[7:])  # what the command says is what the ranks read
    assert (parsed.engine, parsed.model, parsed.ckpt_dir, parsed.serve, parsed.ulysses_size, parsed.repo) == (
        "official", "wan2.1-t2v-14b", "/w/Wan2.1-T2V-14B", "/t/serve", 4, "/src/Wan2.1")
    assert parsed.dit_fsdp and parsed.t5_fsdp


def test_window_requests_round_trip_with_the_image_lossless(tmp_path):
    image = np.random.default_rng(0).random((64, 96, 3), dtype=np.float32)
    np.save(tmp_path / "image.npy", image)
    req = _req(mode="i2v", width=96, height=64, guidance_scale_2=3.0, shift=7.5)
    data = json.loads(json.dumps(request_to_json(req, str(tmp_path / "image.npy"))))  # as the file carries it
    back = request_from_json(data)
    for field in ("mode", "prompt", "negative_prompt", "num_frames", "width", "height", "seed", "guidance_scale",
                  "steps", "guidance_scale_2", "shift"):
        assert getattr(back, field) == getattr(req, field), field
    assert np.array_equal(back.image, image)
    cmd = torchrun_command(model_id="wan2.2-i2v-a14b", engine="diffusers", gpus=2, weights="/w", serve_dir="/s",
                           options=BackendOptions(dtype="bf16", loras=[("/l/a=b.safetensors", 0.5, "low")], vae_tiling=True))
    parsed = _rank_parser().parse_args(cmd[cmd.index("deforum_wan.backends.multigpu") + 1:])
    assert parsed.lora == ["/l/a=b.safetensors=0.5=low"] and parsed.vae_tiling and parsed.dtype == "bf16"
    assert not parsed.dit_fsdp


def test_command_refuses_what_cannot_run():
    with pytest.raises(WanError, match="at least 2 GPUs"):
        torchrun_command(model_id="m", engine="official", gpus=1, weights="/w", serve_dir="/s")
    with pytest.raises(WanError, match="conditioning image"):
        request_to_json(_req(mode="i2v"))


def test_wan_gpus_setting_reaches_the_backend_chain(tiny_models_dir):
    s = load_settings({"prompts": {"0": "x"}, "wan_gpus": 2})
    assert s.gpus == 2 and s.to_dict()["wan_gpus"] == 2
    with pytest.raises(WanError, match="wan_gpus must be between 1 and 64"):
        load_settings({"prompts": {"0": "x"}, "wan_gpus": 0})
    # No CUDA here: both engines refuse with their reason, nothing falls back to one GPU.
    with pytest.raises(BackendError) as err:
        load_backend(get_model("tiny-random"), "auto",
                     BackendOptions(gpus=2, models_dir=str(tiny_models_dir)))
    lines = str(err.value).splitlines()
    assert "official: tiny-random has no official task" in lines[1]
    assert "diffusers: wan_gpus=2 but 0 CUDA device(s) are visible" in lines[2]


def _script(tmp_path, body: str) -> list[str]:
    path = tmp_path / "rank.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_group_relays_steps_returns_frames_and_the_ranks_error_line(tmp_path):
    ok = _script(tmp_path, "import json, sys, numpy as np\nprint('noise from a library')\n"
                 "for i in (1, 2, 3): print(json.dumps({'deforum_wan': {'step': i, 'steps': 3}}), flush=True)\n"
                 f"np.save({str(tmp_path / 'frames-1.npy')!r}, np.ones((2, 4, 4, 3), np.float32))\n"
                 "print(json.dumps({'deforum_wan': {'done': 1}}), flush=True)\n")
    steps = []
    frames = _Group(ok, tmp_path).run({"op": "window"}, lambda d, t: steps.append((d, t)), None)
    assert steps == [(1, 3), (2, 3), (3, 3)] and frames.shape == (2, 4, 4, 3)
    assert (tmp_path / "requests" / "000001.json").is_file()  # the request the ranks would read
    bad = _script(tmp_path, "import json, sys\nprint(json.dumps({'deforum_wan': {'error': 'CUDA out of memory'}}))\n"
                  "sys.exit(1)\n")
    with pytest.raises(BackendError, match="multi-GPU window failed: CUDA out of memory"):
        _Group(bad, tmp_path).run({}, None, None)
    gone = _script(tmp_path, "import sys\nsys.stderr.write('RuntimeError: NCCL error\\n')\nsys.exit(3)\n")
    with pytest.raises(BackendError, match="multi-GPU window failed: RuntimeError: NCCL error"):
        _Group(gone, tmp_path).run({}, None, None)


def test_stop_ends_the_whole_process_group(tmp_path):
    # The "rank" starts a child of its own, as torchrun does; both must go.
    pid_file = tmp_path / "child.pid"
    cmd = _script(tmp_path, "import subprocess, sys, time\n"
                  "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                  f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                  "time.sleep(120)\n")
    group = _Group(cmd, tmp_path)
    with pytest.raises(Interrupted):
        group.run({}, None, lambda: pid_file.exists() and pid_file.read_text() != "")
    assert not group.alive()
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat")
    for _ in range(50):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # dead, waiting for its new parent to reap it
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the rank's child survived the stop")


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="with CUDA the ranks would render")
def test_torchrun_entry_without_cuda_fails_with_one_line(tmp_path, tiny_models_dir):
    """The real torchrun and entry module: two ranks start, rank 0's error comes back as one line."""
    cmd = torchrun_command(model_id="tiny-random", engine="diffusers", gpus=2, weights=str(tiny_models_dir),
                           serve_dir=str(tmp_path))
    env = {k: v for k, v in os.environ.items() if k != "DEFORUM_WAN_MULTIGPU_CPU"}
    group = _Group(cmd, tmp_path, env=env)
    try:
        with pytest.raises(BackendError, match=r"^multi-GPU window failed: multi-GPU windows need CUDA devices"):
            group.run(request_to_json(_req(width=64, height=64, num_frames=5, steps=1)), None, None)
    finally:
        group.close()
    assert not group.alive()


def _cpu_groups(monkeypatch):
    from deforum_wan.backends import multigpu

    monkeypatch.setenv("DEFORUM_WAN_MULTIGPU_CPU", "1")
    monkeypatch.setattr(multigpu, "CPU_TEST", True)
    return multigpu


@pytest.mark.slow
def test_a_cpu_group_serves_several_windows_without_restarting(tiny_models_dir, monkeypatch):
    """DEFORUM_WAN_MULTIGPU_CPU=1: two gloo ranks running the same diffusers pipeline. The
    group's life is real: one start for several windows, a stop, a restart, a clean exit."""
    from deforum_wan.backends.diffusers_backend import DiffusersBackend

    multigpu = _cpu_groups(monkeypatch)
    spec = get_model("tiny-random")
    opts = dict(models_dir=str(tiny_models_dir), dtype="float32")
    requests = [_req(width=32, height=32, num_frames=9, steps=2, seed=s) for s in (1, 2)]
    with DiffusersBackend(spec, BackendOptions(**opts)) as one:
        expected = [one.generate(r) for r in requests]
    backend = multigpu.MultiGPUBackend(spec, BackendOptions(gpus=2, **opts), engine="diffusers")
    try:
        steps = []
        first = backend.generate(requests[0], on_step=lambda d, t: steps.append((d, t)))
        pid = backend.group.proc.pid
        second = backend.generate(requests[1])
        assert backend.group.proc.pid == pid  # the same group: the model was not loaded again
        assert steps == [(1, 2), (2, 2)]
        for got, want in zip((first, second), expected):
            np.testing.assert_allclose(got, want, atol=1e-5)
        with pytest.raises(Interrupted):  # a stop ends the group ...
            backend.generate(requests[0], should_stop=lambda: bool(steps.append(None)) or len(steps) > 4)
        assert backend.group is None
        again = backend.generate(requests[1])  # ... and the next window starts a new one
        np.testing.assert_allclose(again, expected[1], atol=1e-5)
        group = backend.group
        # A window that fails before its request is written leaves the group in step.
        real = multigpu.request_to_json
        monkeypatch.setattr(multigpu, "request_to_json", lambda *a: (_ for _ in ()).throw(OSError(28, "No space")))
        with pytest.raises(OSError):
            backend.generate(requests[0])
        monkeypatch.setattr(multigpu, "request_to_json", real)
        np.testing.assert_allclose(backend.generate(requests[0]), expected[0], atol=1e-5)
        assert backend.group is group
    finally:
        backend.close()
    assert group.proc.returncode == 0  # the ranks left on the exit request, not by a signal


@pytest.mark.slow
def test_render_with_wan_gpus_2_on_cpu_groups_matches_one_process(tiny_models_dir, tmp_path, monkeypatch):
    """A whole chained render (T2V group, then an I2V group fed the carried frame) through
    the CPU test mode gives the frames of a plain render."""
    from helpers import EXAMPLE
    from PIL import Image

    from deforum_wan.render.loop import Renderer

    _cpu_groups(monkeypatch)
    data = dict(json.loads(EXAMPLE.read_text()), max_frames=24, skip_video_creation=True)
    results = {}
    for gpus in (1, 2):
        results[gpus] = Renderer(load_settings(dict(data, wan_gpus=gpus)), tmp_path / str(gpus),
                                 models_dir=str(tiny_models_dir)).run()
    assert any("2 GPUs through torchrun" in line for _, line in results[2].backend_report)
    frames = [sorted(r.run_dir.glob(f"{r.timestring}_0*.png")) for r in (results[1], results[2])]
    assert len(frames[0]) == len(frames[1]) == 24
    for a, b in zip(*frames):
        diff = np.abs(np.asarray(Image.open(a), np.int16) - np.asarray(Image.open(b), np.int16))
        assert diff.max() <= 1, a.name


LAUNCHER = """
import json, sys
from deforum_wan.backends import multigpu
from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.models.registry import get_model
backend = multigpu.MultiGPUBackend(get_model("tiny-random"), BackendOptions(gpus=2, models_dir=sys.argv[1]),
                                   engine="diffusers")
backend.generate(GenerateRequest(mode="t2v", prompt="x", negative_prompt="", num_frames=5, width=32, height=32,
                                 seed=1, guidance_scale=5.0, steps=1))
print(json.dumps([backend.group.proc.pid, *backend.group.rank_pids]), flush=True)
import time; time.sleep(300)
"""


@pytest.mark.slow
def test_a_group_whose_launcher_dies_exits(tiny_models_dir, tmp_path, monkeypatch):
    """A killed worker must not leave ranks holding the GPUs: rank 0 sees its stdin close."""
    _cpu_groups(monkeypatch)
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    proc = subprocess.Popen([sys.executable, str(script), str(tiny_models_dir)], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert len(pids) == 3  # torchrun and two ranks
    deadline = time.time() + 60
    while time.time() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.2)
    assert not any(_running(pid) for pid in pids), [pid for pid in pids if _running(pid)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

