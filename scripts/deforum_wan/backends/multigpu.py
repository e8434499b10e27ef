"""One clip on several GPUs (``wan_gpus`` > 1): a torchrun process group that serves windows.

This module is both sides of it:

- the launcher, ``MultiGPUBackend``: a Backend that starts ``torchrun --standalone
  --nproc_per_node N -m deforum_wan.backends.multigpu --serve DIR ...`` (``torchrun_command``
  builds it; pure) on its first window and keeps it for the next ones, so the model loads
  once per render, not once per window. Each ``generate`` writes the window's request
  (``DIR/requests/<n>.json``, the conditioning image as a lossless ``.npy``), forwards rank
  0's step lines as progress and reads the frames back from the ``.npy`` rank 0 saved. A
  stop request ends the whole group (the next window starts a new one); ``close`` asks it
  to exit.
- the per-rank entry, ``main``, run by torchrun on every rank: load the model, then rank 0
  waits for the next request file and broadcasts it to the others over a gloo group (no
  GPU collective sits waiting between windows), every rank generates, rank 0 saves.

Engines:

- ``official``: the ``wan`` package's FSDP + Ulysses sequence parallel, set up the way the
  Wan repos' generate.py does for ``--dit_fsdp --t5_fsdp --ulysses_size N`` (Wan2.1 through
  xfuser, Wan2.2 with its own ``use_sp``). generate.py itself is not called: it has no
  negative prompt, accepts only its fixed size list and saves an H.264 mp4, a lossy copy
  the next window would be conditioned on.
- ``diffusers``: context parallelism (``ContextParallelConfig(ulysses_degree=N)`` and
  ``transformer.enable_parallelism``; WanTransformer3DModel has a ``_cp_plan`` in diffusers
  0.42), every rank running the same seeded pipeline call, rank 0 keeping the frames.

Without CUDA the ranks refuse, except under ``DEFORUM_WAN_MULTIGPU_CPU=1``: a test mode
(gloo, the diffusers engine replicated on every rank, no parallel split) so that the group's
life (start, windows, stop, errors, exit) runs for real on a machine without GPUs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import numpy as np

from ..errors import BackendError, Interrupted, WanError, first_line
from ..models.registry import ModelSpec, get_model
from ..models.weights import locate_weights, weights_missing_message
from .base import Backend, BackendOptions, GenerateRequest, StepCallback, StopCheck, check_request

ENGINES = ("official", "diffusers")
ENTRY = "deforum_wan.backends.multigpu"
MARK = "deforum_wan"  # key of the JSON lines rank 0 prints on stdout
# Attention heads of the official DiTs (wan/configs): Ulysses splits heads across GPUs.
OFFICIAL_HEADS = {"wan2.1-t2v-1.3b": 12, "wan2.1-vace-1.3b": 12, "wan2.2-ti2v-5b": 24}
OFFICIAL_HEADS_DEFAULT = 40  # every 14B / A14B model
CPU_TEST = os.environ.get("DEFORUM_WAN_MULTIGPU_CPU") == "1"  # see the module doc
EXIT = 999_999  # the request number that asks the ranks to exit


def torchrun_command(*, model_id: str, engine: str, gpus: int, weights: str, serve_dir: str,
                     options: BackendOptions | None = None, python: str = sys.executable) -> list[str]:
    """The argv of the serving group on ``gpus`` GPUs (no shell; print with shlex.join).

    ``python -m torch.distributed.run`` is torchrun (same module, no PATH lookup);
    ``--standalone`` picks a free local rendezvous port, so two renders on one machine
    do not collide. What changes per window travels as request files, not arguments.
    """
    if engine not in ENGINES:
        raise WanError(f"multi-GPU engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if gpus < 2:
        raise WanError(f"a multi-GPU window needs at least 2 GPUs, not {gpus}")
    o = options or BackendOptions()
    cmd = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           "-m", ENTRY,
           "--engine", engine, "--model", model_id, "--ckpt_dir", str(weights),
           "--serve", str(serve_dir), "--ulysses_size", str(gpus)]
    if engine == "official":
        cmd += ["--dit_fsdp", "--t5_fsdp"]  # as the Wan READMEs run multi-GPU
        if o.official_repo_path:
            cmd += ["--repo", str(o.official_repo_path)]
    else:
        cmd += ["--dtype", o.dtype, "--vae_dtype", o.vae_dtype, "--attention", o.attention]
        if o.vae_tiling:
            cmd += ["--vae_tiling"]
        for path, weight, expert in o.loras:
            cmd += ["--lora", f"{path}={float(weight)!r}={expert}"]
    if o.models_dir:
        cmd += ["--models_dir", str(o.models_dir)]
    return cmd


REQUEST_FIELDS = ("mode", "prompt", "negative_prompt", "num_frames", "width", "height", "seed", "guidance_scale",
                  "steps", "guidance_scale_2", "shift")


def request_to_json(req: GenerateRequest, image_file: str | None = None) -> dict:
    """A window's request as the ranks read it (the image by file: float32, lossless)."""
    if req.mode == "i2v" and not image_file:
        raise WanError("an i2v window needs the conditioning image file")
    data = {k: getattr(req, k) for k in REQUEST_FIELDS}
    data["seed"], data["steps"] = int(req.seed), int(req.steps)
    data["image"] = str(image_file) if image_file else None
    return data


