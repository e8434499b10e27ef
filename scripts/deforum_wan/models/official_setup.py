"""Set up, update, remove and check the official Wan code (``python -m deforum_wan official``
and the tab's buttons).

Setup clones Wan-Video/Wan2.1 or Wan2.2 at the pinned commit (official_code.CODES) into the
models folder and installs what its requirement files list into ``packages`` beside the clone.
pip runs in the render worker's Python and environment (in a WebUI: the WebUI's Python with the
worker's private packages on PYTHONPATH), resolving against it with the worker's GPU stack and
numpy held as they are, and installs only what the worker lacks, with ``--target``: nothing goes
into the WebUI's own site-packages. The backend appends that folder to the worker's sys.path
behind everything else, so the worker's own libraries always win.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from ..errors import WanError
from .official_code import MARKER, OfficialCode, head_commit, home, packages_dir, read_marker, repo_dir, source_url

# say(text, fraction): a progress line, with how far the step is (0..1) when known.
Say = Callable[[str, "float | None"], None]
# Requirements never installed, and why (said in the result line).
SKIPPED = {
    "flash-attn": "flash-attn (needs a CUDA build; PyTorch SDPA replaces it)",
    "gradio": "gradio (Wan's own demo page; the wan package does not import it)",
}
# The worker's own: kept at its versions (their lines dropped, pinned for the resolver).
WORKER_PINNED = ("torch", "torchvision", "torchaudio", "numpy", "triton")
NOT_INTO_FOLDER = ("setuptools", "pip", "wheel")
# The worker has OpenCV without its GUI (the same cv2): a second copy would add 300 MB.
RENAMED = {"opencv-python": "opencv-python-headless"}
OFFLINE = re.compile(r"could not resolve host|failed to connect|network is unreachable|connection refused|"
                     r"connection timed out|temporary failure in name resolution|"
                     r"failed to establish a new connection|name or service not known", re.I)
AGAIN = "(the clone is kept: Set up again finishes it)"
BY_HAND = "or clone it by hand and name the clone in Settings → Wan (DEFORUM_WAN_OFFICIAL_REPO)"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name_text(line: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
    return found.group(0) if found else ""


def requirement_name(line: str) -> str | None:
    """``imageio[ffmpeg]>=2`` -> ``imageio``; comments, options and blank lines -> None."""
    line = line.split("#", 1)[0].strip()
    name = requirement_name_text(line) if not line.startswith("-") else ""
    return canonical(name) if name else None


def read_requirements(repo: Path, code: OfficialCode) -> tuple[list[str], list[str], list[str]]:
    """(lines to install, their names, what was skipped and why) from the code's requirement files."""
    lines, names, skipped = [], [], []
    for file in code.requirements:
        path = repo / file
        if not path.is_file():
            continue
        for raw in path.read_text(encoding="utf-8").splitlines():
            name = requirement_name(raw)
            if name is None or name in WORKER_PINNED or name in names:
                continue
            if name in SKIPPED:
                if SKIPPED[name] not in skipped:
                    skipped.append(SKIPPED[name])
                continue
            line = raw.split("#", 1)[0].strip()
            if name in RENAMED:
                line = RENAMED[name] + line[len(requirement_name_text(line)):]
                name = RENAMED[name]
            lines.append(line)
            names.append(name)
    return lines, names, skipped


def _stream(cmd: list[str], env: dict | None, on_line: Callable[[str], None]) -> tuple[int, list[str]]:
    """Run ``cmd``, handing each line of its output (``\\r`` ends one too: git's progress) to
    ``on_line``; its exit status and its lines."""
    tail: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)
    except FileNotFoundError as e:
        raise WanError(f"{Path(cmd[0]).name} is not installed here; install it {BY_HAND}") from e
    pending = b""
    with proc:
        while True:
            chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
            if not chunk:
                break
            pending += chunk
            *done, pending = re.split(rb"[\r\n]", pending)
            for raw in done:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    tail.append(line)
                    on_line(line)
    if pending.strip():
        tail.append(pending.decode("utf-8", "replace").strip())
    return proc.returncode, tail


def _failed(what: str, tail: list[str], url: str, advice: str = BY_HAND) -> WanError:
    found = next((m for m in map(OFFLINE.search, reversed(tail)) if m), None)
    if found is not None:  # what the tool said, from the matching words to the end of that clause
        said = re.split(r"[\"'()]", found.string[found.start():], maxsplit=1)[0].strip()
        return WanError(f"no network: {what} could not reach {url} ({said}); try again online {advice}")
    last = next((t for t in reversed(tail) if t.lower().startswith(("error", "fatal"))), tail[-1] if tail else "")
    return WanError(f"{what} failed: {last}")


