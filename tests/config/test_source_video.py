"""Deforum's Video Input source: which frames are kept (Deforum's own vid2frames as the
oracle), a real video probed and decoded frame by frame, and every unusable video one line
when the job is checked, before any model loads."""
from __future__ import annotations

import json
import struct
import subprocess

import imageio_ffmpeg
import pytest
from counter_video import read_counter, write_counter_video
from helpers import FIXTURES

from deforum_wan.config.source_video import Extraction, SourceReader, VideoRefused
from deforum_wan.errors import SettingsError
from deforum_wan.render.inputs import PathRefused
from deforum_wan.render.job import JobSpec, check_job

TABLE = json.loads((FIXTURES / "deforum_video_input" / "extraction.json").read_text())["cases"]
JOB = {"prompts": {"0": "a watercolour painting"}, "wan_model": "tiny-random", "animation_mode": "Video Input",
       "max_frames": 500, "fps": 15}


def test_kept_frames_follow_deforums_vid2frames():
    assert len(TABLE) >= 20
    for case in TABLE:
        rule = Extraction(case["extract_from_frame"], case["extract_to_frame"], case["extract_nth_frame"])
        assert rule.kept(case["total"]) == case["source_frames"], case


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "counter.mp4"
    write_counter_video(path, 40, fps=30)
    return path


@pytest.mark.parametrize("case", [c for c in TABLE if c["total"] == 40][::2], ids=lambda c: "from{}-to{}-nth{}".format(
    c["extract_from_frame"], c["extract_to_frame"], c["extract_nth_frame"]))
def test_a_checked_job_renders_one_frame_per_kept_frame(tmp_path, counter_video, case):
    keys = {k: case[k] for k in ("extract_from_frame", "extract_to_frame", "extract_nth_frame")}
    checked = check_job(JobSpec({**JOB, "video_init_path": str(counter_video), **keys}), tmp_path, confine=False)
    video = checked.settings.video_input
    assert list(video.kept) == case["source_frames"]
    assert checked.settings.max_frames == checked.plan.max_frames == len(case["source_frames"])
    assert (video.info.width, video.info.height, video.info.frames, video.info.fps) == (160, 32, 40, 30)
    reader = SourceReader(video.path, 80, 16)  # decoded and stretched
    frames = reader.frames(list(video.kept))
    assert [read_counter(f) for f in frames] == list(video.kept) and frames[0].shape == (16, 80, 3)
    reader.close()


def _avi_claiming(tmp_path, side: int):
    """A real AVI whose headers claim a side x side picture (its data is 64x48)."""
    small = tmp_path / "small.avi"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=red:s=64x48:d=0.2", "-c:v", "rawvideo", "-pix_fmt", "rgb24", str(small)], check=True)
    data = bytearray(small.read_bytes())
    struct.pack_into("<ii", data, data.index(b"strf") + 12, side, side)  # BITMAPINFOHEADER
    struct.pack_into("<II", data, data.index(b"avih") + 40, side, side)  # the main header
    path = tmp_path / f"claims_{side}.avi"
    path.write_bytes(bytes(data))
    return path


def test_every_unusable_video_is_one_line_when_the_job_is_checked(tmp_path, counter_video):
    out = tmp_path / "out"
    out.mkdir()
    corrupt = out / "corrupt.mp4"
    corrupt.write_bytes(bytes(range(256)) * 40)
    empty = out / "empty.y4m"
    empty.write_text("YUV4MPEG2 W64 H64 F30:1 Ip A1:1 C420jpeg\n")  # a valid header, no frame
    cases = {
        _avi_claiming(out, 100_000): "is 100000x100000; at most 8192 px a side",
        _avi_claiming(out, 9000): "is 9000x9000; at most 8192 px a side",
        corrupt: "corrupt.mp4 has no readable video stream",
        empty: "empty.y4m has no frames",
        out / "missing.mp4": "missing.mp4: no such file",
    }
    long = out / "long.mp4"  # two frames, 4000 s apart
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "color=c=blue:s=16x16:r=1/4000", "-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(long)], check=True)
    cases[long] = "long.mp4 lasts 8000 s; at most 3600 s"
    for path, why in cases.items():
        with pytest.raises(SettingsError) as caught:
            check_job(JobSpec({**JOB, "video_init_path": str(path)}), out, confine=False)
        assert why in str(caught.value) and "\n" not in str(caught.value), (path, caught.value)
    # Confined (the tab, the API): a video outside the output and input folders is not read.
    with pytest.raises(PathRefused, match="^<settings>: video_init_path .*counter.mp4.* must name an existing file"
                                          " inside the output folder"):
        check_job(JobSpec({**JOB, "video_init_path": str(counter_video)}), out)
    for keys, why in (({"extract_from_frame": 41}, "none of its 40 frames is kept"),
                      ({"extract_from_frame": 9, "extract_to_frame": 9}, "extract_to_frame 9 must be above"),
                      ({"video_init_path": "https://deforum.github.io/a1/V1.mp4"}, "is a URL")):
        with pytest.raises(SettingsError, match=why):
            check_job(JobSpec({**JOB, "video_init_path": str(counter_video), **keys}), out, confine=False)


def test_a_video_inside_the_output_folder_is_confined_to_its_absolute_path(tmp_path, counter_video):
    (tmp_path / "clips").mkdir()
    inside = tmp_path / "clips" / "source.mp4"
    inside.write_bytes(counter_video.read_bytes())
    checked = check_job(JobSpec({**JOB, "video_init_path": "clips/source.mp4"}), tmp_path)
    assert checked.spec.settings["video_init_path"] == str(inside)
    assert checked.settings.video_input.path == str(inside) and checked.plan.max_frames == 40


def test_a_video_over_the_frame_limit_is_refused_after_counting(tmp_path, counter_video, monkeypatch):
    from deforum_wan.config import source_video

    monkeypatch.setattr(source_video, "MAX_FRAMES", 39)  # the counter video has 40
    with pytest.raises(SettingsError, match="counter.mp4 has 40 frames; at most 39$"):
        check_job(JobSpec({**JOB, "video_init_path": str(counter_video)}), tmp_path, confine=False)


def test_the_reader_decodes_the_video_once_for_windows_that_overlap(counter_video):
    reader = SourceReader(counter_video, 64, 32)
    first = reader.frames([0, 2, 4, 6, 6, 8])
    second = reader.frames([6, 8, 10, 12])  # a continuation window starts inside the last one
    assert [read_counter(f) for f in first + second] == [0, 2, 4, 6, 6, 8, 6, 8, 10, 12]
    assert reader.decoded == 13  # one pass, up to the last frame asked for
    with pytest.raises(ValueError, match="source frame 3 asked for after frame 12 was dropped"):
        reader.frames([3])
    with pytest.raises(VideoRefused, match="counter.mp4 ends before frame 40"):
        reader.frames([39, 40])
    reader.close()
