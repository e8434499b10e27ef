"""Errors meant for the user: one line, no traceback.

Everything the CLI, the tab and the worker report to a person is a ``WanError``;
anything else escaping is a bug and is shown with its traceback.
"""
from __future__ import annotations

import shlex
import sys


class WanError(Exception):
    """A problem the user can fix; ``str()`` is the whole message."""

    def __init__(self, *args):
        # A message quoting a lone surrogate (JSON's "\ud800", an undecodable file name)
        # could not be printed, stored or sent as JSON; it is kept as its escape instead.
        if args and isinstance(args[0], str):
            args = (printable(args[0]), *args[1:])
        super().__init__(*args)


class SettingsError(WanError):
    """Bad settings file or value. ``source`` names the file (or '<settings>')."""

    def __init__(self, message: str, source: str = "<settings>"):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.detail = printable(message)


class BackendError(WanError):
    """No backend could load or run the model; the message lists why for each. ``lead``: the
    one line a person reads first (the reason of the last backend tried, the one that matters
    once the others were ruled out), when the message lists several."""

    def __init__(self, message: str, lead: str | None = None):
        super().__init__(message)
        self.lead = lead


class Interrupted(WanError):
    """The user asked to stop; finished frames are kept."""


class DownloadCancelled(WanError):
    """A model download stopped on request; the files it finished are kept, so downloading again resumes."""


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes: valid UTF-8 everywhere."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type name when it has none): no tracebacks."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(text: str) -> str:
    """A multi-line message (the backend chain lists one reason per line) as one line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    out = lines[0]
    for ln in lines[1:]:
        out += (" " if out.endswith(":") else "; ") + ln
    return out


def find_out_of_memory(exc: BaseException | None) -> BaseException | None:
    """The CUDA OOM error in ``exc``'s chain (the backend chain wraps load failures)."""
    torch = sys.modules.get("torch")  # never imported here: only an error torch raised can be one
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    seen = set()
    while oom is not None and exc is not None and id(exc) not in seen:
        if isinstance(exc, oom):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def describe_error(exc: BaseException) -> str:
    """The one line a person sees for a failed job."""
    oom = find_out_of_memory(exc)
    if oom is not None:
        return f"out of GPU memory: {one_line(str(oom)) or 'CUDA OutOfMemoryError'}"
    if isinstance(exc, BackendError) and exc.lead:
        return one_line(exc.lead)
    if isinstance(exc, WanError):
        return one_line(str(exc)) or type(exc).__name__
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resume_command(settings_file: str, timestring: str, outdir: str | None = None) -> str:
    """The command that continues a stopped render (the resume hint of every entry point)."""
    cmd = ["python", "-m", "deforum_wan", "render", str(settings_file), "--resume", str(timestring)]
    if outdir is not None:
        cmd += ["--outdir", str(outdir)]
    return " ".join(shlex.quote(part) for part in cmd)