def _git_env() -> dict:
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}  # never wait for a password


def _git_progress(say: Say, verb: str) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        found = re.match(r"(Receiving objects|Resolving deltas|Updating files):\s+(\d+)%", line)
        if found:
            say(f"{verb}: {line.split(',', 1)[0]}", int(found.group(2)) / 100)
    return on_line


def _checkout(repo: Path, code: OfficialCode, url: str, say: Say) -> None:
    git = ["git", "-C", str(repo)]
    if subprocess.run(git + ["cat-file", "-e", f"{code.commit}^{{commit}}"], env=_git_env(),
                      capture_output=True).returncode != 0:
        rc, tail = _stream(git + ["fetch", "--progress", url], _git_env(), _git_progress(say, f"fetching {code.repo}"))
        if rc:
            raise _failed(f"fetching {code.repo}", tail, url)
    rc, tail = _stream(git + ["checkout", "--quiet", "--detach", code.commit], _git_env(), lambda line: None)
    if rc:
        raise WanError(f"{code.repo} has no commit {code.commit[:12]} at {url}: {tail[-1] if tail else ''}")


def _clone(code: OfficialCode, target: Path, url: str, say: Say) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"cloning {code.repo} from {url}", 0.0)
    rc, tail = _stream(["git", "clone", "--progress", "--no-checkout", url, str(partial)], _git_env(),
                       _git_progress(say, f"cloning {code.repo}"))
    try:
        if rc:
            raise _failed(f"cloning {code.repo}", tail, url)
        _checkout(partial, code, url, say)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for empty in (target.parent, target.parent.parent):  # nothing left behind by a failed clone
            try:
                empty.rmdir()
            except OSError:
                break
        raise
    os.replace(partial, target)  # the clone appears whole or not at all


WORKER_VERSIONS = ("import json, importlib.metadata as m, sys\n"
                   "found = {}\n"
                   "for n in sys.argv[1:]:\n"
                   "    try: found[n] = m.version(n)\n"
                   "    except m.PackageNotFoundError: pass\n"
                   "print(json.dumps(found))")