def request_from_json(data: dict) -> GenerateRequest:
    image = _read_image(data["image"]) if data.get("image") else None
    return GenerateRequest(**{k: data[k] for k in REQUEST_FIELDS}, image=image)


def attention_heads(spec: ModelSpec, engine: str, weights: Path) -> int | None:
    """Heads of the model's DiT, or None when unknown (then torchrun's ranks check)."""
    if engine == "official":
        return OFFICIAL_HEADS.get(spec.id, OFFICIAL_HEADS_DEFAULT)
    try:
        config = json.loads((Path(weights) / "transformer" / "config.json").read_text())
        return int(config["num_attention_heads"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class MultiGPUBackend(Backend):
    """Renders each window with ``options.gpus`` processes, one per GPU (see module doc)."""

    def __init__(self, spec: ModelSpec, options: BackendOptions, engine: str):
        self.spec = spec
        self.options = options
        self.options.check()
        self.engine = engine
        self.gpus = options.gpus
        self.name = f"{engine} on {self.gpus} GPUs"
        self.notes = [f"{self.gpus} GPUs through torchrun; the group and its model stay loaded between windows"]
        self.tmp: Path | None = None
        self.group: _Group | None = None
        if engine not in ENGINES:
            raise BackendError(f"{engine}: no multi-GPU launcher")
        if engine == "official":
            from .official import TASKS

            if spec.tiny or spec.id not in TASKS:
                raise BackendError(f"{engine}: {spec.id} has no official task")
            if options.loras:
                raise BackendError(f"{engine}: LoRA is not supported by the official code; use diffusers")
        if options.offload != "none":
            self.notes.append(f"offload {options.offload!r} ignored: the model is split across GPUs instead")
        unused = [k for k, off in (("cache", "none"), ("compile", False), ("layerwise_fp8", False),
                                   ("distill_lora", "off")) if getattr(options, k, off) != off]
        if unused:  # the ranks build their backend from the command line, which lacks these
            self.notes.append(f"{', '.join(unused)} not applied on the multi-GPU path")
        import torch

        found = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if found < self.gpus and not (CPU_TEST and engine == "diffusers"):
            raise BackendError(f"{engine}: wan_gpus={self.gpus} but {found} CUDA device(s) are visible")
        if engine == "official":
            self.path = locate_weights(spec, options.models_dir, "official")
            if self.path is None:
                raise BackendError(f"{engine}: {weights_missing_message(spec, options.models_dir, 'official')}")
        else:
            from .diffusers_backend import weights_folder

            self.path = weights_folder(spec, options)
        heads = attention_heads(spec, engine, self.path)
        if heads is not None and heads % self.gpus:
            raise BackendError(f"{engine}: {spec.id} has {heads} attention heads, which {self.gpus} GPUs"
                               " cannot split evenly (Ulysses); choose a divisor")
        self.tmp = Path(tempfile.mkdtemp(prefix="deforum-wan-gpus-"))

    def generate(self, req: GenerateRequest, on_step: StepCallback | None = None,
                 should_stop: StopCheck | None = None) -> np.ndarray:
        if self.tmp is None:
            raise WanError(f"{self.name}: the backend for {self.spec.id} is closed")
        check_request(req, self.spec)
        if req.context is not None or req.last_image is not None:
            raise WanError(f"{self.name}: context and last frames are single-GPU only for now")
        if self.group is None or not self.group.alive():
            self.group = _Group(torchrun_command(model_id=self.spec.id, engine=self.engine, gpus=self.gpus,
                                                 weights=str(self.path), serve_dir=str(self.tmp),
                                                 options=self.options), self.tmp)
        image_file = None
        try:
            if req.image is not None:
                image_file = self.tmp / "image.npy"  # float32, lossless: the chain stays exact
                np.save(image_file, np.asarray(req.image, np.float32))
            frames = self.group.run(request_to_json(req, str(image_file) if image_file else None),
                                    on_step, should_stop)
        finally:
            if not self.group.alive():
                self.group = None
            if image_file is not None:
                image_file.unlink(missing_ok=True)
        expected = (req.num_frames, req.height, req.width, 3)
        if frames.shape != expected:
            raise BackendError(f"{self.name}: got frames {frames.shape}, expected {expected}")
        return np.clip(frames.astype(np.float32), 0.0, 1.0)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


class _Group:
    """A running torchrun group: its process (own session), the ranks' pids, rank 0's lines.

    torchrun's stdin is a pipe only this object writes to: the ranks inherit it, and rank 0
    leaves when it reads end-of-file between windows, so a launcher that dies (killed worker,
    crashed WebUI) never leaves a group holding the GPUs.
    """

    def __init__(self, cmd: list[str], serve_dir: Path, env: dict | None = None):
        self.dir = serve_dir
        _clear_serve_dir(serve_dir)  # nothing a previous group left may be read as this one's
        self.log_file = serve_dir / "torchrun.log"
        with open(self.log_file, "wb") as log:  # this group's log only: its errors are the ones quoted
            # Own session: a stop signals torchrun's whole process group at once.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         start_new_session=True, env=env)
        self.rank_pids: set[int] = set()  # torchrun starts each rank in a session of its own
        self.windows = 0  # requests written to this group
        self.lines: Queue = Queue()
        threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout] + [self.lines.put(None)],
                         daemon=True).start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _request(self, n: int, data: dict) -> None:
        path = self.dir / "requests" / f"{n:06d}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)  # rank 0 never reads half a request

    def run(self, data: dict, on_step: StepCallback | None, should_stop: StopCheck | None) -> np.ndarray:
        """One window on the group: its frames, or the ranks' error as a BackendError. Whatever
        ends the wait early (a stop, an error of the caller's) ends the group too."""
        n = self.windows + 1
        self._request(n, data)
        self.windows = n  # numbered only once written: rank 0 waits for exactly this file
        error = None
        try:
            while True:
                if should_stop is not None and should_stop():
                    raise Interrupted("stopped (the multi-GPU window was not finished)")
                try:
                    line = self.lines.get(timeout=0.5)
                except Empty:
                    continue
                if line is None:  # the group ended without finishing the window
                    code = self.proc.wait()
                    tail = error or _last_line(self.log_file) or f"exit status {code}"
                    raise BackendError(f"multi-GPU window failed: {tail} (log: {self.log_file})")
                message = _parse_line(line)
                if message is None:
                    continue
                if "pid" in message:
                    self.rank_pids.add(int(message["pid"]))
                if "step" in message and on_step is not None and error is None:
                    on_step(int(message["step"]), int(message["steps"]))
                if "error" in message:
                    error = str(message["error"])  # the ranks are leaving; the end of output follows
                if message.get("done") == n:
                    return self._frames(n)
        except BaseException:
            if self.alive():
                self.stop()
            raise

    def _frames(self, n: int) -> np.ndarray:
        save_file = self.dir / f"frames-{n}.npy"
        try:
            return np.load(save_file, allow_pickle=False)
        except OSError as exc:
            raise BackendError(f"multi-GPU window: no frames came back ({exc}); log: {self.log_file}") from None
        finally:
            save_file.unlink(missing_ok=True)

    def stop(self) -> None:
        _stop_group(self.proc, self.rank_pids)
        _clear_serve_dir(self.dir)

    def close(self, timeout: float = 60) -> None:
        """Ask the ranks to exit (they free their GPUs in order); stop them if they do not."""
        if self.alive():
            try:
                self._request(EXIT, {"op": "exit"})
                self.proc.stdin.close()
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.stop()
        _clear_serve_dir(self.dir)


