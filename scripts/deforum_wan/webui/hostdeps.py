"""Which libraries the render worker gets inside a WebUI, and where (pure; install.py runs it).

A1111 v1.10 ships transformers 4.30 and no diffusers; Forge ships diffusers 0.31: both too old
for Wan. The worker's libraries therefore go into a private folder, ``<extension>/.wan-packages``,
which only the worker sees (``PYTHONPATH``, see ``worker_env``). The WebUI's own packages are never
changed: pip resolves the pins against the WebUI's environment with its torch and numpy pinned
(a constraints file), and only what that environment lacks, or has at another version, is
installed into the folder, without dependencies. A marker file records what was installed for
which host (its Python and the versions of the host packages the worker takes from the WebUI:
its GPU stack, numpy, and only those of its own libraries the folder did not get), so later
launches are a no-op, whatever else is installed into the WebUI meanwhile (another extension
installing one of the libraries the folder holds changes nothing the worker imports).
The first install says in the console what it does, package by package.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Callable

PACKAGES_DIR = ".wan-packages"
MARKER = "installed.json"
MARKER_VERSION = 1
# What the worker imports beyond the host's torch/numpy/Pillow.
WORKER_PACKAGES = ("diffusers", "transformers", "accelerate", "huggingface_hub", "safetensors", "gguf",
                   "tokenizers", "ftfy", "imageio-ffmpeg", "opencv-python-headless")
# Never installed into the folder: changing them would mean GBs of downloads and a second copy
# of the host's GPU stack. They are pinned to the host's versions for the resolver instead.
HOST_PINNED = ("torch", "torchvision", "torchaudio", "xformers", "numpy", "triton")
_NEVER_PREFIXES = ("nvidia-",)
MIN_TORCH = (2, 1)

# Pins per host (checked by resolving against each host with pip): diffusers >= 0.36 for Wan 2.2's
# two experts; diffusers 0.42 / transformers 5.23 need Python >= 3.11 and torch >= 2.6.
PINS_PY310_TORCH26 = {"diffusers": "0.41.0", "transformers": "5.20.2", "huggingface_hub": "1.33.0"}
PINS_TORCH21 = {"diffusers": "0.36.0", "transformers": "4.57.1", "accelerate": "1.15.0",
                "huggingface_hub": "0.36.2", "safetensors": "0.8.0", "tokenizers": "0.22.2"}
OPENCV_NUMPY1 = "4.11.0.86"  # opencv 5 needs numpy >= 2
# The one cv2 module under four names: A1111 and Forge ship opencv-python (Forge also -contrib)
# at the worker's numpy-1 pin, and pip, seeing another name, would put a second 140 MB copy of
# the same build into the folder. Where the host has the pinned build the worker shares it.
OPENCV = ("opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless")
# diffusers imports these when they are importable at all, so an old copy in the host breaks
# the worker (A1111 and Forge ship kornia 0.6, whose API diffusers' guiders no longer match).
# peft: diffusers loads LoRAs through it (>= 0.17). The worker gets these versions whenever the
# host has the package (kornia) or always (peft).
OPTIONAL_IF_HOST_HAS = {"kornia": "0.8.2"}
ALWAYS_EXTRA = {"peft": "0.21.2"}
# Build tools pip may list: the worker never imports them, and a copy would shadow the host's.
NOT_INTO_FOLDER = ("setuptools", "pip", "wheel")


class HostDepsError(Exception):
    """The host cannot run the worker (one line: what to change)."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# What the worker always takes from the host (its GPU stack, numpy) or decides the pins by (the
# optional packages' presence): a change in any of them means resolving again.
FROM_HOST = tuple(dict.fromkeys(canonical(n) for n in (*HOST_PINNED, *OPTIONAL_IF_HOST_HAS)))
# The worker's own libraries: taken from the host only where the host had the pinned version
# (the folder did not get them); the marker then records the host's version.
WORKER_OWN = tuple(dict.fromkeys(canonical(n) for n in (*WORKER_PACKAGES, *OPENCV, *ALWAYS_EXTRA,
                                                         *OPTIONAL_IF_HOST_HAS)))
WATCHED = tuple(dict.fromkeys((*FROM_HOST, *WORKER_OWN)))  # the host versions read at launch


def version_tuple(text: str | None) -> tuple[int, ...]:
    """'2.1.2+cu121' -> (2, 1, 2); None or garbage -> ()."""
    parts = []
    for piece in re.split(r"[.+-]", str(text or "")):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def read_requirements(path: str | os.PathLike) -> dict[str, str]:
    """``name==version`` lines of requirements.txt (comments and others ignored)."""
    pins = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, version = line.partition("==")
        if sep and name and version:
            pins[canonical(name)] = version.strip()
    return pins


