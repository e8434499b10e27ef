"""Pick a backend: ordered tries, every failure reason kept, no fake fallback.

``auto`` tries the official code first (its own solvers, multi-GPU) and diffusers
second; what is on disk decides much of it. If nothing loads, one BackendError lists
each backend with its reason, one line each.
"""
from __future__ import annotations

from typing import Sequence

from ..config.keys import BACKENDS
from ..errors import BackendError, WanError, first_line
from ..models.registry import ModelSpec
from .base import Backend, BackendOptions

ORDER = tuple(b for b in BACKENDS if b != "auto")  # official, then diffusers
TAKES_PATH_GUIDE = ("diffusers",)  # backends whose sampler takes a step hook (camera_guide.py)

Report = list[tuple[str, str]]


def _open(name: str, spec: ModelSpec, options: BackendOptions, share_from: Sequence[Backend]) -> Backend:
    # Imported here: each backend pulls torch (and diffusers) only when it is tried.
    if options.gpus > 1:  # one clip on several GPUs: the same engine under torchrun
        from .multigpu import MultiGPUBackend

        return MultiGPUBackend(spec, options, engine=name)
    if name == "official":
        from .official import OfficialBackend

        return OfficialBackend(spec, options)
    from .diffusers_backend import DiffusersBackend

    return DiffusersBackend(spec, options, share_from=share_from)


def _reason(name: str, error: Exception) -> str:
    line = first_line(error)
    if not isinstance(error, WanError) and line != type(error).__name__:
        line = f"{type(error).__name__}: {line}"
    # Backends prefix their own messages; add the name where they did not.
    return line if line.startswith(f"{name}:") else f"{name}: {line}"


def load_backend(spec: ModelSpec, backend: str = "auto", options: BackendOptions | None = None,
                 share_from: Sequence[Backend] = (), path_guide: bool = False) -> tuple[Backend, Report]:
    """Load ``spec`` with ``backend`` ('auto', 'official' or 'diffusers'). ``share_from``:
    loaded backends whose identical components (text encoder, VAE) the new one may reuse.
    ``path_guide``: windows will be guided along Deforum's camera (``GenerateRequest.path_guide``),
    which needs a step hook:
    under auto the backends that have one are tried first.

    Returns the backend and a report of (backend name, what happened) lines: why each
    earlier one was skipped, which was chosen, and any adjustments it made.
    """
    options = options or BackendOptions()
    options.check()
    key = (backend or "auto").strip().lower()
    if key not in BACKENDS:
        raise WanError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    names = ORDER if key == "auto" else (key,)
    report: Report = []
    if key == "auto" and path_guide:
        hooked = tuple(n for n in names if n in TAKES_PATH_GUIDE)
        report += [(n, "tried after " + ", ".join(hooked) + ": no step hook to follow Deforum's camera")
                   for n in names if n not in hooked]
        names = hooked + tuple(n for n in names if n not in hooked)
    failures: list[str] = []
    last_error: Exception | None = None
    for name in names:
        try:
            loaded = _open(name, spec, options, share_from)
        except Exception as e:  # any failure of one backend is a reason to try the next
            reason = _reason(name, e)
            failures.append(reason)
            report.append((name, "skipped: " + reason.split(": ", 1)[1]))
            last_error = e
            continue
        where = getattr(loaded, "path", None)
        report.append((name, f"chosen for {spec.id}" + (f" (weights: {where})" if where else "")))
        report.extend((name, note) for note in getattr(loaded, "notes", []))
        return loaded, report
    summary = f"no backend could load {spec.id} (tried {', '.join(names)}):"
    # the last reason first: the earlier backends are ruled out (no CUDA, no official weights),
    # the last one says what the person can do (Download the weights)
    lead = f"no backend could load {spec.id}: {failures[-1]}" + (
        f" (also tried {', '.join(names[:-1])}: every reason is in the log)" if len(names) > 1 else "")
    raise BackendError("\n".join([summary] + [f"  {line}" for line in failures]), lead=lead) from last_error
