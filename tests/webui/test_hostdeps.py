"""Pins for the worker's private libraries in a WebUI, the marker that makes install.py a
no-op, and install.py itself on a fake host (no network: pip is a stand-in)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from helpers import ROOT

from deforum_wan.webui import hostdeps
from deforum_wan.webui.hostdeps import HostDepsError, choose_pins, read_requirements

REQ = read_requirements(ROOT / "requirements.txt")
A1111 = {"torch": "2.1.2+cu121", "torchvision": "0.16.2+cu121", "numpy": "1.26.2", "kornia": "0.6.7"}
FORGE = {"torch": "2.3.1+cu121", "numpy": "1.26.2", "kornia": "0.6.7"}
MODERN = {"torch": "2.13.0+cpu", "numpy": "2.4.6"}


def test_python311_with_new_torch_uses_requirements_txt():
    pins = choose_pins((3, 11, 7), MODERN, REQ)
    for name in hostdeps.WORKER_PACKAGES:
        assert pins[hostdeps.canonical(name)] == REQ[hostdeps.canonical(name)]
    assert "kornia" not in pins and pins["peft"]


def test_python310_with_new_torch_gets_a_pair_that_supports_310():
    pins = choose_pins((3, 10, 13), {"torch": "2.7.1", "numpy": "2.2.0"}, REQ)
    assert (pins["diffusers"], pins["transformers"]) == ("0.41.0", "5.20.2")
    assert pins["opencv-python-headless"] == REQ["opencv-python-headless"]


@pytest.mark.parametrize("host", [A1111, FORGE], ids=["a1111-default", "forge-default"])
def test_the_webuis_default_torch_gets_transformers_4(host):
    pins = choose_pins((3, 10, 13), host, REQ)
    assert pins["transformers"].startswith("4.") and pins["diffusers"] == "0.36.0"
    assert pins["opencv-python-headless"] == hostdeps.OPENCV_NUMPY1  # numpy 1 host
    assert pins["kornia"] == "0.8.2"  # the host's old kornia would break diffusers' import


@pytest.mark.parametrize("name", ["opencv-python", "opencv-contrib-python"])
def test_the_hosts_own_build_of_the_pinned_opencv_is_shared_not_copied(tmp_path, name):
    """A1111 and Forge ship opencv-python 4.11.0.86, the numpy-1 pin under another name: the
    worker imports the host's cv2 (nothing asks pip for it), and the marker watches it."""
    host = {**A1111, name: hostdeps.OPENCV_NUMPY1}
    pins = choose_pins((3, 10, 13), host, REQ)
    assert "opencv-python-headless" not in pins
    other = {**A1111, name: "4.8.0.76"}  # another build: the worker gets its own copy
    assert choose_pins((3, 10, 13), other, REQ)["opencv-python-headless"] == hostdeps.OPENCV_NUMPY1
    ext = make_extension(tmp_path)
    kwargs = dict(python="py", python_version=(3, 10, 13), run=FakePip([("diffusers", "0.36.0")]),
                  say=lambda line: None)
    hostdeps.ensure_installed(ext, host=host, **kwargs)
    requested = [arg for call in kwargs["run"].calls for arg in call if "==" in arg]
    assert requested and not any(arg.startswith("opencv") for arg in requested)
    moved = {**host, name: "4.12.0.88"}
    assert hostdeps.stale_reason(ext / ".wan-packages", moved) == f"{name} {hostdeps.OPENCV_NUMPY1} -> 4.12.0.88"


@pytest.mark.parametrize("host,python,message", [
    ({"numpy": "1.26.2"}, (3, 10), "torch is not installed"),
    ({"torch": "2.0.1", "numpy": "1.26.2"}, (3, 10), "needs torch >= 2.1"),
    ({"torch": "2.4.0", "numpy": "1.26.2"}, (3, 9), "needs Python >= 3.10"),
])
def test_unsupported_hosts_say_what_to_change(host, python, message):
    with pytest.raises(HostDepsError, match=message):
        choose_pins(python, host, REQ)


def test_constraints_pin_the_hosts_gpu_stack():
    assert hostdeps.constraints(A1111) == ["torch==2.1.2+cu121", "torchvision==0.16.2+cu121", "numpy==1.26.2"]