def _worker_versions(python: str, env: dict | None, names) -> dict[str, str]:
    out = subprocess.run([python, "-c", WORKER_VERSIONS, *names], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def install_requirements(code: OfficialCode, repo: Path, target: Path, python: str, env: dict | None,
                         say: Say, url: str) -> tuple[list[str], list[str], list[str]]:
    """Install what the worker lacks of the requirement files into ``target``: (installed
    ``name==version``, the requirement names, what was skipped and why)."""
    lines, names, skipped = read_requirements(repo, code)
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--prefer-binary"]
    work = target.with_name(target.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        held = _worker_versions(python, env, WORKER_PINNED)
        (work / "constraints.txt").write_text("".join(f"{k}=={v}\n" for k, v in held.items()), encoding="utf-8")
        (work / "requirements.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        say(f"resolving {len(lines)} requirements of {code.repo} against the worker's packages", None)
        rc, tail = _stream(pip + ["--dry-run", "--report", str(work / "report.json"), "-c",
                                  str(work / "constraints.txt"), "-r", str(work / "requirements.txt")],
                           env, lambda line: None)
        if rc:
            raise _failed(f"resolving {code.repo}'s requirements", tail, "the package index", AGAIN)
        report = json.loads((work / "report.json").read_text(encoding="utf-8"))
        packages = []
        for item in report.get("install", []):
            name, version = canonical(item["metadata"]["name"]), item["metadata"]["version"]
            if name in WORKER_PINNED or name.startswith("nvidia-"):  # a dependency wanting another GPU stack
                skipped.append(f"{name} {version} (the worker keeps its own GPU stack)")
            elif name not in NOT_INTO_FOLDER:
                packages.append(f"{name}=={version}")
        packages.sort()
        lib = work / "lib"
        if packages:
            count = [0]

            def on_line(line: str) -> None:
                # pip takes them in the order given: "Collecting" from an index, "Processing" from files
                if line.startswith(("Collecting ", "Processing ")) and count[0] < len(packages):
                    count[0] += 1
                    say(f"installing [{count[0]}/{len(packages)}] {packages[count[0] - 1]}", count[0] / (len(packages) + 1))

            rc, tail = _stream(pip + ["--no-deps", "--progress-bar", "off", "--target", str(lib)] + packages,
                               env, on_line)
            if rc:
                raise _failed(f"installing {code.repo}'s requirements", tail, "the package index", AGAIN)
        lib.mkdir(exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(lib, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return packages, names, skipped


IMPORT_CHECK = """import importlib, importlib.metadata as m, json, sys
repo, packages, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, repo)
sys.path.append(packages)
missing = []
for name in names:
    try:
        m.version(name)
    except m.PackageNotFoundError:
        missing.append(name)
error = None
try:
    importlib.import_module("wan")
except ModuleNotFoundError as e:
    error = e.name or str(e)
except Exception as e:
    error = f"{type(e).__name__}: {e}".splitlines()[0]
print(json.dumps({"missing": missing, "error": error}))
"""


def import_check(code: OfficialCode, models_dir, python: str, env: dict | None) -> str | None:
    """Import the set-up ``wan`` package in the worker's Python: None when it imports and
    every requirement is installed, else one line naming exactly what is missing."""
    marker = read_marker(code, models_dir) or {}
    repo, packages = repo_dir(code, models_dir), packages_dir(code, models_dir)
    out = subprocess.run([python, "-c", IMPORT_CHECK, str(repo), str(packages), json.dumps(marker.get("requirements", []))],
                         env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    try:
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (out.stderr or out.stdout).strip().splitlines()
        return f"the import check could not run in the worker's Python: {tail[-1] if tail else out.returncode}"
    missing = list(found["missing"])
    error = found["error"]
    if error and canonical(error.split(".")[0]) not in missing and ":" not in error:
        missing.append(error)
    if missing:
        return f"the wan package of {code.repo} cannot import in the worker: missing {', '.join(missing)}"
    if error:
        cuda = " (the official code runs on CUDA only)" if "CUDA" in error else ""
        return f"the wan package of {code.repo} cannot import in the worker: {error}{cuda}"
    return None


def _quiet(text: str, fraction: float | None = None) -> None:
    pass


def setup(code: OfficialCode, models_dir=None, *, python: str, env: dict | None = None, say: Say = _quiet,
          update: bool = False) -> str:
    """Clone ``code`` at its pinned commit and install its requirements (a no-op when that is
    done); ``update``: an existing setup moved to the pinned commit. One line: what was done."""
    repo, url = repo_dir(code, models_dir), source_url(code)
    marker = read_marker(code, models_dir)
    if update and not (repo / ".git").exists():
        return f"{code.repo} is not set up in {home(code, models_dir)}; nothing to update (Set up clones it)"
    if marker is not None and marker.get("commit") == code.commit and head_commit(repo) == code.commit:
        return (f"{code.repo} is already set up at {code.commit[:12]} in {repo}; nothing to do"
                if not update else f"{code.repo} is at the pinned commit {code.commit[:12]} already; nothing to update")
    (home(code, models_dir) / MARKER).unlink(missing_ok=True)  # set up again: unfinished until written
    if (repo / ".git").exists():
        say(f"moving {code.repo} to {code.commit[:12]}", None)
        _checkout(repo, code, url, say)
    else:
        shutil.rmtree(repo, ignore_errors=True)
        _clone(code, repo, url, say)
    installed, names, skipped = install_requirements(code, repo, packages_dir(code, models_dir), python, env, say, url)
    data = {"repo": code.repo, "url": url, "commit": code.commit, "installed": installed, "requirements": names,
            "skipped": skipped}
    (home(code, models_dir) / MARKER).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    say(f"checking that {code.repo}'s wan package imports in the worker", None)
    problem = import_check(code, models_dir, python, env)
    done = (f"set up {code.repo} at {code.commit[:12]} in {repo}: {len(installed)} packages into "
            f"{packages_dir(code, models_dir)}" + (f"; skipped {', '.join(skipped)}" if skipped else ""))
    return f"{done}; {problem}" if problem else f"{done}; the wan package imports in the worker"


def remove(code: OfficialCode, models_dir=None) -> str:
    folder = home(code, models_dir)
    if not folder.exists():
        return f"{code.repo} is not set up in {folder}; nothing to remove"
    shutil.rmtree(folder)
    try:
        folder.parent.rmdir()  # the official folder, once no code is left in it
    except OSError:
        pass
    return f"removed {code.repo} and its packages ({folder})"


def status(code: OfficialCode, models_dir=None, *, python: str, env: dict | None = None) -> str:
    """One line: not set up, or its commit (and whether pinned) and the import check's outcome."""
    marker, repo = read_marker(code, models_dir), repo_dir(code, models_dir)
    if marker is None:
        partly = " (an unfinished setup: Set up again finishes it)" if repo.exists() else ""
        return f"{code.name}: not set up{partly}"
    commit = head_commit(repo) or "unknown"
    pinned = "the pinned commit" if commit == code.commit else f"not the pinned {code.commit[:12]}"
    problem = import_check(code, models_dir, python, env)
    return f"{code.name}: {code.repo} at {commit[:12]} ({pinned}) in {repo}; " + (problem or "the wan package imports")

