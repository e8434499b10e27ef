"""The Wan tab's Download, run as a child process of the WebUI's own Python:
``python -m deforum_wan.models.download_process REPO FOLDER LAYOUT``.

The tab lives inside the WebUI, whose huggingface_hub is its own (0.36 in A1111 v1.10, 0.26 in
Forge); the extension's private copy serves the render worker only, and on hosts with an old
torch it is that same 0.36. Those versions give a download no per-chunk hook, so a thread in
the WebUI could neither show bytes as they arrive nor stop in the middle of a multi-GB file.
Here the hub client runs with calls every version from 0.26 on accepts, the bar is read from
the files growing on disk, and Stop download ends the process: its finished files stay (and
its partial one, which the older clients resume), so the next Download goes on from there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import DownloadCancelled, WanError, one_line
from .registry import DepthSpec, ModelSpec
from .weights import (
    TAB_ADVICE,
    _is_complete,
    bytes_on_disk,
    download,
    download_depth,
    download_plan,
    fetch_repo,
    spec_repo,
)

POLL_SECONDS = 0.25
FAILED = 3  # the child's exit status when its last line of output says why, in the tab's words
SCRIPTS = Path(__file__).resolve().parents[2]  # the folder holding this package


def child_env(token=None) -> dict:
    """The WebUI's environment (HF_ENDPOINT, HF_TOKEN, proxies as they are now), this package
    importable, and no progress bars (nobody reads the child's terminal)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if token:
        env["HF_TOKEN"] = token
    return env


def download_in_child(spec: ModelSpec | DepthSpec, models_dir=None, layout: str = "diffusers", token=None,
                      progress=None, should_stop=None) -> Path:
    """``weights.download`` for the tab: the same arguments and outcome, its messages in the
    tab's words. ``progress(done, total)`` is called about 4 times a second from here;
    ``should_stop()`` returning True ends the child and raises DownloadCancelled. A depth
    model (DepthSpec) downloads in layout "depth" whatever ``layout`` says."""
    if isinstance(spec, DepthSpec):
        layout = "depth"
    if spec.tiny:  # built here: nothing to fetch
        return download_depth(spec, models_dir) if layout == "depth" else download(spec, models_dir, layout)
    repo = spec_repo(spec, layout)
    stopped = f"download of {spec.id} ({repo}) stopped; Download again resumes it"
    target, files = download_plan(spec, models_dir, layout, token, from_tab=True)
    total = sum(files.values())

    def report() -> None:
        if progress is not None:
            progress(bytes_on_disk(target, files), total)

    if should_stop is not None and should_stop():
        raise DownloadCancelled(stopped)
    report()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", __name__, repo, str(target), layout],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_env(token))
        try:
            while True:
                try:
                    proc.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if should_stop is not None and should_stop():
                    raise DownloadCancelled(stopped)
                report()
        finally:
            _end(proc)
        out.seek(0)
        lines = out.read().decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == FAILED and lines:
        raise WanError(lines[-1])
    if proc.returncode != 0:
        said = f": {lines[-1].strip()}" if lines else ""
        raise WanError(f"downloading {repo} ended with exit status {proc.returncode}{said}; {TAB_ADVICE['resume']}")
    report()
    if not _is_complete(target, layout):
        raise WanError(f"{repo} downloaded to {target} but looks incomplete; {TAB_ADVICE['resume']}")
    return target


def _end(proc: subprocess.Popen) -> None:
    """Stop the child if it still runs (a stop, or an error here): the files it finished stay."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    repo, target, layout = sys.argv[1:] if argv is None else argv
    try:
        fetch_repo(repo, Path(target), layout, TAB_ADVICE)
    except WanError as e:
        print(one_line(str(e)), flush=True)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
