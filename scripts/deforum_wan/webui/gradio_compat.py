"""What differs between gradio 3.41 (A1111 v1.10), 4.40 (Forge) and 5+/6.x, in one place.

- components: keyword arguments a version lacks are dropped (``show_copy_button``,
  ``buttons``...), ``sources=[...]`` becomes ``source="upload"`` on 3.x, and ``type="filepath"``
  of ``gr.File`` is ``"file"`` on 3.x (a temp-file object; ``file_path`` reads either);
- events: ``js=`` is ``_js=`` on 3.x;
- ``update``: ``gr.update`` everywhere (``Component.update`` is gone in 4).
"""
from __future__ import annotations

import inspect
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

import gradio as gr

GRADIO_VERSION = tuple(int(p) for p in gr.__version__.split(".")[:2] if p.isdigit())
GRADIO_MAJOR = GRADIO_VERSION[0]


def update(**kwargs) -> dict:
    return gr.update(**kwargs)


def _accepted_by(fn: Callable) -> set[str] | None:
    """``fn``'s keyword names; None when it takes ``**kwargs`` (3.x components pass them on)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params)


def component_kwargs(fn: Callable, **kwargs) -> dict:
    """The keyword arguments ``fn`` accepts in this version (None values dropped)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if v is not None and k in params}


def component(cls, **kwargs):
    """Build ``cls`` with the keyword arguments this gradio version knows."""
    if "sources" in kwargs and GRADIO_MAJOR < 4:
        sources = kwargs.pop("sources")
        kwargs["source"] = sources[0] if sources else "upload"
    if cls is gr.File and kwargs.get("type") == "filepath" and GRADIO_MAJOR < 4:
        kwargs["type"] = "file"
    accepted = _accepted_by(cls.__init__)
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    else:  # 3.x: drop what would only raise a deprecation warning or a TypeError downstream
        kwargs = {k: v for k, v in kwargs.items() if k not in ("buttons", "sources", "min_height")}
    return cls(**kwargs)


def blocks(**kwargs):
    """``gr.Blocks``; ``css`` moved to ``launch``/``mount_gradio_app`` in 6 (cli_ui passes it there)."""
    if GRADIO_MAJOR >= 6:
        kwargs.pop("css", None)
    return component(gr.Blocks, **kwargs)


def on(event: Callable, fn: Callable, inputs=None, outputs=None, js: str | None = None, **kwargs):
    """``button.click`` and friends with ``js``/``_js`` spelled for this version."""
    if js is not None:
        kwargs["js" if GRADIO_MAJOR >= 4 else "_js"] = js
    if GRADIO_MAJOR >= 4:
        kwargs.pop("every", None)
    accepted = _accepted_by(event)
    if accepted is not None:
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return event(fn, inputs=inputs, outputs=outputs, **kwargs)


def file_path(value: Any) -> str | None:
    """The path of an uploaded file whatever the version hands over."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, dict):  # 4.x FileData dicts in some code paths
        return value.get("path") or value.get("name")
    return getattr(value, "name", None) or getattr(value, "path", None)


def file_paths(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [p for p in (file_path(v) for v in items) if p]


def upload_folder() -> Path:
    """Where gradio puts uploaded files (the same rule in 3.41, 4.x and 6.x)."""
    try:
        from gradio.utils import get_upload_folder  # 4.x and later

        return Path(get_upload_folder()).resolve()
    except ImportError:
        return (Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")).resolve()


def received_upload(path: Any) -> Path | None:
    """``path`` when it is a file in this server's upload folder, where gradio put an upload:
    absolute, no link anywhere below the folder, a regular file; else None. (A request may
    name any path; gradio copies a named file into this folder only after its own check.)"""
    text = str(path or "")
    if not text or "\x00" in text or not os.path.isabs(text):
        return None
    given, folder = Path(os.path.normpath(text)), upload_folder()
    for root in {folder, Path(os.path.abspath(os.environ.get("GRADIO_TEMP_DIR") or folder))}:
        try:
            rel = given.relative_to(root)
        except ValueError:
            continue
        try:
            real = (folder / rel).resolve(strict=True)
            info = os.lstat(real)
        except (OSError, RuntimeError):
            return None
        # resolving changed nothing: no part below the folder is a link
        return real if real == folder / rel and rel.parts and stat.S_ISREG(info.st_mode) else None
    return None


def refuse_named_files(file_component):
    """On gradio 3 a request may name any server file as a ``gr.File`` value and gradio copies
    it into its upload folder unchecked: take only files in that folder (4+ checks itself)."""
    if GRADIO_MAJOR >= 4:
        return file_component
    preprocess = file_component.preprocess

    def checked(x):
        for item in x if isinstance(x, list) else [x]:
            if isinstance(item, dict) and item.get("is_file") and received_upload(item.get("name")) is None:
                raise gr.Error("only files uploaded to this server are read")
        return preprocess(x)

    file_component.preprocess = checked
    return file_component
