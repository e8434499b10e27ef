"""A render's files (render/names, frame_writer, manifest, video) on real files and the real
imageio-ffmpeg binary."""
import json
import math
import os
import re
import shutil
import threading
import wave
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deforum_wan.errors import WanError
from deforum_wan.render.frame_writer import FrameWriter
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.names import (
    atomic_write_bytes,
    atomic_write_json,
    frame_path,
    frame_pattern,
    make_timestring,
    manifest_path,
    run_dir,
    settings_hash,
    settings_path,
    srt_path,
    video_path,
    write_settings,
)
from deforum_wan.render.video import VideoError, check_soundtrack, make_video, probe_video, srt_time, write_srt

TS = "20240101120000"


def synthetic_frames(n, w, h):
    """Frames that differ from each other (a moving gradient), uint8 RGB."""
    y, x = np.mgrid[0:h, 0:w]
    return [np.stack([(x * 5 + i * 9) % 256, (y * 7 + i * 5) % 256, np.full_like(x, i * 13 % 256)],
                     axis=-1).astype(np.uint8) for i in range(n)]


def write_frames(folder, frames, ts=TS):
    with FrameWriter(folder, ts) as writer:
        for i, f in enumerate(frames):
            writer.put(i, f)
    return writer


def write_wav(path, seconds=2.0, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


# ---------------------------------------------------------------- names, folders

def test_timestring_and_names(tmp_path):
    ts = make_timestring()
    assert re.fullmatch(r"\d{14}", ts)
    datetime.strptime(ts, "%Y%m%d%H%M%S")
    assert make_timestring(0.0) == datetime.fromtimestamp(0).strftime("%Y%m%d%H%M%S")
    assert frame_path(tmp_path, TS, 7) == tmp_path / f"{TS}_000000007.png"
    assert frame_pattern(tmp_path, TS) == tmp_path / f"{TS}_%09d.png"
    assert settings_path(tmp_path, TS).name == f"{TS}_settings.txt"
    assert video_path(tmp_path, TS).name == f"{TS}.mp4"
    assert manifest_path(tmp_path, TS).name == f"{TS}_manifest.json"
    assert srt_path(tmp_path, TS).name == f"{TS}.srt"


def test_run_dir_creates_batch_folder(tmp_path):
    d = run_dir(tmp_path / "out", "Deforum_" + TS)
    assert d.is_dir() and d == (tmp_path / "out" / ("Deforum_" + TS)).resolve()
    assert os.listdir(d) == []  # the probe file is gone
    assert run_dir(tmp_path / "out", "Deforum_" + TS) == d  # existing folder is fine


@pytest.mark.parametrize("name", ["..", "../escape", "a/../../b", "a\\..\\b", "/abs", "nul\0byte"])
def test_run_dir_refuses_escaping_names(tmp_path, name):
    with pytest.raises(WanError, match="batch_name"):
        run_dir(tmp_path, name)
    assert not (tmp_path.parent / "escape").exists()


def test_run_dir_refuses_symlink_out(tmp_path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(WanError, match="outside"):
        run_dir(tmp_path / "out", "link")


def test_run_dir_refuses_outdir_under_a_file(tmp_path):
    # Fails for root too: nothing can be created below a regular file.
    (tmp_path / "file").write_text("x")
    with pytest.raises(WanError, match="cannot create output folder"):
        run_dir(tmp_path / "file" / "out", "batch")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_run_dir_refuses_read_only_outdir(tmp_path):
    ro = tmp_path / "ro"
    (ro / "batch").mkdir(parents=True)
    (ro / "batch").chmod(0o500)
    try:
        with pytest.raises(WanError, match="not writable"):
            run_dir(ro, "batch")
    finally:
        (ro / "batch").chmod(0o700)


# ---------------------------------------------------------------- atomic writes, settings

def test_write_settings_matches_deforum_format(tmp_path):
    s = {"W": 512, "prompts": {"0": "café, ünïcode ☕", "30": "b"}, "seed": -1, "zeta": None, "alpha": 1.5}
    p = tmp_path / f"{TS}_settings.txt"
    write_settings(p, s)
    assert p.read_bytes() == json.dumps(s, ensure_ascii=False, indent=4).encode("utf-8")
    assert list(json.loads(p.read_text(encoding="utf-8"))) == list(s)  # order kept
    write_settings(p, {"W": 640})  # overwrite in place
    assert json.loads(p.read_text(encoding="utf-8")) == {"W": 640}
    assert leftovers(tmp_path) == []


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object()})  # fails before touching p
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # fails mid-write
    assert json.loads(p.read_text()) == {"a": 1}
    assert leftovers(tmp_path) == []