def choose_pins(python: tuple[int, ...], host: dict[str, str], requirements: dict[str, str]) -> dict[str, str]:
    """Worker package -> version for this host.

    ``host``: the WebUI's installed versions (canonical names); ``requirements``: our
    requirements.txt pins (used as they are on Python >= 3.11 with torch >= 2.6).
    """
    torch = version_tuple(host.get("torch"))
    if not torch:
        raise HostDepsError("torch is not installed in this WebUI's environment")
    if torch[:2] < MIN_TORCH:
        raise HostDepsError(f"the Wan worker needs torch >= {'.'.join(map(str, MIN_TORCH))}; this WebUI has"
                            f" {host['torch']}: update the WebUI's torch first")
    if python[:2] < (3, 10):
        raise HostDepsError(f"the Wan worker needs Python >= 3.10; this WebUI runs {'.'.join(map(str, python))}")
    pins = {canonical(p): requirements[canonical(p)] for p in WORKER_PACKAGES if canonical(p) in requirements}
    missing = [p for p in WORKER_PACKAGES if canonical(p) not in pins]
    if missing:
        raise HostDepsError(f"requirements.txt has no pin for {', '.join(missing)}")
    if torch[:2] < (2, 6):  # transformers 5 / diffusers >= 0.40 disable torch < 2.6
        pins.update({canonical(k): v for k, v in PINS_TORCH21.items()})
    elif python[:2] < (3, 11):
        pins.update({canonical(k): v for k, v in PINS_PY310_TORCH26.items()})
    if version_tuple(host.get("numpy"))[:1] < (2,):
        pins["opencv-python-headless"] = OPENCV_NUMPY1
    if any(host.get(name) == pins["opencv-python-headless"] for name in OPENCV):
        del pins["opencv-python-headless"]  # the host's cv2 is that build
    pins.update({canonical(k): v for k, v in ALWAYS_EXTRA.items()})
    pins.update({canonical(k): v for k, v in OPTIONAL_IF_HOST_HAS.items() if host.get(canonical(k))})
    return pins


def constraints(host: dict[str, str]) -> list[str]:
    """Lines of the constraints file: the host's GPU stack and numpy stay as they are."""
    return [f"{name}=={host[name]}" for name in HOST_PINNED if host.get(name)]


def to_install(report: dict) -> list[str]:
    """``name==version`` for each package a ``pip install --dry-run --report`` would install."""
    out = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = canonical(meta.get("name", "")), meta.get("version", "")
        if not name or not version:
            continue
        if name in NOT_INTO_FOLDER:
            continue
        if name in HOST_PINNED or name.startswith(_NEVER_PREFIXES):
            raise HostDepsError(f"resolving the worker's libraries wanted to change {name} to {version};"
                                " nothing was installed")
        out.append(f"{name}=={version}")
    return sorted(out)


def marker_data(python: tuple[int, ...], host: dict[str, str], pins: dict[str, str],
                installed: tuple[str, ...] | list[str] = ()) -> dict:
    """What the folder was made for: the Python, the host's versions of what the worker takes
    from the host (its GPU stack, numpy, the optional packages, and the worker's own libraries
    the folder did not get: ``installed`` names those it got), and our pins. Nothing else: an
    unrelated install, or one of a library the folder holds, changes none of it."""
    own = {canonical(name.partition("==")[0]) for name in installed}
    taken = {k: v for k, v in host.items() if k in FROM_HOST or (k in WORKER_OWN and k not in own)}
    return {"version": MARKER_VERSION, "python": ".".join(map(str, python[:2])),
            "host": dict(sorted(taken.items())), "pins": dict(sorted(pins.items()))}


def _read_marker(folder: str | os.PathLike) -> dict | None:
    try:
        found = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and isinstance(found.get("host"), dict) else None


def _host_changes(recorded: dict[str, str], host: dict[str, str]) -> list[str]:
    """What the worker takes from the host and is not as recorded: the packages the marker
    records, and the host's GPU stack and optional packages (one may have appeared)."""
    names = set(recorded) | {k for k in FROM_HOST if k in host}
    return [f"{k} {recorded.get(k, 'absent')} -> {host.get(k, 'absent')}" for k in sorted(names)
            if recorded.get(k) != host.get(k)]


def stale_reason(folder: str | os.PathLike, host: dict[str, str]) -> str | None:
    """Why the folder no longer fits this host (``numpy 1.26.2 -> 2.1.0``), or None: checked
    when the WebUI loads the tab, after every extension's installer has run."""
    found = _read_marker(folder)
    if found is None:
        return "the worker's packages are not installed"
    return ", ".join(_host_changes(found["host"], host)) or None


def is_satisfied(folder: str | os.PathLike, python: tuple[int, ...], host: dict[str, str],
                 pins: dict[str, str]) -> bool:
    """True when ``folder`` holds an install made for this Python and these pins, and what the
    worker takes from the host is as it was then."""
    found = _read_marker(folder)
    wanted = marker_data(python, host, pins)
    return (found is not None and found.get("version") == MARKER_VERSION and found.get("python") == wanted["python"]
            and found.get("pins") == wanted["pins"] and not _host_changes(found["host"], host))


