"""A stand-in for github.com/Wan-Video (import it as ``official_repo``): a real bare git
repository ``Wan2.1`` whose ``wan`` package imports two small packages, and a folder of real
wheels of them for ``pip --no-index --find-links``. Its requirements.txt lists what setup
must skip or keep at the worker's version, as Wan's does."""
from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zipfile
from pathlib import Path

# name -> (version, what it requires)
PACKAGES = {"wantinyalpha": ("1.0", []), "wantinybeta": ("2.0", ["wantinygamma"]), "wantinygamma": ("0.3", [])}
REQUIREMENTS = "torch>=2.4.0\nnumpy>=1.23.5,<2\nwantinyalpha>=1.0\nwantinybeta  # and its dependency\nflash_attn\ngradio>=5.0.0\n"
INIT = "import wantinyalpha\nimport wantinybeta\n\nVERSION = 'fake'\n"


def build_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A real pure-Python wheel: ``name/__init__.py`` and its dist-info with a RECORD."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                     *(f"Requires-Dist: {r}\n" for r in requires)]),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: deforum-wan-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def git(*args, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or Path.cwd())}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_remote(root: Path) -> tuple[Path, str, Path]:
    """(the mirror folder holding the bare ``Wan2.1``, the commit to pin, the wheels folder).
    A later commit sits on top of the pinned one, so a clone of the branch head is not it."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True)
    for name, (version, requires) in PACKAGES.items():
        build_wheel(wheels, name, version, requires)
    work = root / "work"
    (work / "wan").mkdir(parents=True)
    (work / "wan" / "__init__.py").write_text(INIT)
    (work / "requirements.txt").write_text(REQUIREMENTS)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "the pinned one", cwd=work)
    pinned = git("rev-parse", "HEAD", cwd=work)
    (work / "wan" / "__init__.py").write_text(INIT + "LATER = True\n")
    git("commit", "-qam", "a later one", cwd=work)
    mirror = root / "mirror"
    mirror.mkdir()
    git("clone", "-q", "--bare", str(work), str(mirror / "Wan2.1"), cwd=root)
    return mirror, pinned, wheels


def offline_pip(wheels: Path) -> dict:
    """pip settings (environment variables) that install from ``wheels`` only."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