def test_settings_hash_ignores_key_order():
    assert settings_hash({"a": 1, "b": 2}) == settings_hash({"b": 2, "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})


# ---------------------------------------------------------------- frame writer

@pytest.mark.parametrize("sync", [False, True])
def test_frame_writer_writes_all_frames_atomically(tmp_path, sync):
    frames = synthetic_frames(17, 48, 32)
    with FrameWriter(tmp_path, TS, sync=sync, max_queued=3) as writer:
        for i, f in enumerate(frames):
            writer.put(i, f)
            f[:] = 0  # the caller may reuse its buffer at once
    assert writer.written == 17 and writer.high_water <= 3
    assert sorted(os.listdir(tmp_path)) == [f"{TS}_{i:09}.png" for i in range(17)]
    for i, expected in enumerate(synthetic_frames(17, 48, 32)):
        with Image.open(frame_path(tmp_path, TS, i)) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), expected)


def test_frame_writer_rejects_bad_frames(tmp_path):
    with FrameWriter(tmp_path, TS, sync=True) as writer:
        for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8)):
            with pytest.raises(ValueError):
                writer.put(0, bad)
        for bad_index in (-1, 1.0, True):
            with pytest.raises(ValueError):
                writer.put(bad_index, np.zeros((4, 4, 3), np.uint8))


class GatedWriter(FrameWriter):
    """A real FrameWriter whose disk writes wait for a gate, to hold the queue full."""

    def __init__(self, *args, **kwargs):
        self.gate = threading.Event()
        self.inside = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(self, index, frame):
        self.inside.set()
        self.gate.wait(10)
        super()._write(index, frame)


def test_frame_writer_blocks_when_queue_is_full(tmp_path):
    frame = synthetic_frames(1, 48, 32)[0]
    writer = GatedWriter(tmp_path, TS, max_queued=2)
    writer.put(0, frame)
    assert writer.inside.wait(5)  # frame 0 is being written, the queue is empty
    writer.put(1, frame)
    writer.put(2, frame)  # queue now full
    blocked = threading.Thread(target=writer.put, args=(3, frame))
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive(), "put returned although the queue was full"
    assert writer._queue.qsize() == 2 and writer.high_water == 2
    writer.gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    writer.close()
    assert writer.written == 4 and writer.high_water <= 2
    assert sorted(os.listdir(tmp_path)) == [f"{TS}_{i:09}.png" for i in range(4)]


def test_frame_writer_error_reaches_caller(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    frames = synthetic_frames(3, 16, 16)
    writer = FrameWriter(folder, TS)
    written = threading.Event()
    writer.put(0, frames[0])
    writer.after(written.set)
    assert written.wait(10)
    shutil.rmtree(folder)  # the run folder disappears mid-render
    writer.put(1, frames[1])
    with pytest.raises(WanError, match="could not write to.*1 frames written are kept"):
        writer.close()
    with pytest.raises(WanError):  # sticky: the render cannot miss it
        writer.after(lambda: None)


@pytest.mark.parametrize("sync", [False, True])
def test_frame_writer_after_runs_once_earlier_frames_are_on_disk(tmp_path, sync):
    frames = synthetic_frames(6, 16, 16)
    seen = []
    writer = GatedWriter(tmp_path, TS, max_queued=8, sync=sync)
    writer.gate.set()
    for i in range(3):
        writer.put(i, frames[i])
    writer.after(lambda: seen.append(len(list(tmp_path.glob("*.png")))))
    for i in range(3, 6):
        writer.put(i, frames[i])
    writer.after(lambda: seen.append(len(list(tmp_path.glob("*.png")))))
    writer.close()
    assert seen == [3, 6]
    # an error in a checkpoint is raised like a write error, and sticks
    writer = FrameWriter(tmp_path, TS, sync=sync)
    write_into_missing_folder = lambda: open(tmp_path / "missing" / "manifest.json", "w")  # noqa: E731
    if sync:
        with pytest.raises(WanError, match="could not write to"):
            writer.after(write_into_missing_folder)
    else:
        writer.after(write_into_missing_folder)
    with pytest.raises(WanError, match="could not write to"):
        writer.close()


def test_frame_writer_error_in_sync_mode_and_in_with_block(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    writer = FrameWriter(folder, TS, sync=True)
    shutil.rmtree(folder)
    with pytest.raises(WanError, match="could not write to"):
        writer.put(0, synthetic_frames(1, 8, 8)[0])
    # an error already unwinding the with-block is not replaced by the writer's
    folder.mkdir()
    with pytest.raises(KeyError):
        with FrameWriter(folder, TS) as w:
            w.put(0, synthetic_frames(1, 8, 8)[0])
            raise KeyError("render failed")


# ---------------------------------------------------------------- manifest

def test_manifest_round_trip(tmp_path):
    path = manifest_path(tmp_path, TS)
    m = Manifest(path, TS, settings_hash({"a": 1}))
    m.save()
    assert Manifest.load(path).windows == []
    m.record_window({"index": 0, "start_frame": 0, "end_frame": 81, "seed": 5, "conditioning_frame": None}, 81)
    m.record_window({"index": 1, "start_frame": 81, "end_frame": 160, "seed": 6, "conditioning_frame": 80}, 160)
    m.record_window({"index": 1, "start_frame": 81, "end_frame": 161, "seed": 6, "conditioning_frame": 80}, 161)
    loaded = Manifest.load(path)
    assert [w["index"] for w in loaded.windows] == [0, 1]
    assert loaded.windows[-1]["end_frame"] == 161  # a window recorded again replaces itself
    assert loaded.frames_written == 161 and loaded.status == "running"
    assert loaded.settings_hash == m.settings_hash and loaded.timestring == TS
    loaded.set_status("interrupted")
    data = json.loads(path.read_text())
    assert data["status"] == "interrupted" and set(data) >= {"timestring", "settings_hash", "windows", "frames_written"}
    with pytest.raises(ValueError):
        loaded.set_status("paused")
    assert leftovers(tmp_path) == []


def test_manifest_keeps_unknown_keys_and_rejects_garbage(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"timestring": TS, "windows": [], "frames_written": 0, "status": "done", "plan": [1]}))
    m = Manifest.load(path)
    m.save()
    assert json.loads(path.read_text())["plan"] == [1]
    for bad in ("{not json", json.dumps([1, 2]), json.dumps({"timestring": TS, "windows": [{"i": 0}]}),
                json.dumps({"timestring": TS, "windows": [], "status": "weird"})):
        path.write_text(bad)
        with pytest.raises(WanError, match="manifest"):
            Manifest.load(path)
    with pytest.raises(WanError, match="cannot read manifest"):
        Manifest.load(tmp_path / "missing.json")


