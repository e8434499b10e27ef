"""Where the official Wan code lives once set up, which commit it is at, and which commit
this project checked its calls against (no git, no network, no import of ``wan`` here).

``official setup`` (official_setup.py) clones Wan-Video/Wan2.1 or Wan2.2 into
``<models dir>/official/<wan2.x>/repo`` and installs its requirements into ``packages``
beside it; ``setup.json`` there, written last, says the setup finished. The official
backend finds the clone there when no path is named (DEFORUM_WAN_OFFICIAL_REPO or
Settings → Wan), so nothing has to be configured.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import WanError
from .weights import resolve_models_dir


@dataclass(frozen=True)
class OfficialCode:
    name: str  # "wan2.1"
    repo: str  # the GitHub repository
    commit: str  # the commit backends/official.py's calls were checked against
    requirements: tuple[str, ...]  # the files its wan package's imports need


# The calls (TASKS, generate's arguments) bind to these commits, the HEADs both were checked at.
CODES = {
    "wan2.1": OfficialCode("wan2.1", "Wan-Video/Wan2.1", "9737cba9c1c3c4d04b33fcad41c111989865d315",
                           ("requirements.txt",)),
    # Wan 2.2's wan/__init__.py imports its speech and animate pipelines: their files too.
    "wan2.2": OfficialCode("wan2.2", "Wan-Video/Wan2.2", "42bf4cfaa384bc21833865abc2f9e6c0e67233dc",
                           ("requirements.txt", "requirements_s2v.txt", "requirements_animate.txt")),
}
# Another place to clone from (a mirror: a URL or a folder holding Wan2.1 and Wan2.2) and
# another commit to set up ("wan2.1=SHA,wan2.2=SHA"); the backend then warns as for any other commit.
MIRROR_ENV = "DEFORUM_WAN_OFFICIAL_MIRROR"
COMMITS_ENV = "DEFORUM_WAN_OFFICIAL_COMMITS"
FOLDER = "official"
MARKER = "setup.json"


def code_for(name: str) -> OfficialCode:
    key = (name or "").strip().lower()
    if key not in CODES:
        raise WanError(f"official code must be one of {', '.join(CODES)}, not {name!r}")
    wanted = dict(part.split("=", 1) for part in os.environ.get(COMMITS_ENV, "").split(",") if "=" in part)
    code = CODES[key]
    commit = wanted.get(key, "").strip()
    return OfficialCode(code.name, code.repo, commit, code.requirements) if commit else code


def code_of_model(model_id: str) -> OfficialCode | None:
    """The official code that runs ``model_id`` (wan2.1-* on Wan2.1, wan2.2-* on Wan2.2)."""
    prefix = model_id.split("-", 1)[0]
    return code_for(prefix) if prefix in CODES else None


def source_url(code: OfficialCode) -> str:
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    name = code.repo.split("/", 1)[1]
    return f"{mirror}/{name}" if mirror else f"https://github.com/{code.repo}"


def home(code: OfficialCode, models_dir=None) -> Path:
    return resolve_models_dir(models_dir) / FOLDER / code.name


def repo_dir(code: OfficialCode, models_dir=None) -> Path:
    return home(code, models_dir) / "repo"


def packages_dir(code: OfficialCode, models_dir=None) -> Path:
    return home(code, models_dir) / "packages"


def read_marker(code: OfficialCode, models_dir=None) -> dict | None:
    try:
        found = json.loads((home(code, models_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def head_commit(repo: str | os.PathLike) -> str | None:
    """The commit checked out in the git clone ``repo`` (read from .git, no git needed), or None."""
    git = Path(repo) / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (Path(repo) / git.read_text(encoding="utf-8").split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
        ref = head.split(":", 1)[1].strip()
        common = Path(git / "commondir").read_text(encoding="utf-8").strip() if (git / "commondir").is_file() else "."
        for base in (git, (git / common).resolve()):
            if (base / ref).is_file():
                return (base / ref).read_text(encoding="utf-8").strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text(encoding="utf-8").splitlines():
                    sha, _, name = line.partition(" ")
                    if name.strip() == ref:
                        return sha
    except (OSError, ValueError, IndexError):
        return None
    return None


def describe(repo: str | os.PathLike, code: OfficialCode | None) -> tuple[str, str | None]:
    """One line naming the official code in ``repo`` and its commit, and a warning when that
    commit is not the one this project checked its calls against (None when it is)."""
    commit = head_commit(repo)
    name = code.repo if code is not None else "official code"
    if commit is None:
        warning = (f"{repo} is not a git clone: its commit is unknown (the calls were checked against "
                   f"{code.repo}@{code.commit[:12]})" if code is not None else None)
        return f"official code: {name} in {repo} (commit unknown)", warning
    if code is None or commit == code.commit:
        return f"official code: {name} at {commit[:12]} in {repo}", None
    return (f"official code: {name} at {commit[:12]} in {repo}",
            f"{name} at {commit[:12]}, not the pinned {code.commit[:12]} this project checked its calls against;"
            " it may not run (official update sets up the pinned commit)")


def set_up_clone(code: OfficialCode, models_dir=None) -> tuple[Path, Path] | None:
    """(repo, packages) of a finished setup of ``code`` in the models folder, or None."""
    marker = read_marker(code, models_dir)
    repo = repo_dir(code, models_dir)
    if marker is None or not (repo / "wan" / "__init__.py").is_file():
        return None
    return repo, packages_dir(code, models_dir)
