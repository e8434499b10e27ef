"""A run folder's files are opened refusing links and special files: a link planted as the lock
does not truncate its target, a FIFO as a frame or the carry does not hang a resume, and a
frame linked to a picture elsewhere never reaches the video (the run renders again from
window 0, as for any damaged frame). Real renders on the tiny models."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from helpers import EXAMPLE
from PIL import Image

from deforum_wan.config.settings import load_settings
from deforum_wan.errors import Interrupted, WanError
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.run_folder import RunFolder, RunLock

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and O_NOFOLLOW are POSIX")
SMALL = {"max_frames": 24, "seed": 42, "seed_behavior": "fixed"}


def settings_in(tmp_path):
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), **SMALL}))
    return load_settings(path)


def render(settings, outdir, models, **kw):
    from deforum_wan.render.loop import Renderer

    return Renderer(settings, outdir, models_dir=str(models), **kw).run()


def frames_of(folder: RunFolder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.dir.glob(f"{folder.timestring}_[0-9]*.png"))]


def interrupted(settings, outdir, models) -> RunFolder:
    stop = []
    with pytest.raises(Interrupted):
        render(settings, outdir, models, sync_writes=True, should_stop=lambda: bool(stop),
               on_event=lambda e: stop.append(1) if e["event"] == "window_done" and e["window"] == 1 else None)
    (run_dir,) = [p for p in Path(outdir).iterdir() if p.is_dir()]
    (saved,) = run_dir.glob("*_settings.txt")
    return RunFolder.at(run_dir, saved.name[:14])


def test_a_linked_lock_file_is_refused_and_its_target_kept(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    lock = tmp_path / "20240101120000_render.lock"
    lock.symlink_to(target)
    with pytest.raises(WanError, match="symbolic link"):
        RunLock.acquire(lock, "20240101120000")
    assert target.read_text() == "keep me"
    lock.unlink()
    os.mkfifo(lock)
    with pytest.raises(WanError, match="FIFO"):
        RunLock.acquire(lock, "20240101120000")  # neither hangs nor writes into the pipe


@pytest.fixture(scope="module")
def reference(tiny_models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    result = render(settings_in(tmp), tmp / "out", tiny_models_dir)
    return frames_of(RunFolder.at(result.run_dir, result.timestring))


def make_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def link_outside(path: Path) -> None:
    outside = path.parent.parent.parent / "outside.png"
    Image.new("RGB", Image.open(path).size, (255, 0, 255)).save(outside)
    path.unlink()
    path.symlink_to(outside)


DAMAGE = {"carry is a FIFO": ("carry", make_fifo), "frame is a FIFO": ("frame", make_fifo),
          "frame links outside": ("frame", link_outside)}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_planted_file_in_a_run_folder_renders_the_run_again(tmp_path, tiny_models_dir, reference, damage):
    settings = settings_in(tmp_path)
    folder = interrupted(settings, tmp_path / "out", tiny_models_dir)
    assert Manifest.load(folder.manifest_file).frames_written > 3
    which, plant = DAMAGE[damage]
    path = folder.carry_file if which == "carry" else folder.frame(2)
    plant(path)
    events = []

    def hung(*_):
        raise AssertionError(f"the resume hung on {path.name}")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(300)
    try:
        result = render(settings, folder.dir.parent, tiny_models_dir, resume=folder.timestring,
                        on_event=events.append)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert result.status == "done"
    assert next(e for e in events if e["event"] == "started")["resume_from_window"] == 0
    assert any(path.name in e["message"] for e in events if e["event"] == "warning")
    assert not folder.frame(2).is_symlink()
    frames = frames_of(folder)
    assert len(frames) == len(reference) == 24
    assert all(np.array_equal(a, b) for a, b in zip(frames, reference))  # the outside picture is not in it