def test_report_parsing_refuses_to_touch_the_host():
    report = {"install": [{"metadata": {"name": "Diffusers", "version": "0.42.1"}},
                          {"metadata": {"name": "huggingface_hub", "version": "2.4.0"}},
                          {"metadata": {"name": "setuptools", "version": "80.0"}}]}
    # build tools stay out of the private folder (a copy would shadow the WebUI's own)
    assert hostdeps.to_install(report) == ["diffusers==0.42.1", "huggingface-hub==2.4.0"]
    for bad in ("torch", "numpy", "nvidia-cudnn-cu12"):
        with pytest.raises(HostDepsError, match=bad):
            hostdeps.to_install({"install": [{"metadata": {"name": bad, "version": "9"}}]})


def test_worker_env_puts_the_private_folder_first(tmp_path):
    env = hostdeps.worker_env(tmp_path, {"PYTHONPATH": "host"})
    assert env["PYTHONPATH"].split(":" if sys.platform != "win32" else ";") == [
        str(tmp_path / ".wan-packages"), str(tmp_path / "scripts"), "host"]


class FakePip:
    """Stands in for pip: the dry run reports ``packages``; the install writes them and says what
    pip (24+, output not a terminal) says while it collects, downloads and installs them."""

    def __init__(self, packages=(("diffusers", "0.42.1"), ("peft", "0.21.2"))):
        self.packages = list(packages)
        self.calls = []

    def __call__(self, cmd, on_line=None):
        self.calls.append(cmd)
        if "--dry-run" in cmd:
            report = cmd[cmd.index("--report") + 1]
            with open(report, "w") as f:
                json.dump({"install": [{"metadata": {"name": n, "version": v}} for n, v in self.packages]}, f)
            return
        target = __import__("pathlib").Path(cmd[cmd.index("--target") + 1])
        asked = [tuple(arg.split("==")) for arg in cmd[cmd.index("--target") + 2:]]  # pip's order: the command's
        lines = []
        for name, version in asked:
            lines += [f"Collecting {name}=={version}",
                      f"  Downloading {name}-{version}-py3-none-any.whl.metadata (20 kB)"]
        lines += [f"Downloading {name}-{version}-py3-none-any.whl (1.5 MB)" for name, version in asked]
        lines += [f"Installing collected packages: {', '.join(n for n, _ in asked)}", "Successfully installed"]
        for line in lines:
            if on_line is not None:
                on_line(line)
        for name, _ in asked:
            (target / name).mkdir(parents=True)


