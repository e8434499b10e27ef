"""Resuming damaged runs: a broken carry, broken or missing frames, an edited settings file,
two renders of one run at once, a run folder that cannot be written. Real renders on the
tiny models (marked slow) and a real second process holding the lock."""
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import EXAMPLE
from PIL import Image

from deforum_wan.config.settings import load_settings
from deforum_wan.errors import Interrupted, WanError
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.run_folder import RunFolder
from deforum_wan.render.video import probe_video

SMALL = {"max_frames": 24, "seed": 42, "seed_behavior": "fixed"}
TS = "20240101120000"


def _settings(tmp_path, **overrides):
    data = {**json.loads(EXAMPLE.read_text()), **SMALL, **overrides}
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps(data))
    return load_settings(path)


def _pixels(run_dir: Path, ts: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(run_dir.glob(f"{ts}_[0-9]*.png"))]


def _render(settings, outdir, models, **kw):
    from deforum_wan.render.loop import Renderer

    return Renderer(settings, outdir, models_dir=str(models), **kw).run()


def _interrupted(settings, outdir, models, after_window: int = 1) -> RunFolder:
    """A run stopped once window ``after_window`` is saved (frames, carry, manifest)."""
    stop = []

    def on_event(e):
        if e["event"] == "window_done" and e["window"] == after_window:
            stop.append(1)

    # Synchronous writes: window_done(k) comes before window k+1 starts, so the stop lands in the
    # next window however slowly a loaded machine writes frames (else the last window can finish first).
    with pytest.raises(Interrupted):
        _render(settings, outdir, models, should_stop=lambda: bool(stop), on_event=on_event, sync_writes=True)
    (run_dir,) = [p for p in Path(outdir).iterdir() if p.is_dir()]
    (saved,) = run_dir.glob("*_settings.txt")
    return RunFolder.at(run_dir, saved.name[:14])