def write_marker(folder: str | os.PathLike, data: dict) -> None:
    path = Path(folder) / MARKER
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def packages_dir(extension_dir: str | os.PathLike) -> Path:
    return Path(extension_dir) / PACKAGES_DIR


def worker_env(extension_dir: str | os.PathLike, base: dict | None = None) -> dict:
    """The worker's environment: its private packages first, then the core package (scripts/)."""
    env = dict(os.environ if base is None else base)
    ext = Path(extension_dir)
    paths = [str(packages_dir(ext)), str(ext / "scripts")]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def host_versions(names=WATCHED) -> dict[str, str]:
    """Installed versions in this interpreter's environment (absent packages left out)."""
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[canonical(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def pip_base(python: str, index_url: str | None = None) -> list[str]:
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--prefer-binary"]
    return cmd + (["--index-url", index_url] if index_url else [])


def run_command(cmd: list[str], on_line: Callable[[str], None] | None = None) -> None:
    """Run ``cmd``; raises CalledProcessError on failure. ``on_line`` gets each line of its
    output as it comes (pip's, for the console's progress), else the output goes to the console."""
    if on_line is None:
        subprocess.run(cmd, check=True)
        return
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                          stdin=subprocess.DEVNULL) as proc:
        for line in proc.stdout:
            on_line(line.rstrip("\n"))
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


class PipProgress:
    """pip's output during the install as console lines, package by package: ``[3/25] diffusers
    0.36.0`` as pip collects each, the size of each wheel it downloads, then the unpacking;
    pip's warnings and errors are passed on as they are."""

    def __init__(self, packages: list[str], say: Callable[[str], None]):
        self.total, self.say, self.seen = len(packages), say, 0

    def __call__(self, line: str) -> None:
        text = line.strip()
        if text.startswith("Collecting "):
            self.seen += 1
            name, _, version = text.split()[1].partition("==")
            self.say(f"[{self.seen}/{self.total}] {name} {version}".rstrip())
        elif text.startswith("Downloading ") and ".whl.metadata" not in text and "(" in text:
            self.say(f"  downloading {text.split()[1].rsplit('/', 1)[-1]} ({text.rsplit('(', 1)[1]}")
        elif text.startswith("Installing collected packages"):
            self.say(f"unpacking the {self.total} packages (this takes a minute)")
        elif text.startswith(("ERROR", "WARNING")):
            self.say(text)


def _print(line: str) -> None:
    print(f"deforum-wan: {line}", flush=True)


def ensure_installed(extension_dir: str | os.PathLike, *, python: str, python_version: tuple[int, ...],
                     host: dict[str, str], run=run_command, index_url: str | None = None,
                     say: Callable[[str], None] = _print) -> str:
    """Fill ``<extension>/.wan-packages`` for this host unless its marker already fits.

    ``run(cmd, on_line=None)`` runs a command, raises on failure and hands its output lines to
    ``on_line`` when given (``run_command``). ``say`` gets the console's progress lines. Returns
    one line saying what was done. Raises ``HostDepsError``.
    """
    ext = Path(extension_dir)
    pins = choose_pins(python_version, host, read_requirements(ext / "requirements.txt"))
    target = packages_dir(ext)
    if is_satisfied(target, python_version, host, pins):
        return ""
    work = ext / (PACKAGES_DIR + ".new")
    _remove(work)
    work.mkdir(parents=True)
    (work / "constraints.txt").write_text("\n".join(constraints(host)) + "\n", encoding="utf-8")
    report_file = work / "report.json"
    requirements = [f"{name}=={version}" for name, version in sorted(pins.items())]
    said_host = ", ".join(f"{k} {host[k]}" for k in ("torch", "numpy") if host.get(k))
    say(f"choosing the Wan worker's libraries for this WebUI ({said_host}, Python"
        f" {'.'.join(map(str, python_version[:3]))}); pip resolves {len(requirements)} pins")
    # Resolve against the WebUI's environment: what it already has at a fitting version is not installed.
    run(pip_base(python, index_url) + ["--dry-run", "--quiet", "--report", str(report_file),
                                       "-c", str(work / "constraints.txt")] + requirements)
    packages = to_install(json.loads(report_file.read_text(encoding="utf-8")))
    if packages:
        say(f"installing {len(packages)} packages into {target} (the WebUI's own are not changed)")
        run(pip_base(python, index_url) + ["--no-deps", "--progress-bar", "off", "--target", str(work / "lib")]
            + packages, on_line=PipProgress(packages, say))
    lib = work / "lib"
    lib.mkdir(exist_ok=True)
    write_marker(lib, marker_data(python_version, host, pins, packages))
    _remove(target)
    os.replace(lib, target)  # the folder appears complete or not at all
    _remove(work)
    return f"installed {len(packages)} packages for the Wan worker into {target}"


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
