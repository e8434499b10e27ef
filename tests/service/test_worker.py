"""``python -m deforum_wan.service.worker`` driven over real pipes, rendering the tiny models."""
from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import LONG, QUICK, SINGLE, frames_on_disk, manifest, settings, worker_env

from deforum_wan.errors import BackendError, SettingsError, describe_error, one_line
from deforum_wan.render.video import probe_video

pytestmark = pytest.mark.slow


class WorkerPipe:
    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "deforum_wan.service.worker", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", env=worker_env())
        self.events: queue.Queue = queue.Queue()
        self.not_events: list[str] = []  # stdout lines that are not JSON events (must stay empty)
        self.stderr_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr_lines.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.not_events.append(line)
        self.events.put(None)

    def send(self, cmd: dict | str) -> None:
        self.proc.stdin.write((cmd if isinstance(cmd, str) else json.dumps(cmd)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 90) -> dict:
        event = self.events.get(timeout=timeout)
        assert event is not None, "worker exited:\n" + "".join(self.stderr_lines[-20:])
        return event

    def until(self, kind: str, timeout: float = 90) -> list[dict]:
        """Events up to and including the first of ``kind``."""
        seen = []
        while True:
            event = self.next(timeout)
            seen.append(event)
            if event["event"] == kind:
                return seen

    def render(self, job: str, data: dict, outdir: Path, models_dir: Path, resume: str | None = None) -> None:
        self.send({"cmd": "render", "job": job, "spec": {"settings": data, "resume": resume}, "outdir": str(outdir),
                   "models_dir": str(models_dir), "backend": None})

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def worker():
    pipe = WorkerPipe()
    assert pipe.next(60)["event"] == "ready"
    yield pipe
    pipe.send({"cmd": "quit"})
    assert pipe.until("bye")
    assert pipe.close() == 0
    assert pipe.not_events == []


def test_render_emits_events_and_writes_deforum_files(worker, tiny_models_dir, tmp_path):
    worker.render("job-1", settings(QUICK), tmp_path, tiny_models_dir)
    events = worker.until("job_done")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "job_started" and kinds[-1] == "job_done"
    assert all(e["job"] == "job-1" for e in events)
    for kind in ("started", "loading", "loaded", "step", "window_done", "done"):
        assert kind in kinds
    assert kinds.index("started") < kinds.index("loaded") < kinds.index("step") < kinds.index("done")
    windows = [e for e in events if e["event"] == "window_done"]
    assert [w["window"] for w in windows] == [0, 1]
    assert all(Path(w["preview"]).is_file() for w in windows)

    done = events[-1]
    assert done["status"] == "done" and done["frames"] == 12
    run_dir, ts = Path(done["run_dir"]), done["timestring"]
    assert run_dir.parent == tmp_path
    assert len(frames_on_disk(run_dir, ts)) == 12
    assert Path(done["settings_file"]) == run_dir / f"{ts}_settings.txt"
    assert probe_video(done["video"])["frames"] == 12
    assert manifest(run_dir, ts)["status"] == "done"


def test_interrupt_mid_render_keeps_the_finished_frames(worker, tiny_models_dir, tmp_path):
    worker.render("job-2", settings(LONG), tmp_path, tiny_models_dir)
    worker.until("window_done")
    worker.send({"cmd": "interrupt"})
    events = worker.until("job_done")
    done = events[-1]
    assert done["status"] == "interrupted", done
    assert "interrupted" in [e["event"] for e in events]
    frames = done["frames"]
    assert 0 < frames < 24
    run_dir, ts = Path(done["run_dir"]), done["timestring"]
    assert len(frames_on_disk(run_dir, ts)) == frames
    assert probe_video(done["video"])["frames"] == frames
    assert manifest(run_dir, ts)["status"] == "interrupted"
    assert f"--resume {ts}" in done["message"]


def test_bad_jobs_are_reported_and_the_worker_keeps_serving(worker, tiny_models_dir, tmp_path):
    worker.send("this is not json")
    assert worker.next()["event"] == "protocol_error"
    worker.send({"cmd": "dance"})
    assert worker.next()["event"] == "protocol_error"

    worker.render("bad-1", {"W": "wide", "prompts": {"0": "x"}}, tmp_path, tiny_models_dir)
    events = worker.until("job_error")
    assert [e["event"] for e in events] == ["job_started", "job_error"]
    assert events[-1]["job"] == "bad-1"
    assert events[-1]["message"] == "<settings>: W must be a number, got 'wide'"

    # A backend failure (the official backend alone cannot load tiny models): one line.
    worker.render("bad-2", settings(QUICK, wan_backend="official"), tmp_path, tiny_models_dir)
    error = worker.until("job_error")[-1]
    assert error["job"] == "bad-2" and "\n" not in error["message"]
    assert error["message"].startswith("no backend could load tiny-random")

    worker.render("bad-3", settings(QUICK), tmp_path, tiny_models_dir, resume="../../etc")
    assert "must be 14 digits" in worker.until("job_error")[-1]["message"]

    worker.render("good", settings(QUICK), tmp_path, tiny_models_dir)
    assert worker.until("job_done")[-1]["status"] == "done"


def test_interrupt_for_a_job_not_started_yet_cancels_it(worker, tiny_models_dir, tmp_path):
    worker.send({"cmd": "interrupt", "job": "later"})
    worker.render("later", settings(QUICK), tmp_path, tiny_models_dir)
    events = worker.until("job_done")
    assert [e["event"] for e in events] == ["job_started", "job_done"]
    assert events[-1]["status"] == "cancelled"
    assert not any(tmp_path.iterdir())  # nothing was written


def test_keep_warm_reuses_the_loaded_pipeline(tiny_models_dir, tmp_path):
    pipe = WorkerPipe("--keep-warm")
    try:
        assert pipe.next(60)["keep_warm"] is True
        loaded, done = [], []
        for job in ("warm-1", "warm-2"):
            pipe.render(job, settings(SINGLE), tmp_path, tiny_models_dir)
            events = pipe.until("job_done")
            loaded.append([e for e in events if e["event"] == "loaded"])
            done.append(events[-1])
        assert [e.get("warm", False) for e in loaded[0]] == [False]
        assert [e.get("warm", False) for e in loaded[1]] == [True]
        assert all(d["status"] == "done" for d in done)
        # Deforum's one-second timestrings: back-to-back jobs still get their own run.
        assert done[0]["timestring"] != done[1]["timestring"]
        pipe.send({"cmd": "quit"})
        assert pipe.until("bye")
    finally:
        assert pipe.close() == 0
    assert pipe.not_events == []


def test_describe_error_is_one_line():
    import torch

    assert one_line("no backend could load x (tried a, b):\n  a: no\n  b: no") == \
        "no backend could load x (tried a, b): a: no; b: no"
    assert describe_error(SettingsError("bad W", "file.txt")) == "file.txt: bad W"
    assert describe_error(RuntimeError("boom\nmore")) == "RuntimeError: boom; more"
    assert describe_error(KeyError("k")) == "KeyError: 'k'"
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert describe_error(oom) == "out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    try:  # the backend chain wraps load failures: the OOM is found through the cause
        try:
            raise oom
        except Exception as exc:
            raise BackendError("no backend could load x:\n  diffusers: OutOfMemoryError") from exc
    except BackendError as wrapped:
        assert describe_error(wrapped).startswith("out of GPU memory: CUDA out of memory")