@pytest.fixture(scope="module")
def reference(tiny_models_dir, tmp_path_factory):
    """The frames of the uninterrupted render every resume must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    result = _render(_settings(tmp), tmp / "out", tiny_models_dir)
    return _pixels(result.run_dir, result.timestring)


def _resume(folder: RunFolder, settings, models):
    events = []
    result = _render(settings, folder.dir.parent, models, resume=folder.timestring, on_event=events.append)
    return result, events


def _assert_same(folder: RunFolder, reference):
    frames = _pixels(folder.dir, folder.timestring)
    assert len(frames) == len(reference) == 24
    for i, (a, b) in enumerate(zip(frames, reference)):
        assert np.array_equal(a, b), f"frame {i}"


# --- the carry ---------------------------------------------------------------------------

def _rewrite_state(path: Path, change) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["state"] = change(arrays["state"].copy())
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _out_of_range(state):
    state[2] = 99  # segment
    return state


def _one_frame_more(state):
    state[5] += 1  # frames written: plausible, and wrong
    return state


CARRY_DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "missing": lambda p: p.unlink(),
    "state out of range": lambda p: _rewrite_state(p, _out_of_range),
    "state off by one": lambda p: _rewrite_state(p, _one_frame_more),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(CARRY_DAMAGE))
def test_a_damaged_carry_renders_the_run_again_from_window_0(tmp_path, tiny_models_dir, reference, damage):
    settings = _settings(tmp_path, skip_video_creation=True)
    folder = _interrupted(settings, tmp_path / "out", tiny_models_dir)
    CARRY_DAMAGE[damage](folder.carry_file)
    result, events = _resume(folder, settings, tiny_models_dir)
    assert result.status == "done"
    started = next(e for e in events if e["event"] == "started")
    assert started["resume_from_window"] == 0
    warning = next(e["message"] for e in events if e["event"] == "warning")
    assert folder.carry_file.name in warning and "window 0" in warning
    _assert_same(folder, reference)


# --- the frames --------------------------------------------------------------------------

def _wrong_size(p: Path) -> None:
    Image.new("RGB", (32, 32)).save(p)


FRAME_DAMAGE = {
    "garbage": lambda p: p.write_bytes(os.urandom(2048)),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "deleted": lambda p: p.unlink(),
    "wrong size": _wrong_size,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(FRAME_DAMAGE))
def test_a_broken_frame_of_a_finished_window_is_rendered_again(tmp_path, tiny_models_dir, reference, damage):
    settings = _settings(tmp_path)
    folder = _interrupted(settings, tmp_path / "out", tiny_models_dir)
    written = Manifest.load(folder.manifest_file).frames_written
    assert written > 3
    FRAME_DAMAGE[damage](folder.frame(2))
    result, events = _resume(folder, settings, tiny_models_dir)
    assert result.status == "done" and result.frames == 24
    assert next(e for e in events if e["event"] == "started")["resume_from_window"] == 0
    assert any(folder.frame(2).name in e["message"] for e in events if e["event"] == "warning")
    _assert_same(folder, reference)
    assert probe_video(folder.video_file)["frames"] == 24  # not one frame short


@pytest.mark.slow
def test_whole_frames_resume_where_the_run_stopped(tmp_path, tiny_models_dir, reference):
    """The check costs no work: an undamaged run goes on at its first unfinished window."""
    settings = _settings(tmp_path, skip_video_creation=True)
    folder = _interrupted(settings, tmp_path / "out", tiny_models_dir)
    kept = Manifest.load(folder.manifest_file)
    done = len(kept.windows)
    result, events = _resume(folder, settings, tiny_models_dir)
    started = next(e for e in events if e["event"] == "started")
    assert started["resume_from_window"] == done > 0
    assert started["frames_written"] == kept.frames_written > 0  # what the job queue shows at once
    assert not [e for e in events if e["event"] == "warning"]
    _assert_same(folder, reference)


# --- the settings file -------------------------------------------------------------------

@pytest.mark.slow
def test_an_edited_settings_file_is_refused(tmp_path, tiny_models_dir):
    settings = _settings(tmp_path, skip_video_creation=True)
    folder = _interrupted(settings, tmp_path / "out", tiny_models_dir)
    before = Manifest.load(folder.manifest_file).to_dict()
    data = json.loads(folder.settings_file.read_text())
    original = data["prompts"]
    data["prompts"] = {"0": "a different film"}
    folder.settings_file.write_text(json.dumps(data, indent=4))
    with pytest.raises(WanError) as err:
        _resume(folder, settings, tiny_models_dir)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "was changed after run" in message
    assert "without --resume" in message and folder.settings_file.name in message
    assert Manifest.load(folder.manifest_file).to_dict() == before  # nothing rendered
    assert not folder.lock_file.exists()
    # Formatting alone is no change: the same values resume.
    data["prompts"] = original
    folder.settings_file.write_text(json.dumps(dict(reversed(list(data.items())))))
    result, _ = _resume(folder, settings, tiny_models_dir)
    assert result.status == "done"


# --- the lock ----------------------------------------------------------------------------

HOLD = """
import sys, time
from deforum_wan.render.run_folder import RunFolder
lock = RunFolder.at(sys.argv[1], sys.argv[2]).lock()
print("locked", flush=True)
time.sleep(600)
"""


def _holder(folder: RunFolder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder.dir), folder.timestring],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_run_refuses_a_second_lock_until_its_holder_dies(tmp_path):
    folder = RunFolder.at(tmp_path, TS)
    proc = _holder(folder)
    try:
        with pytest.raises(WanError, match=rf"^run {TS} is already rendering \(pid {proc.pid}\)$"):
            folder.lock()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    lock = folder.lock()  # the OS dropped the dead holder's lock: no stale lock file blocks us
    with pytest.raises(WanError, match=rf"already rendering \(pid {os.getpid()}\)"):
        folder.lock()  # a second lock in the same process is refused too
    lock.release()
    assert not folder.lock_file.exists()
    folder.lock().release()


@pytest.mark.slow
def test_a_second_resume_of_a_rendering_run_fails_at_once(tmp_path, tiny_models_dir, reference):
    settings = _settings(tmp_path, skip_video_creation=True)
    folder = _interrupted(settings, tmp_path / "out", tiny_models_dir)
    proc = _holder(folder)  # another render of this run, as far as the lock tells
    try:
        with pytest.raises(WanError) as err:
            _resume(folder, settings, tiny_models_dir)
        assert str(err.value) == f"run {folder.timestring} is already rendering (pid {proc.pid})"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # While a render runs (here: during its first window), a second one in this process fails too.
    seconds = []

    def on_event(e):
        if e["event"] == "window_done" and not seconds:
            try:
                _render(settings, folder.dir.parent, tiny_models_dir, resume=folder.timestring)
            except WanError as exc:
                seconds.append(str(exc))

    result = _render(settings, folder.dir.parent, tiny_models_dir, resume=folder.timestring, on_event=on_event)
    assert result.status == "done"
    assert seconds == [f"run {folder.timestring} is already rendering (pid {os.getpid()})"]
    assert not folder.lock_file.exists()
    _assert_same(folder, reference)


# --- a run folder that cannot be written -------------------------------------------------

def _block(path: Path) -> None:
    """Make ``path`` unwritable even for root: a folder where a file must go."""
    if path.exists():
        path.rename(path.with_name(path.name + ".moved"))
    path.mkdir()


def _failed_render(settings, outdir, models, block) -> tuple[str, RunFolder]:
    folders = []

    def on_event(e):
        if e["event"] == "started":
            folders.append(RunFolder.at(e["run_dir"], e["timestring"]))
            block(folders[0])

    with pytest.raises(WanError) as err:
        _render(settings, outdir, models, on_event=on_event)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and str(folders[0].dir) in message
    assert "/." not in message and ".tmp" not in message  # not the hidden temp file
    return message, folders[0]


@pytest.mark.slow
@pytest.mark.parametrize("what", ["frame", "subtitles"])
def test_a_write_that_fails_names_the_folder_and_marks_the_run_failed(tmp_path, tiny_models_dir, what):
    settings = _settings(tmp_path, skip_video_creation=True)
    block = {"frame": lambda f: _block(f.frame(10)), "subtitles": lambda f: _block(f.srt_file)}[what]
    _, folder = _failed_render(settings, tmp_path / "out", tiny_models_dir, block)
    assert Manifest.load(folder.manifest_file).status == "failed"
    assert not folder.lock_file.exists()


@pytest.mark.slow
def test_a_manifest_that_cannot_be_written_is_said_so(tmp_path, tiny_models_dir):
    settings = _settings(tmp_path, skip_video_creation=True)
    message, folder = _failed_render(settings, tmp_path / "out", tiny_models_dir,
                                     lambda f: _block(f.manifest_file))
    assert "could not be marked failed" in message and folder.manifest_file.name in message
    assert not folder.lock_file.exists()


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_a_read_only_run_folder(tmp_path, tiny_models_dir):
    settings = _settings(tmp_path, skip_video_creation=True)
    message, folder = _failed_render(settings, tmp_path / "out", tiny_models_dir,
                                     lambda f: f.dir.chmod(0o555))
    try:
        assert "could not be marked failed" in message
        with pytest.raises(WanError, match="not writable") as err:
            _resume(folder, settings, tiny_models_dir)
        assert str(folder.dir) in str(err.value) and len(str(err.value).splitlines()) == 1
    finally:
        folder.dir.chmod(0o755)
