"""Files a user names: real FIFOs, devices, folders and odd names are refused in one line,
promptly; reads are bounded by bytes read, not by st_size; a damaged job database is one
WanError naming it. Every special file here is real (os.mkfifo, /dev/zero, /proc)."""
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deforum_wan.config.files import FileRefused, read_limited, regular_file
from deforum_wan.config.settings import load_settings, read_settings_file
from deforum_wan.errors import SettingsError, WanError
from deforum_wan.render.loop import load_image
from deforum_wan.render.manifest import Manifest
from deforum_wan.render.video import check_soundtrack
from deforum_wan.service.jobstore import JobStore

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
needs_dev_zero = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")


def promptly(call, fifo: Path | None = None, seconds: float = 20) -> BaseException:
    """The exception ``call()`` raises, or a failure (not a hang) when it blocks: a reader
    stuck on ``fifo`` is freed by opening and closing the FIFO's write end."""
    box = {}

    def run():
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 (handed to the test)
            box["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        pytest.fail(f"{call} blocked for {seconds} s")
    assert "exc" in box, "it did not refuse the file"
    return box["exc"]


@pytest.fixture
def fifo(tmp_path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = tmp_path / "settings.txt"
    os.mkfifo(path)
    return path


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- the helper ---------------------------------------------------------------------------

@needs_fifo
def test_a_fifo_is_refused_without_blocking(fifo):
    exc = promptly(lambda: read_limited(fifo, 100, "settings file"), fifo)
    assert isinstance(exc, FileRefused) and one_line(exc) == "settings file is not a regular file (a FIFO)"
    assert isinstance(promptly(lambda: regular_file(fifo, "x"), fifo), FileRefused)


@needs_dev_zero
def test_dev_zero_and_a_link_to_it_are_refused_before_reading(tmp_path):
    link = tmp_path / "settings.txt"
    link.symlink_to("/dev/zero")
    for path in ("/dev/zero", link):
        exc = promptly(lambda path=path: read_limited(path, 100, "f"))
        assert isinstance(exc, FileRefused) and one_line(exc) == "f is not a regular file (a device)"


def test_folders_missing_files_and_impossible_names(tmp_path):
    cases = [(tmp_path, "is not a regular file (a folder)"), (tmp_path / "nope", "No such file"),
             (str(tmp_path / "a\x00b"), "NUL"), (str(tmp_path / "a\ud800b"), "undecodable"),
             (str(tmp_path / ("a" * 5000)), "File name too long")]
    for path, needle in cases:
        with pytest.raises(FileRefused) as err:
            read_limited(path, 100, "the file")
        assert needle in one_line(err.value), err.value


def test_the_limit_counts_bytes_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, 100, "f") == b"x" * 100
    with pytest.raises(FileRefused, match="^f is larger than 99 bytes$"):
        read_limited(path, 99, "f")


@pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="no /proc")
def test_a_file_whose_size_says_zero_is_still_bounded():
    # /proc files are regular with st_size 0 but hold text: a check of st_size alone passes them.
    assert os.stat("/proc/self/status").st_size == 0
    with pytest.raises(FileRefused, match="larger than 16 bytes"):
        read_limited("/proc/self/status", 16, "f")
    assert b"Name:" in read_limited("/proc/self/status", 1 << 20, "f")


# --- where users name files ----------------------------------------------------------------

@needs_fifo
def test_a_fifo_settings_file_fails_in_one_line(fifo):
    for call in (lambda: read_settings_file(fifo), lambda: load_settings(fifo)):
        exc = promptly(call, fifo)
        assert isinstance(exc, SettingsError)
        assert one_line(exc) == "settings.txt: settings file is not a regular file (a FIFO)"


@needs_dev_zero
def test_dev_zero_as_settings_file_fails_in_one_line(tmp_path):
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")
    exc = promptly(lambda: load_settings(link))
    assert isinstance(exc, SettingsError) and one_line(exc) == "zero.txt: settings file is not a regular file (a device)"


@needs_fifo
def test_init_image_soundtrack_and_manifest_fifos_are_refused(fifo):
    exc = promptly(lambda: load_image(str(fifo), 16, 16), fifo)
    assert isinstance(exc, WanError) and "init_image" in one_line(exc) and "not a regular file" in str(exc)
    exc = promptly(lambda: check_soundtrack(fifo), fifo)
    assert isinstance(exc, WanError) and "soundtrack file" in one_line(exc) and "not a regular file" in str(exc)
    exc = promptly(lambda: Manifest.load(fifo), fifo)
    assert isinstance(exc, WanError) and "manifest" in one_line(exc) and "not a regular file" in str(exc)


def test_init_image_is_still_read_from_a_regular_file(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(path)
    assert load_image("in.png", 4, 4, base=tmp_path).shape == (4, 4, 3)
    long_name = "a" * 300  # longer than a file name may be: was an OSError from Path.exists()
    with pytest.raises(WanError, match="cannot read init_image"):
        load_image(long_name, 4, 4, base=tmp_path)


# --- the job database ----------------------------------------------------------------------

def _damaged_db(tmp_path) -> Path:
    path = tmp_path / "jobs.sqlite"
    store = JobStore(path)
    store.add([(f"job {i}", {"prompts": {"0": "x" * 3000}}, None) for i in range(100)])
    store.close()
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data), 7):  # the header page stays valid; the table pages are noise
        data[i] = (data[i] * 31 + 7) % 256
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("content", [os.urandom(5000), b"SQLite format 3\x00" + os.urandom(5000), None],
                         ids=["garbage", "garbage after the header", "damaged pages"])
def test_a_garbage_job_database_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "jobs.sqlite"
    if content is None:
        path = _damaged_db(tmp_path)
    else:
        path.write_bytes(content)
    with pytest.raises(WanError) as err:
        JobStore(path).list()
    assert not isinstance(err.value, sqlite3.Error)
    assert one_line(err.value).startswith(f"cannot open job database {path}")
    JobStore(tmp_path / "fresh.sqlite").close()  # the lock of the refused one was freed; others open


def test_a_job_record_damaged_later_is_one_line(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    (job_id,) = store.add([("a", {"prompts": {"0": "x"}}, None)])
    raw = sqlite3.connect(tmp_path / "jobs.sqlite")
    raw.execute("UPDATE jobs SET settings = '{not json' WHERE id = ?", (job_id,))
    raw.commit()
    raw.close()
    with pytest.raises(WanError, match=r"stored settings are unreadable \(a damaged row\)"):
        store.settings(job_id)
    store.close()


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_job_database_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / "jobs.sqlite"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs")
        os.mkfifo(path)
    elif kind == "device":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero")
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    exc = promptly(lambda: JobStore(path), path if kind == "fifo" else None)
    assert isinstance(exc, WanError) and one_line(exc).startswith(f"job database {path} is not a regular file")


def test_a_job_database_name_no_file_can_have(tmp_path):
    with pytest.raises(WanError, match="cannot create"):
        JobStore(str(tmp_path / "a\x00b" / "jobs.sqlite"))


def test_names_with_lone_surrogates_are_stored(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    (job_id,) = store.add([("name \udcff", {"prompts": {"0": "x"}}, None)])
    store.update(job_id, error="failed on \ud800")  # an error message may quote one
    job = store.get(job_id)
    assert job["name"] == "name \\udcff" and job["error"] == "failed on \\ud800"
    store.close()