# ---------------------------------------------------------------- video

@pytest.mark.parametrize("size,expected", [((48, 32), (48, 32)), ((33, 17), (34, 18))])
def test_make_video_frame_count_fps_size(tmp_path, size, expected):
    write_frames(tmp_path, synthetic_frames(17, *size))
    mp4 = make_video(tmp_path, TS, 15, 17)
    assert mp4 == tmp_path / f"{TS}.mp4"
    info = probe_video(mp4)
    assert info["frames"] == 17 and info["fps"] == 15.0
    assert (info["width"], info["height"]) == expected  # odd sizes padded by one edge pixel
    assert info["codec"] == "h264" and info["audio"] is None
    assert leftovers(tmp_path) == []
    # the picture survives; an odd edge is padded by repeating it, not with black
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(mp4))
    next(reader)  # meta
    first = np.frombuffer(next(reader), np.uint8).reshape(expected[1], expected[0], 3).astype(int)
    reader.close()
    src = np.pad(synthetic_frames(1, *size)[0], ((0, expected[1] - size[1]), (0, expected[0] - size[0]), (0, 0)),
                 mode="edge").astype(int)
    assert np.abs(first - src).mean() < 6
    assert np.abs(first[:, -2:] - src[:, -2:]).mean() < 8 and np.abs(first[-2:] - src[-2:]).mean() < 8


def test_make_video_in_folder_with_percent_sign(tmp_path):
    folder = run_dir(tmp_path, "100%_done %d")
    write_frames(folder, synthetic_frames(3, 16, 16))
    assert probe_video(make_video(folder, TS, 15, 3))["frames"] == 3


def test_make_video_uses_only_n_frames_and_fractional_fps(tmp_path):
    write_frames(tmp_path, synthetic_frames(12, 16, 16))
    info = probe_video(make_video(tmp_path, TS, 12.5, 10))
    assert info["frames"] == 10 and info["fps"] == 12.5


def test_make_video_muxes_soundtrack(tmp_path):
    write_frames(tmp_path, synthetic_frames(17, 48, 32))
    wav = tmp_path / "track.wav"
    write_wav(wav)
    info = probe_video(make_video(tmp_path, TS, 15, 17, soundtrack=str(wav)))
    assert info["audio"] == "aac" and info["frames"] == 17
    assert leftovers(tmp_path) == []


def test_soundtrack_url_is_refused_and_silent_video_kept(tmp_path):
    with pytest.raises(WanError, match="URL.*offline"):
        check_soundtrack("https://example.com/song.mp3")
    with pytest.raises(WanError, match="cannot read soundtrack file .*nope.mp3: No such file"):
        check_soundtrack(tmp_path / "nope.mp3")
    write_frames(tmp_path, synthetic_frames(5, 16, 16))
    with pytest.raises(VideoError, match="URL.*video without sound"):
        make_video(tmp_path, TS, 15, 5, soundtrack="http://example.com/a.mp3")
    assert probe_video(video_path(tmp_path, TS))["frames"] == 5


