"""The tab's video: an upload kept in the output folder like the init image's (a non-video and a
server path refused), the video and control fields written into the settings, and the plan's
preview of each window's source segment decoded from the video (the counter drawn into each
frame read back from the strip's images)."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from counter_video import read_counter, write_counter_video
from PIL import Image

from deforum_wan.webui.fields import FIELDS, fields_to_settings, settings_to_fields
from deforum_wan.webui.source_strip import strip_frames
from deforum_wan.webui.tab_handlers import WanTab


def upload(path) -> str:
    """``path`` as the browser hands it over: a copy in gradio's upload folder."""
    import shutil
    import uuid

    from deforum_wan.webui.gradio_compat import upload_folder

    folder = upload_folder() / f"test-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    return str(shutil.copy(path, folder / path.name))


BASE = {"prompts": {"0": "a watercolour"}, "W": 160, "H": 32, "seed": 7, "seed_behavior": "fixed",
        "color_coherence": "None", "fps": 16, "wan_clip_duration": 1, "wan_backend": "diffusers", "wan_camera": "off"}


@pytest.fixture
def tab(tmp_path):
    from types import SimpleNamespace

    return WanTab(SimpleNamespace(outdir=tmp_path / "out", models_dir=str(tmp_path / "models")))  # nothing submitted


def _values(tab, settings: dict) -> list:
    return [settings_to_fields(settings)[name] for name in FIELDS]


def test_a_video_upload_is_kept_in_the_output_folder_and_other_files_are_refused(tab, tmp_path):
    video = tmp_path / "clip.mp4"
    write_counter_video(video, 5)
    name, status = tab.uploaded_video(upload(video))
    kept = tab.outdir.resolve() / name
    assert kept.parent == tab.outdir.resolve() / "wan-uploads" and kept.read_bytes() == video.read_bytes()
    assert status == f"uploaded as {name} (in the output folder)"
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    assert tab.uploaded_video(upload(text))[1].startswith("error: the uploaded video notes.txt is not a video file")
    assert tab.uploaded_video(str(video))[1].startswith("error: clip.mp4: only uploaded files")


def test_the_video_field_is_video_inputs_source_or_with_a_kind_the_control_video():
    fields = {**settings_to_fields({"animation_mode": "Video Input"}), "video_path": "a.mp4"}
    assert fields_to_settings(fields, {"animation_mode": "Video Input"})["video_init_path"] == "a.mp4"
    out = fields_to_settings({**fields, "control": "depth"}, {"animation_mode": "Video Input"})
    assert out["video_init_path"] == "a.mp4" and out["wan_control"] == {"kind": "depth", "video": "a.mp4", "weight": 1.0}
    shown = settings_to_fields({"animation_mode": "2D", "wan_control": "canny:b.mp4"})
    assert (shown["video_path"], shown["control"]) == ("b.mp4", "canny")
    kept = {"animation_mode": "2D", "wan_control": {"kind": "canny", "video": "b.mp4", "weight": 0.4}}
    out = fields_to_settings(settings_to_fields(kept), kept)
    assert {k: out[k] for k in kept} == kept and "video_init_path" not in out  # unchanged: the file as it was
    assert fields_to_settings({**settings_to_fields(kept), "control": "none"}, kept)["wan_control"] is None


def _strip(html: str) -> list[tuple[int, list[int], list[int]]]:
    """(window, frames named, counters read from the images) per strip row."""
    rows = []
    for window, frames, body in re.findall(r'data-window="(\d+)" data-frames="([\d,]+)">(.*?)</div>', html):
        images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(b)))) for b in
                  re.findall(r'src="data:image/png;base64,([^"]+)"', body)]
        rows.append((int(window), [int(f) for f in frames.split(",")], [read_counter(i) for i in images]))
    return rows


@pytest.mark.parametrize("mode", ["video input", "control"])
def test_plan_previews_each_windows_source_segment(tab, tmp_path, mode):
    video = tmp_path / "out" / "counter.mp4"
    video.parent.mkdir(parents=True)
    write_counter_video(video, 40, fps=30)
    if mode == "video input":
        settings = {**BASE, "wan_model": "tiny-random", "animation_mode": "Video Input", "video_init_path": str(video),
                    "extract_nth_frame": 2}
    else:
        settings = {**BASE, "wan_model": "tiny-random-vace", "max_frames": 30, "animation_mode": "None",
                    "wan_control": {"kind": "canny", "video": "counter.mp4"}}
    text, view, status = tab.plan(*_values(tab, settings), settings, [])
    assert status.startswith("plan: "), status
    windows = re.findall(r"^\s+(\d+)\s+\d+ (?:v2v|t2v|i2v)", text, re.M)
    rows = _strip(view)
    assert [r[0] for r in rows] == [int(w) for w in windows] and len(rows) >= 2
    checked = tab._check(settings, "tab").plan
    for (index, frames, counters), w in zip(rows, checked.windows, strict=True):
        assert frames == strip_frames(w.source_frames) and frames[0] == w.source_frames[0]
        assert frames[-1] == w.source_frames[-1] and counters == frames  # the images are those frames
    assert ("Video Input source per window" if mode == "video input" else "canny control video per window") in view


def test_strip_frames_keep_the_first_and_last():
    assert strip_frames([3, 4]) == [3, 4]
    assert strip_frames(list(range(10, 30))) == [10, 16, 23, 29]
