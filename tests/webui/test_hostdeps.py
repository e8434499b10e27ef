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
    """Stands in for pip: the dry run reports two packages; the install writes them."""

    def __init__(self):
        self.calls = []

    def __call__(self, cmd):
        self.calls.append(cmd)
        if "--dry-run" in cmd:
            report = cmd[cmd.index("--report") + 1]
            with open(report, "w") as f:
                json.dump({"install": [{"metadata": {"name": "diffusers", "version": "0.42.1"}},
                                       {"metadata": {"name": "peft", "version": "0.21.2"}}]}, f)
        else:
            target = cmd[cmd.index("--target") + 1]
            (__import__("pathlib").Path(target) / "diffusers").mkdir(parents=True)


def make_extension(tmp_path):
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    return ext


def test_ensure_installed_then_noop(tmp_path):
    ext, pip = make_extension(tmp_path), FakePip()
    kwargs = dict(python="py", python_version=(3, 11, 7), host=MODERN, run=pip)
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


def test_failed_pip_leaves_the_old_folder(tmp_path):
    ext = make_extension(tmp_path)
    hostdeps.ensure_installed(ext, python="py", python_version=(3, 11), host=MODERN, run=FakePip())

    def broken(cmd):
        raise subprocess.CalledProcessError(1, cmd)

    with pytest.raises(subprocess.CalledProcessError):
        hostdeps.ensure_installed(ext, python="py", python_version=(3, 11), host={**MODERN, "numpy": "2.5.0"},
                                  run=broken)
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
