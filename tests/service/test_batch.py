"""Batches: sequential here and on a local Ray cluster of CPU actors (tiny models, real Ray)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import EXAMPLE
from PIL import Image

from deforum_wan.cli.batch import format_summary
from deforum_wan.events import fold
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.names import make_timestring
from deforum_wan.service.batch import prepare_jobs, run_batch

NOW = time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))  # every batch here gets the same timestrings


def _files(folder: Path) -> list[Path]:
    """Three small renders (the last one long enough to be killed mid-job) and a bad file."""
    base = json.loads(EXAMPLE.read_text())
    base.update(max_frames=24, seed_behavior="fixed")
    variants = [dict(seed=41, batch_name="A_{timestring}"), dict(seed=42, batch_name="B_{timestring}"),
                dict(seed=43, batch_name="C_{timestring}", max_frames=48, steps=6)]
    paths = []
    for i, extra in enumerate(variants):
        path = folder / f"{'abc'[i]}.txt"
        path.write_text(json.dumps({**base, **extra}))
        paths.append(path)
    bad = folder / "bad.txt"
    bad.write_text(json.dumps({**base, "max_frames": -1}))
    return paths + [bad]


def _frames(run_dir: str, ts: str) -> list[Path]:
    return sorted(Path(run_dir).glob(f"{ts}_[0-9]*.png"))


def _same_output(job, ref) -> None:
    assert (job.status, job.timestring, Path(job.run_dir).name) == ("done", ref.timestring, Path(ref.run_dir).name)
    ours, theirs = _frames(job.run_dir, job.timestring), _frames(ref.run_dir, ref.timestring)
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == job.max_frames
    for a, b in zip(ours, theirs):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


# --- pure --------------------------------------------------------------------------------

def test_jobs_get_distinct_timestrings_and_bad_files_fail_alone(tmp_path):
    a, b, c, bad = _files(tmp_path)
    jobs = prepare_jobs([(str(p), p) for p in (a, bad, b, a)], outdir=tmp_path / "out", now=NOW)
    assert [j.status for j in jobs] == ["queued", "failed", "queued", "queued"]
    assert jobs[1].error == "bad.txt: max_frames must be between 1 and 100000, got -1"
    stamps = [j.timestring for j in jobs if j.settings]
    assert stamps == [make_timestring(NOW), make_timestring(NOW + 1), make_timestring(NOW + 2)]
    assert jobs[0].window_steps == [2, 2, 2] and jobs[0].settings["seed"] == 41
    # A run folder that already holds a timestring is skipped, not reused.
    (tmp_path / "out" / f"A_{make_timestring(NOW)}").mkdir(parents=True)
    (tmp_path / "out" / f"A_{make_timestring(NOW)}" / f"{make_timestring(NOW)}_settings.txt").write_text("{}")
    again = prepare_jobs([(str(a), a)], outdir=tmp_path / "out", now=NOW)
    assert again[0].timestring == make_timestring(NOW + 1)
    table = format_summary(jobs).splitlines()
    assert table[0].split() == ["file", "status", "frames", "run", "dir", "error"]
    assert table[2].endswith("bad.txt: max_frames must be between 1 and 100000, got -1")


def test_seed_minus_one_is_drawn_once_on_the_driver(tmp_path):
    data = json.loads(EXAMPLE.read_text())
    (job,) = prepare_jobs([("x", {**data, "seed": -1})], outdir=tmp_path, now=NOW)
    assert job.settings["seed"] >= 0  # every attempt, on any machine, renders this seed


def test_batch_with_ray_missing_says_how_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from deforum_wan.cli.main import main\n"
            f"sys.exit(main(['batch', '--ray', {str(EXAMPLE)!r}, '--outdir', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: --ray needs Ray, which is not installed: "
                                "pip install 'deforum-wan[ray]' (or pip install ray==2.60.0)")


# --- renders -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def settings_files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("settings"))


@pytest.fixture(scope="module")
def reference(settings_files, tiny_models_dir, tmp_path_factory):
    """The batch rendered here, one file after another (one torch thread, like the actors)."""
    out = tmp_path_factory.mktemp("sequential")
    jobs = run_batch([(str(p), p) for p in settings_files], outdir=out, models_dir=str(tiny_models_dir),
                     now=NOW)
    assert [j.status for j in jobs] == ["done", "done", "done", "failed"], [j.error for j in jobs]
    return jobs


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_batch_equals_sequential_render(settings_files, reference, ray_cluster, tiny_models_dir, tmp_path):
    events = []
    jobs = run_batch([(str(p), p) for p in settings_files], outdir=tmp_path, models_dir=str(tiny_models_dir),
                     use_ray=True, actors=2, now=NOW,
                     on_event=lambda job, e: events.append((job.index, e)))
    assert [j.status for j in jobs] == ["done", "done", "done", "failed"]
    for job, ref in zip(jobs[:3], reference[:3]):
        _same_output(job, ref)
        assert job.attempts == 1 and job.frames == job.max_frames
        assert job.windows_by_attempt == {0: list(range(len(job.window_steps)))}
    assert jobs[3].error == "bad.txt: max_frames must be between 1 and 100000, got -1" and jobs[3].attempts == 0
    # Two actors: both took jobs, and every step event of every job reached the driver before
    # its result was recorded (the last ones were once still in the queue then).
    assert len({e["pid"] for _, e in events}) == 2
    for job in jobs[:3]:
        steps = [(e["window"], e["step"]) for i, e in events if i == job.index and e["event"] == "step"]
        assert steps == [(w, k) for w, n in enumerate(job.window_steps) for k in range(1, n + 1)], job.name
        progress = fold([e for i, e in events if i == job.index])
        assert progress["steps_done"] == progress["steps_total"] == sum(job.window_steps)


@pytest.mark.slow
def test_killed_actor_job_resumes_on_another_actor(settings_files, reference, ray_cluster, tiny_models_dir,
                                                   tmp_path):
    killed = {}

    def on_event(job, event):
        # Kill the long job's actor process as soon as its first window is on disk.
        if job.index == 2 and event["event"] == "window_done" and not killed:
            killed.update(pid=event["pid"], time=time.time(), frames=event["frames_written"])
            os.kill(event["pid"], signal.SIGKILL)

    jobs = run_batch([(str(p), p) for p in settings_files[:3]], outdir=tmp_path,
                     models_dir=str(tiny_models_dir), use_ray=True, actors=2, retries=2,
                     now=NOW, on_event=on_event)
    assert killed, "the long job finished no window"
    assert [j.status for j in jobs] == ["done", "done", "done"], [j.error for j in jobs]
    long = jobs[2]
    assert long.attempts == 2
    first, second = long.windows_by_attempt[0], long.windows_by_attempt[1]
    windows = list(range(len(long.window_steps)))
    # The retry resumed: it rendered only the windows the killed attempt had not finished.
    # (That attempt may have saved windows it never reported: the kill lost their events.)
    assert first == windows[: len(first)] and second == windows[windows.index(second[0]):]
    assert second[0] >= len(first) > 0
    for job, ref in zip(jobs, reference):
        _same_output(job, ref)
    manifest = Manifest.load(Path(long.run_dir) / f"{long.timestring}_manifest.json")
    assert manifest.status == "done" and [w["index"] for w in manifest.windows] == windows
    # The killed attempt's frames were left as they were, not written again.
    for frame in _frames(long.run_dir, long.timestring)[:killed["frames"]]:
        assert frame.stat().st_mtime <= killed["time"]


@pytest.mark.slow
def test_batch_command_here_prints_summary_and_exits_2_on_a_bad_file(settings_files, tiny_models_dir, tmp_path):
    a, bad = settings_files[0], settings_files[3]
    r = subprocess.run([sys.executable, "-m", "deforum_wan", "batch", str(a), str(bad), "--outdir",
                        str(tmp_path), "--models-dir", str(tiny_models_dir)], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["file", "status", "frames"]
    assert lines[1].split()[1:3] == ["done", "24/24"]
    assert lines[2].split()[1] == "failed" and lines[2].endswith("got -1")
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_stop_interrupts_running_jobs_which_then_resume(settings_files, reference, ray_cluster, tiny_models_dir,
                                                         tmp_path):
    from deforum_wan.config.settings import load_settings
    from deforum_wan.render.loop import Renderer

    stop = {"flag": False}

    def on_event(job, event):
        if job.index == 2 and event["event"] == "window_done":
            stop["flag"] = True

    jobs = run_batch([(str(p), p) for p in settings_files[:3]], outdir=tmp_path,
                     models_dir=str(tiny_models_dir), use_ray=True, actors=1, now=NOW,
                     on_event=on_event, should_stop=lambda: stop["flag"])
    # One actor: the long job ran first (it is third, so after a and b), then the stop.
    assert [j.status for j in jobs] == ["done", "done", "interrupted"], [j.error for j in jobs]
    long = jobs[2]
    assert 0 < long.frames < long.max_frames and "resume with --resume " + long.timestring in long.error
    settings = load_settings(Path(long.run_dir) / f"{long.timestring}_settings.txt")
    Renderer(settings, tmp_path, models_dir=str(tiny_models_dir), resume=long.timestring).run()
    long.status = "done"
    _same_output(long, reference[2])
