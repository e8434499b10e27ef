"""wan_gpus > 1: the torchrun command, the relay of rank 0's lines, and selection (no GPU here)."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deforum_wan.backends.base import BackendOptions, GenerateRequest
from deforum_wan.backends.chain import load_backend
from deforum_wan.backends.multigpu import _rank_parser, _run_group, request_from_args, torchrun_command
from deforum_wan.errors import BackendError, Interrupted, WanError
from deforum_wan.models import get_model
from deforum_wan.settings import load_settings


def _req(**kw):
    base = dict(mode="t2v", prompt='a "fox" --in snow', negative_prompt="blur, text", num_frames=81,
                width=1280, height=720, seed=123456789, guidance_scale=5.0, steps=40)
    return GenerateRequest(**{**base, **kw})


def test_official_command_is_torchrun_with_fsdp_and_ulysses():
    cmd = torchrun_command(_req(shift=7.5), model_id="wan2.1-t2v-14b", engine="official", gpus=4,
                           weights="/w/Wan2.1-T2V-14B", save_file="/t/frames.npy",
                           options=BackendOptions(official_repo_path="/src/Wan2.1"), python="/py")
    assert cmd[:6] == ["/py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    args = cmd[7:]
    assert cmd[6] == "deforum_wan.backends.multigpu"
    pairs = dict(zip(args, args[1:]))  # each flag -> the word after it
    assert pairs["--prompt"] == 'a "fox" --in snow' and pairs["--n_prompt"] == "blur, text"
    assert (pairs["--size"], pairs["--frame_num"], pairs["--base_seed"]) == ("1280*720", "81", "123456789")
    assert (pairs["--sample_steps"], pairs["--sample_guide_scale"], pairs["--sample_shift"]) == ("40", "5.0", "7.5")
    assert (pairs["--ulysses_size"], pairs["--save_file"], pairs["--repo"]) == ("4", "/t/frames.npy", "/src/Wan2.1")
    assert "--dit_fsdp" in args and "--t5_fsdp" in args and "--image" not in args
    # What the command says is what the rank reads back.
    parsed = _rank_parser().parse_args(args)
    back = request_from_args(parsed)
    assert (back.prompt, back.negative_prompt, back.width, back.height, back.num_frames, back.seed,
            back.steps, back.guidance_scale, back.shift) == ('a "fox" --in snow', "blur, text", 1280, 720, 81,
                                                             123456789, 40, 5.0, 7.5)
    assert parsed.engine == "official" and parsed.dit_fsdp and parsed.t5_fsdp


def test_i2v_command_carries_the_conditioning_image_losslessly(tmp_path):
    image = np.random.default_rng(0).random((64, 96, 3), dtype=np.float32)
    np.save(tmp_path / "image.npy", image)
    cmd = torchrun_command(_req(mode="i2v", width=96, height=64, guidance_scale_2=3.0), model_id="wan2.2-i2v-a14b",
                           engine="diffusers", gpus=2, weights="/w", save_file=str(tmp_path / "f.npy"),
                           image_file=str(tmp_path / "image.npy"),
                           options=BackendOptions(dtype="bf16", loras=[("/l/a=b.safetensors", 0.5)],
                                                  vae_tiling=True))
    args = cmd[cmd.index("deforum_wan.backends.multigpu") + 1:]
    parsed = _rank_parser().parse_args(args)
    assert parsed.lora == ["/l/a=b.safetensors=0.5"] and parsed.vae_tiling and parsed.dtype == "bf16"
    assert "--dit_fsdp" not in args
    back = request_from_args(parsed)
    assert back.mode == "i2v" and back.guidance_scale_2 == 3.0
    assert np.array_equal(back.image, image)


def test_command_refuses_what_cannot_run():
    with pytest.raises(WanError, match="at least 2 GPUs"):
        torchrun_command(_req(), model_id="m", engine="official", gpus=1, weights="/w", save_file="/s")
    with pytest.raises(WanError, match="conditioning image"):
        torchrun_command(_req(mode="i2v"), model_id="m", engine="official", gpus=2, weights="/w", save_file="/s")


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


def test_relay_reports_steps_and_the_ranks_error_line(tmp_path):
    ok = _script(tmp_path, "import json\nprint('noise from a library')\n"
                 "for i in (1, 2, 3): print(json.dumps({'deforum_wan': {'step': i, 'steps': 3}}), flush=True)\n")
    steps = []
    _run_group(ok, tmp_path / "log", lambda d, t: steps.append((d, t)), None)
    assert steps == [(1, 3), (2, 3), (3, 3)]
    bad = _script(tmp_path, "import json, sys\nprint(json.dumps({'deforum_wan': {'error': 'CUDA out of memory'}}))\n"
                  "sys.exit(1)\n")
    with pytest.raises(BackendError, match="multi-GPU window failed: CUDA out of memory"):
        _run_group(bad, tmp_path / "log", None, None)


def test_stop_ends_the_whole_process_group(tmp_path):
    # The "rank" starts a child of its own, as torchrun does; both must go.
    pid_file = tmp_path / "child.pid"
    cmd = _script(tmp_path, "import subprocess, sys, time\n"
                  "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
                  f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
                  "time.sleep(120)\n")
    with pytest.raises(Interrupted):
        _run_group(cmd, tmp_path / "log", None, lambda: pid_file.exists() and pid_file.read_text() != "")
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
def test_torchrun_entry_without_cuda_fails_with_one_line(tmp_path):
    """The real torchrun and entry module: two ranks start, rank 0's error comes back as one line."""
    cmd = torchrun_command(_req(width=64, height=64, num_frames=5, steps=1), model_id="tiny-random",
                           engine="diffusers", gpus=2, weights=str(tmp_path), save_file=str(tmp_path / "f.npy"))
    with pytest.raises(BackendError, match=r"^multi-GPU window failed: multi-GPU windows need CUDA devices"):
        _run_group(cmd, tmp_path / "log", None, None)