def make_extension(tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    return ext


def test_ensure_installed_then_noop(tmp_path):
    ext, pip = make_extension(tmp_path), FakePip()
    kwargs = dict(python="py", python_version=(3, 11, 7), host=MODERN, run=pip, say=lambda line: None)
    line = hostdeps.ensure_installed(ext, **kwargs)
    assert line.startswith("installed 2 packages") and (ext / ".wan-packages" / "diffusers").is_dir()
    dry, install = pip.calls
    assert "-c" in dry and "--no-deps" in install and "--target" in install
    assert install[-2:] == ["diffusers==0.42.1", "peft==0.21.2"]
    constraints = (tmp_path / "ext" / ".wan-packages.new").exists()
    assert not constraints  # the work folder is gone
    assert hostdeps.ensure_installed(ext, **kwargs) == "" and len(pip.calls) == 2  # satisfied: no pip
    unrelated = {**MODERN, "gitpython": "3.1.40"}  # another extension's install: no reinstall
    assert hostdeps.ensure_installed(ext, **{**kwargs, "host": unrelated}) == "" and len(pip.calls) == 2
    assert hostdeps.stale_reason(ext / ".wan-packages", unrelated) is None
    moved = {**MODERN, "numpy": "2.5.0"}  # what the worker uses from the host changed: resolved again
    assert hostdeps.stale_reason(ext / ".wan-packages", moved) == f"numpy {MODERN['numpy']} -> 2.5.0"
    hostdeps.ensure_installed(ext, **{**kwargs, "host": moved})
    assert len(pip.calls) == 4


def test_a_library_the_folder_holds_installed_into_the_host_changes_nothing(tmp_path):
    """Another extension (Deforum) installs imageio-ffmpeg, one of the worker's own libraries,
    into the WebUI: the worker imports the folder's copy, so nothing is installed again. A
    library the worker takes from the host (the host had the pinned version) does count."""
    ext = make_extension(tmp_path)
    pip = FakePip([("diffusers", "0.42.1"), ("imageio-ffmpeg", REQ["imageio-ffmpeg"])])
    host = {**MODERN, "safetensors": REQ["safetensors"]}  # the host's copy fits: not in the folder
    kwargs = dict(python="py", python_version=(3, 11, 7), run=pip, say=lambda line: None)
    assert hostdeps.ensure_installed(ext, host=host, **kwargs).startswith("installed 2 packages")
    marker = json.loads((ext / ".wan-packages" / hostdeps.MARKER).read_text())
    assert marker["host"] == {**MODERN, "safetensors": REQ["safetensors"]}
    with_deforum = {**host, "imageio-ffmpeg": "0.4.9", "diffusers": "0.31.0"}
    assert hostdeps.stale_reason(ext / ".wan-packages", with_deforum) is None
    assert hostdeps.ensure_installed(ext, host=with_deforum, **kwargs) == "" and len(pip.calls) == 2
    moved = {**with_deforum, "safetensors": "0.4.0"}  # the worker imports the host's copy: resolved again
    assert hostdeps.stale_reason(ext / ".wan-packages", moved) == f"safetensors {REQ['safetensors']} -> 0.4.0"
    appeared = {**with_deforum, "kornia": "0.6.7"}  # an optional package appeared: the pins change
    assert hostdeps.stale_reason(ext / ".wan-packages", appeared) == "kornia absent -> 0.6.7"
    hostdeps.ensure_installed(ext, host=moved, **kwargs)
    assert len(pip.calls) == 4


def test_the_first_install_says_what_it_does_package_by_package(tmp_path):
    ext, said = make_extension(tmp_path), []
    pip = FakePip([("diffusers", "0.42.1"), ("transformers", "5.23.0"), ("peft", "0.21.2")])
    hostdeps.ensure_installed(ext, python="py", python_version=(3, 11, 7), host=MODERN, run=pip, say=said.append)
    target = ext / ".wan-packages"
    assert said == [
        f"choosing the Wan worker's libraries for this WebUI (torch {MODERN['torch']}, numpy {MODERN['numpy']},"
        f" Python 3.11.7); pip resolves {len(pip.calls[0]) - pip.calls[0].index('-c') - 2} pins",
        f"installing 3 packages into {target} (the WebUI's own are not changed)",
        "[1/3] diffusers 0.42.1", "[2/3] peft 0.21.2", "[3/3] transformers 5.23.0",  # sorted: pip's order
        "  downloading diffusers-0.42.1-py3-none-any.whl (1.5 MB)",
        "  downloading peft-0.21.2-py3-none-any.whl (1.5 MB)",
        "  downloading transformers-5.23.0-py3-none-any.whl (1.5 MB)",
        "unpacking the 3 packages (this takes a minute)",
    ]
    assert "--quiet" not in pip.calls[1] and pip.calls[1][-3:] == ["diffusers==0.42.1", "peft==0.21.2",
                                                                    "transformers==5.23.0"]


def test_run_command_hands_over_each_line_and_raises_on_failure():
    lines = []
    hostdeps.run_command([sys.executable, "-c", "print('Collecting a==1'); print('done')"], on_line=lines.append)
    assert lines == ["Collecting a==1", "done"]
    with pytest.raises(subprocess.CalledProcessError):
        hostdeps.run_command([sys.executable, "-c", "print('ERROR: no'); raise SystemExit(2)"], on_line=lines.append)
    assert lines[-1] == "ERROR: no"


def test_failed_pip_leaves_the_old_folder(tmp_path):
    ext = make_extension(tmp_path)
    hostdeps.ensure_installed(ext, python="py", python_version=(3, 11), host=MODERN, run=FakePip(),
                              say=lambda line: None)

    def broken(cmd, on_line=None):
        raise subprocess.CalledProcessError(1, cmd)

    with pytest.raises(subprocess.CalledProcessError):
        hostdeps.ensure_installed(ext, python="py", python_version=(3, 11), host={**MODERN, "numpy": "2.5.0"},
                                  run=broken, say=lambda line: None)
    assert (ext / ".wan-packages" / "diffusers").is_dir()


def test_install_py_is_a_fast_noop_when_satisfied(tmp_path):
    # A copy of the extension whose marker matches this interpreter: install.py must not run pip.
    ext = tmp_path / "ext"
    (ext / "scripts").mkdir(parents=True)
    (ext / "install.py").write_text((ROOT / "install.py").read_text())
    (ext / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    (ext / "scripts" / "deforum_wan").symlink_to(ROOT / "scripts" / "deforum_wan")
    host = hostdeps.host_versions()
    if "torch" not in host:
        pytest.skip("torch is not installed here")
    pins = choose_pins(sys.version_info[:3], host, REQ)
    folder = ext / ".wan-packages"
    folder.mkdir()
    hostdeps.write_marker(folder, hostdeps.marker_data(sys.version_info[:3], host, pins))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ext / "install.py")], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
    assert elapsed < 1.0  # interpreter start included; measured about 0.06 s in the WebUIs