def _clear_serve_dir(serve_dir: Path) -> None:
    (serve_dir / "requests").mkdir(parents=True, exist_ok=True)
    for path in [*(serve_dir / "requests").iterdir(), *serve_dir.glob("frames-*.npy")]:
        path.unlink(missing_ok=True)


def _parse_line(line: bytes) -> dict | None:
    try:
        message = json.loads(line)
    except ValueError:
        return None  # other output of the ranks
    if isinstance(message, dict) and isinstance(message.get(MARK), dict):
        return message[MARK]
    return None


def _stop_group(proc: subprocess.Popen, rank_pids: set[int] = frozenset()) -> None:
    """SIGTERM to torchrun (it forwards it to the ranks and gives them 30 s), then SIGKILL to
    torchrun and to every rank, which live in sessions of their own."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pid in rank_pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _last_line(log_file: Path) -> str:
    try:
        lines = [x.strip() for x in log_file.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    # The ranks' own error line is the most useful; torchrun's summary follows it.
    for line in reversed(lines):
        if "Error" in line and not line.startswith(("torch.distributed", "[")):
            return line[:300]
    return lines[-1][:300] if lines else ""


# --- per rank (run by torchrun) ----------------------------------------------------------

def _rank_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"torchrun ... -m {ENTRY}",
                                description="Serve Wan windows on this rank of a torchrun group.")
    p.add_argument("--engine", choices=ENGINES, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--ckpt_dir", required=True)
    p.add_argument("--serve", required=True, help="folder: requests/<n>.json in, frames-<n>.npy out (rank 0)")
    p.add_argument("--ulysses_size", type=int, required=True)
    p.add_argument("--dit_fsdp", action="store_true")
    p.add_argument("--t5_fsdp", action="store_true")
    p.add_argument("--repo", help="Wan2.1/Wan2.2 clone providing module wan")
    p.add_argument("--models_dir")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--vae_dtype", default="float32")
    p.add_argument("--attention", default="auto")
    p.add_argument("--vae_tiling", action="store_true")
    p.add_argument("--lora", action="append", default=[], metavar="PATH=WEIGHT")
    return p


def _read_image(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False).astype(np.float32)
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _emit(**data) -> None:
    # One write() per line: every rank shares torchrun's stdout, and print() may write the
    # text and its newline separately (PYTHONUNBUFFERED), letting another rank's line in
    # between. Writes under PIPE_BUF bytes to a pipe are atomic.
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps({MARK: data}) + "\n").encode())


def _official_rank_backend(args, spec: ModelSpec):
    from .official import OfficialBackend

    class RankOfficial(OfficialBackend):
        def _parallel_kwargs(self, accepted) -> dict:
            import torch.distributed as dist

            sp = args.ulysses_size > 1
            if sp and "use_usp" in accepted:
                # Wan2.1 runs sequence parallel through xfuser, initialised as its generate.py does.
                from xfuser.core.distributed import init_distributed_environment, initialize_model_parallel

                init_distributed_environment(rank=dist.get_rank(), world_size=dist.get_world_size())
                initialize_model_parallel(sequence_parallel_degree=dist.get_world_size(), ring_degree=1,
                                          ulysses_degree=args.ulysses_size)
            return dict(rank=dist.get_rank(), t5_fsdp=args.t5_fsdp, dit_fsdp=args.dit_fsdp, t5_cpu=False,
                        use_usp=sp, use_sp=sp)

    options = BackendOptions(models_dir=args.models_dir, official_repo_path=args.repo)
    return RankOfficial(spec, options)  # finds the same weights the launcher found


def _diffusers_rank_backend(args, spec: ModelSpec, device: str, parallel: bool):
    from .diffusers_backend import DiffusersBackend, transformers_of

    loras = []
    for item in args.lora:
        path, weight, expert = item.rsplit("=", 2)
        loras.append((path, float(weight), expert))
    options = BackendOptions(dtype=args.dtype, vae_dtype=args.vae_dtype, attention=args.attention,
                             vae_tiling=args.vae_tiling, loras=loras, device=device,
                             models_dir=args.models_dir)
    backend = DiffusersBackend(spec, options, path=args.ckpt_dir)
    if parallel:
        from diffusers import ContextParallelConfig

        config = ContextParallelConfig(ulysses_degree=args.ulysses_size)
        # Only the first pipeline is loaded; siblings created later share its modules.
        for module in transformers_of(backend.pipe):
            module.enable_parallelism(config=config)
    return backend


def _next_request(serve: Path, n: int) -> dict:
    """Rank 0: wait for request ``n`` or the exit request; a closed stdin (the launcher is
    gone) counts as the exit request."""
    import select
    import stat

    watch = stat.S_ISFIFO(os.fstat(0).st_mode)  # the launcher's pipe (not a terminal or /dev/null)
    wanted, leave = serve / "requests" / f"{n:06d}.json", serve / "requests" / f"{EXIT:06d}.json"
    while True:
        for path in (wanted, leave):
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                path.unlink()
                return data
        if not watch:
            time.sleep(0.02)
        elif select.select([0], [], [], 0.02)[0] and not os.read(0, 4096):
            return {"op": "exit"}


def main(argv: list[str] | None = None) -> int:
    args = _rank_parser().parse_args(argv)
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    serve = Path(args.serve)
    n = 0
    try:
        if world != args.ulysses_size:
            raise WanError(f"--ulysses_size {args.ulysses_size} must equal the torchrun world size {world}")
        cuda = torch.cuda.is_available()
        # Both engines' parallelism needs CUDA (diffusers builds its mesh on the accelerator).
        if not cuda and not (CPU_TEST and args.engine == "diffusers"):
            raise WanError("multi-GPU windows need CUDA devices")
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://", rank=rank,
                                world_size=world)
        # Requests travel on the CPU: the ranks wait there between windows (for as long as a
        # warm worker keeps the group), not inside a GPU collective with its watchdog.
        control = dist.new_group(backend="gloo", timeout=timedelta(days=30))
        _emit(pid=os.getpid())  # every rank: the launcher can stop ranks torchrun left behind
        spec = get_model(args.model)
        if args.engine == "official":
            backend = _official_rank_backend(args, spec)
        else:
            backend = _diffusers_rank_backend(args, spec, f"cuda:{local_rank}" if cuda else "cpu", parallel=cuda)
        on_step = (lambda done, total: _emit(step=done, steps=total)) if rank == 0 else None
        while True:
            message = [_next_request(serve, n + 1) if rank == 0 else None]
            dist.broadcast_object_list(message, src=0, group=control)
            if message[0].get("op") == "exit":
                return 0
            n += 1
            req = request_from_json(message[0])
            if args.engine == "official" and rank != 0:
                backend._run(req)  # only rank 0 decodes a video in the official code
                continue
            frames = backend.generate(req, on_step=on_step)
            if rank == 0:
                tmp = serve / f"frames-{n}.tmp.npy"
                np.save(tmp, np.asarray(frames, np.float32))
                os.replace(tmp, serve / f"frames-{n}.npy")
                _emit(done=n)
    except WanError as exc:  # a user error: its one line is the whole story
        if rank == 0:
            _emit(error=str(exc))
        return 1
    except Exception as exc:  # one line for the launcher; the traceback stays in the log
        if rank == 0:
            _emit(error=f"{type(exc).__name__}: {first_line(exc)}")
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