def test_a_soundtrack_that_is_not_audio_is_refused_when_the_job_is_checked(tmp_path):
    from deforum_wan.render.job import JobSpec, check_job

    wav = tmp_path / "track.wav"
    write_wav(wav, seconds=0.5)
    assert check_soundtrack(wav) == wav
    fake = tmp_path / "notes.wav"
    fake.write_text("these are words, not sound\n" * 50, encoding="utf-8")
    with pytest.raises(WanError, match=r"soundtrack file .*notes.wav is not audio ffmpeg can read \(.+\)$"):
        check_soundtrack(fake)
    job = {"max_frames": 12, "prompts": {"0": "a"}, "wan_model": "tiny-random", "animation_mode": "None", "add_soundtrack": "File"}
    assert check_job(JobSpec(dict(job, soundtrack_path=str(wav))), tmp_path, confine=False).settings.soundtrack
    with pytest.raises(WanError, match="is not audio") as caught:
        check_job(JobSpec(dict(job, soundtrack_path=str(fake))), tmp_path, confine=False)
    assert "\n" not in str(caught.value)


def test_missing_frame_keeps_frames_and_gives_stitch_command(tmp_path):
    write_frames(tmp_path, synthetic_frames(17, 48, 32))
    frame_path(tmp_path, TS, 5).unlink()
    with pytest.raises(VideoError) as err:
        make_video(tmp_path, TS, 15, 17)
    msg = str(err.value)
    assert "\n" not in msg and "000000005.png is missing" in msg and "frames are kept" in msg
    assert f"-start_number 0 -i {tmp_path}/{TS}_%09d.png -frames:v 17 -c:v libx264" in msg
    assert "-pix_fmt yuv420p -crf 17 -preset slow" in msg
    assert len(list(tmp_path.glob(f"{TS}_*.png"))) == 16
    assert not video_path(tmp_path, TS).exists() and leftovers(tmp_path) == []


def test_ffmpeg_failure_keeps_frames_and_gives_stitch_command(tmp_path):
    write_frames(tmp_path, synthetic_frames(4, 16, 16))
    with pytest.raises(VideoError) as err:
        make_video(tmp_path, TS, 15, 4, preset="no-such-preset")
    assert "ffmpeg failed" in str(err.value) and "stitch them by hand run:" in str(err.value)
    assert err.value.command[-1] == str(video_path(tmp_path, TS)) and err.value.stderr
    assert len(list(tmp_path.glob(f"{TS}_*.png"))) == 4
    assert not video_path(tmp_path, TS).exists() and leftovers(tmp_path) == []


def test_probe_video_rejects_non_video(tmp_path):
    p = tmp_path / "x.mp4"
    p.write_text("not a video")
    with pytest.raises(WanError, match="no readable video stream"):
        probe_video(p)


# ---------------------------------------------------------------- subtitles

def test_write_srt_format(tmp_path):
    p = tmp_path / f"{TS}.srt"
    write_srt(p, 15, [(0, 30, "a red fox"), (30, 45, "a blue\nbird  flies"), (45, 3601 * 15, "end")])
    assert p.read_text(encoding="utf-8") == (
        "1\n00:00:00,000 --> 00:00:02,000\na red fox\n\n"
        "2\n00:00:02,000 --> 00:00:03,000\na blue bird flies\n\n"
        "3\n00:00:03,000 --> 01:00:01,000\nend\n")
    with pytest.raises(ValueError):
        write_srt(p, 15, [(5, 5, "empty")])


def test_srt_time_known_values():
    assert srt_time(1, 15) == "00:00:00,066"  # truncated, as Deforum does
    assert srt_time(3, 15) == "00:00:00,200"  # exact (Deforum's Decimal gives 199)
    assert srt_time(1001, 29.97) == "00:00:33,400"
    assert srt_time(100 * 3600 * 24, 24) == "100:00:00,000"


@settings(max_examples=200, deadline=None)
@given(frame=st.integers(0, 10**7), fps=st.sampled_from([8, 12, 15, 16, 23.976, 24, 25, 29.97, 30, 60, 12.5]))
def test_srt_time_is_floor_of_exact_time(frame, fps):
    text = srt_time(frame, fps)
    m = re.fullmatch(r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})", text)
    assert m
    h, mi, s, ms = map(int, m.groups())
    total = ((h * 60 + mi) * 60 + s) * 1000 + ms
    exact = Fraction(frame * 1000) / Fraction(str(fps))
    assert total == math.floor(exact)
    assert srt_time(frame + 1, fps) > text or len(srt_time(frame + 1, fps)) > len(text)
