"""End to end on the tiny models: real pipelines, real ffmpeg, real processes."""
import json
import os
import re
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from helpers import EXAMPLE
from PIL import Image

from deforum_wan.config.settings import load_settings
from deforum_wan.render.video import probe_video

pytestmark = pytest.mark.slow

SMALL = {"max_frames": 24, "seed": 42, "seed_behavior": "fixed"}  # keys 0, 8 (max_f-15), 16


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("models"))


def _settings_file(tmp_path, **overrides):
    data = json.loads(EXAMPLE.read_text())
    data.update(SMALL)
    data.update(overrides)
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps(data))
    return path


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _render(*args, models_dir, cwd):
    return subprocess.run([sys.executable, "-m", "deforum_wan", "render", *args, "--models-dir", models_dir],
                          cwd=cwd, capture_output=True, text=True, timeout=300, env=_env())


def _frames(run_dir: Path, ts: str) -> list[Path]:
    return sorted(run_dir.glob(f"{ts}_[0-9]*.png"))


def _only_run(outdir: Path) -> tuple[Path, str]:
    (run_dir,) = [p for p in outdir.iterdir() if p.is_dir()]
    (settings,) = run_dir.glob("*_settings.txt")
    return run_dir, settings.name[:14]


def test_render_example_end_to_end(tmp_path, models_dir):
    out = tmp_path / "out"
    r = _render(str(EXAMPLE), "--outdir", str(out), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir, ts = _only_run(out)
    assert run_dir.name == f"WanExample_{ts}"
    frames = _frames(run_dir, ts)
    assert [p.name for p in frames] == [f"{ts}_{i:09}.png" for i in range(48)]
    assert Image.open(frames[0]).size == (64, 64)
    info = probe_video(run_dir / f"{ts}.mp4")
    assert (info["frames"], info["fps"], info["width"], info["height"]) == (48, 12.0, 64, 64)
    assert info["codec"] == "h264"
    srt = (run_dir / f"{ts}.srt").read_text()
    assert "00:00:01,333 --> 00:00:02,666" in srt and "seagulls" in srt
    # The settings file was written first, is Deforum-formatted JSON and re-imports.
    saved = load_settings(run_dir / f"{ts}_settings.txt")
    assert saved.seed == 42 and saved.model.id == "tiny-random"
    assert json.loads((run_dir / f"{ts}_manifest.json").read_text())["status"] == "done"
    assert not (run_dir / f"{ts}_carry.npz").exists()


def test_resume_after_kill_gives_the_same_frames(tmp_path, models_dir):
    settings = _settings_file(tmp_path)
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    r = _render(str(settings), "--outdir", str(ref_out), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ref_dir, ref_ts = _only_run(ref_out)

    proc = subprocess.Popen([sys.executable, "-m", "deforum_wan", "render", str(settings), "--outdir", str(out),
                             "--models-dir", models_dir, "--events"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=_env())
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "window_done" and event["window"] == 1:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    run_dir, ts = _only_run(out)
    partial = len(_frames(run_dir, ts))
    assert 0 < partial < 24
    r = _render(str(settings), "--outdir", str(out), "--resume", ts, models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    frames, ref = _frames(run_dir, ts), _frames(ref_dir, ref_ts)
    assert len(frames) == len(ref) == 24
    for a, b in zip(frames, ref):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name
    assert probe_video(run_dir / f"{ts}.mp4")["frames"] == 24


def test_sigint_stops_keeps_frames_and_writes_video(tmp_path, models_dir):
    settings = _settings_file(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "deforum_wan", "render", str(settings), "--outdir", str(out),
                             "--models-dir", models_dir, "--events"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "window_done":
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stdout.read()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, stderr[-2000:]
    events += [json.loads(line) for line in rest.splitlines()]
    assert events[-1]["event"] == "interrupted"
    run_dir, ts = _only_run(out)
    n = len(_frames(run_dir, ts))
    assert 0 < n < 24 and events[-1]["frames"] == n
    assert probe_video(run_dir / f"{ts}.mp4")["frames"] == n
    assert json.loads((run_dir / f"{ts}_manifest.json").read_text())["status"] == "interrupted"
    assert "--resume " + ts in stderr and "Traceback" not in stderr


def test_bad_outdir_fails_before_any_model_loads(tmp_path, models_dir):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _render(str(EXAMPLE), "--outdir", str(blocker / "sub"), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_bad_settings_exit_2_nothing_written(tmp_path, models_dir):
    bad = tmp_path / "bad.txt"
    bad.write_text('{"prompts": {"0": "x"}, "max_frames": -1}')
    out = tmp_path / "out"
    r = _render(str(bad), "--outdir", str(out), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: bad.txt: max_frames must be between 1 and 100000, got -1"
    assert not out.exists()


def test_several_files_own_folders_soundtrack_and_skip_video(tmp_path, models_dir):
    wav = tmp_path / "tone.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000 * 3) * 0.05) * 8000).astype("<i2").tobytes())
    a = _settings_file(tmp_path, batch_name="A", add_soundtrack="File", soundtrack_path=str(wav),
                       max_frames=12, prompts={"0": "a boat --neg fog", "6": "a harbour"})
    b = a.with_name("b.txt")
    b.write_text(json.dumps({**json.loads(a.read_text()), "batch_name": "B", "skip_video_creation": True,
                             "add_soundtrack": "None"}))
    out = tmp_path / "out"
    r = _render(str(a), str(b), "--outdir", str(out), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (mp4,) = (out / "A").glob("*.mp4")
    assert probe_video(mp4)["audio"] and probe_video(mp4)["frames"] == 12
    assert len(list((out / "B").glob("*.png"))) == 12 and not list((out / "B").glob("*.mp4"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_bad_file_fails_alone_and_the_others_render(tmp_path, models_dir):
    good = _settings_file(tmp_path, max_frames=8, batch_name="good", prompts={"0": "a boat"})
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    bad = tmp_path / "bad.txt"
    bad.write_text(json.dumps({**json.loads(good.read_text()), "cfg_scale_schedule": "0: (log(2,1))"}))
    out = tmp_path / "out"
    r = _render(str(fifo), str(good), str(bad), "--outdir", str(out), models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert re.findall(r"error: [^\r\n]*", r.stderr) == [
        f"error: {fifo}: settings file is not a regular file (a FIFO)",
        f"error: {bad}: cfg_scale_schedule at frame 0: log(): float division by zero"]
    assert len(list((out / "good").glob("*.png"))) == 8 and list((out / "good").glob("*.mp4"))


def test_motion_strength_changes_the_render(tmp_path, models_dir):
    outs = []
    for m in (1.0, 3.0):
        s = _settings_file(tmp_path, max_frames=8, wan_motion_strength=m, batch_name=f"m{m}",
                           prompts={"0": "a boat"})
        r = _render(str(s), "--outdir", str(tmp_path / "out"), models_dir=models_dir, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "out" / f"m{m}").glob("*.png"))]))
    assert outs[0].shape == outs[1].shape
    # A dead field would give identical frames; on random tiny weights the shift's effect is small.
    assert np.abs(outs[0].astype(int) - outs[1].astype(int)).mean() > 0.1


def test_bad_plan_or_resume_timestring_exit_2_nothing_written(tmp_path, models_dir):
    out = tmp_path / "out"
    r = _render(str(_settings_file(tmp_path, wan_overlap=16)), "--outdir", str(out), models_dir=models_dir,
                cwd=tmp_path)
    assert r.returncode == 2 and "wan_overlap=16" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # A resume timestring names files: anything but 14 digits could reach outside the run folder.
    r = _render(str(EXAMPLE), "--outdir", str(out), "--resume", "../../x", models_dir=models_dir, cwd=tmp_path)
    assert r.returncode == 2 and "14 digits" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.rglob("*"))


def test_resume_when_killed_between_carry_and_manifest(tmp_path, tiny_models_dir):
    from deforum_wan.errors import Interrupted
    from deforum_wan.render.loop import Renderer
    from deforum_wan.render.manifest import Manifest
    from deforum_wan.render.names import manifest_path

    settings = load_settings(_settings_file(tmp_path, skip_video_creation=True))
    kw = dict(models_dir=str(tiny_models_dir))
    ref = Renderer(settings, tmp_path / "ref", **kw).run()
    stop = []
    with pytest.raises(Interrupted):  # synchronous writes: the stop lands in window 2 on a loaded machine too
        Renderer(settings, tmp_path / "out", should_stop=lambda: bool(stop), sync_writes=True,
                 on_event=lambda e: stop.append(1) if e["event"] == "window_done" and e["window"] == 1 else None,
                 **kw).run()
    run_dir, ts = _only_run(tmp_path / "out")
    # The carry of window 1 is on disk, the manifest has not recorded window 1 yet.
    manifest = Manifest.load(manifest_path(run_dir, ts))
    assert [w["index"] for w in manifest.windows] == [0, 1]
    manifest.windows.pop()
    manifest.save()
    done = Renderer(settings, tmp_path / "out", resume=ts, **kw).run()
    assert done.status == "done" and done.frames == ref.frames == 24
    for a, b in zip(_frames(run_dir, ts), _frames(ref.run_dir, ref.timestring), strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


def test_window_done_comes_after_its_frames_and_checkpoint_are_on_disk(tmp_path, tiny_models_dir):
    """Frames and checkpoints are written behind the loop; window_done must still only
    report what a resume would find on disk."""
    from deforum_wan.render.loop import Renderer
    from deforum_wan.render.manifest import Manifest
    from deforum_wan.render.names import manifest_path
    from deforum_wan.render.run_folder import RunFolder

    seen, order, planned = [], [], []

    def on_event(e):
        if e["event"] in ("step", "window_done"):
            order.append((e["event"], e["window"]) + ((e["step"],) if e["event"] == "step" else ()))
        if e["event"] == "started":
            seen.append(Path(e["run_dir"]))
            planned.extend(e["window_steps"])
        elif e["event"] == "window_done":
            run_dir = seen[0]
            ts = run_dir.name[-14:]
            manifest = Manifest.load(manifest_path(run_dir, ts))
            # (a later window may already be saved too: events are emitted between steps)
            assert e["window"] in [w["index"] for w in manifest.windows]
            assert manifest.frames_written >= e["frames_written"]
            assert len(_frames(run_dir, ts)) >= e["frames_written"]
            assert Path(e["preview"]).is_file() and RunFolder.at(run_dir, ts).carry_file.is_file()
            seen.append(e["window"])

    settings = load_settings(_settings_file(tmp_path, skip_video_creation=True))
    result = Renderer(settings, tmp_path / "out", models_dir=str(tiny_models_dir),
                      on_event=on_event).run()
    plan_windows = json.loads((result.run_dir / f"{result.timestring}_manifest.json").read_text())["windows"]
    assert seen[1:] == [w["index"] for w in plan_windows] and len(seen) > 2
    # Progress consumers rely on this order: no step of window k+1 before window_done(k).
    for i, (kind, window, *_) in enumerate(order):
        if kind == "step":
            done = {w for k, w, *_ in order[:i] if k == "window_done"}
            assert set(range(window)) <= done, order[: i + 1]
    # ... and every step comes, those held back while a window's frames were written included
    assert [o[1:] for o in order if o[0] == "step"] == [(w, k) for w, n in enumerate(planned)
                                                       for k in range(1, n + 1)]


def test_flow_retime_renders_every_frame_and_differs_from_blend(tmp_path, tiny_models_dir):
    from deforum_wan.render.loop import Renderer

    results = {}
    for mode in ("blend", "flow"):
        settings = load_settings(_settings_file(tmp_path, skip_video_creation=True, wan_retime=mode))
        results[mode] = Renderer(settings, tmp_path / mode, models_dir=str(tiny_models_dir)).run()
    blend, flow = (_frames(r.run_dir, r.timestring) for r in (results["blend"], results["flow"]))
    assert len(flow) == len(blend) == 24
    pixels = [(np.asarray(Image.open(a)), np.asarray(Image.open(b))) for a, b in zip(blend, flow)]
    assert np.array_equal(*pixels[0])  # output frame 0 is native frame 0 in both
    assert any(not np.array_equal(a, b) for a, b in pixels)  # in-between frames are warped, not mixed


def test_opencv_features_without_opencv_fail_before_anything_is_written(tmp_path, tiny_models_dir, monkeypatch):
    import importlib.util

    from deforum_wan.errors import WanError
    from deforum_wan.render.loop import Renderer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real(name, *a))
    settings = load_settings(_settings_file(tmp_path, wan_retime="flow", color_coherence="LAB"))
    with pytest.raises(WanError, match="color_coherence LAB and wan_retime flow need OpenCV"):
        Renderer(settings, tmp_path / "out", models_dir=str(tiny_models_dir)).run()
    assert not (tmp_path / "out").exists()
