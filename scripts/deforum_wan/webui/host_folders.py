"""The host's own model folders as extra model folders: Forge Neo renders Wan itself, so its users
keep the Wan diffusion model in ``models/Stable-diffusion`` (or ``--ckpt-dirs``), the UMT5 text
encoder in ``models/text_encoder`` (``--text-encoder-dirs``) and the VAE in ``models/VAE``
(``--vae-dirs``). A1111 and Forge have no Wan files of their own, so nothing is added there.

Pure paths: wan_tab.py hands in what it read from the host's ``modules``."""
from __future__ import annotations

import os
from pathlib import Path

from ..models.places import EXTRA_DIRS_ENV

# Neo's folder per kind under its models folder, and the flag that adds more of them.
NEO_FOLDERS = (("Stable-diffusion", "ckpt_dirs"), ("text_encoder", "text_encoder_dirs"), ("VAE", "vae_dirs"))


def is_neo(cmd_opts, version: str | None) -> bool:
    """Forge Neo: its ``modules_forge.forge_version`` says ``neo``, or its own flag is there
    (``--text-encoder-dirs``: neither A1111 nor Forge has it)."""
    return str(version or "").strip().lower().startswith("neo") or hasattr(cmd_opts, "text_encoder_dirs")


def neo_dirs(models_path, cmd_opts) -> list[Path]:
    """Neo's checkpoint, text encoder and VAE folders, each followed by its flag's folders."""
    out: list[Path] = []
    for folder, flag in NEO_FOLDERS:
        for path in [Path(models_path) / folder, *map(Path, getattr(cmd_opts, flag, None) or ())]:
            if path not in out:
                out.append(path)
    return out


def add_extra_dirs(dirs, environ=None) -> list[Path]:
    """``dirs`` after the extra folders the user gave ($DEFORUM_WAN_EXTRA_MODEL_DIRS), in the
    environment the tab, its checks and the worker processes read; returns the folders added."""
    environ = os.environ if environ is None else environ
    value = environ.get(EXTRA_DIRS_ENV, "")
    given = [Path(p.strip()).expanduser() for p in value.split(os.pathsep) if p.strip()]
    added = []
    for path in map(Path, dirs):
        if path not in given and path not in added:
            added.append(path)
    if added:
        environ[EXTRA_DIRS_ENV] = os.pathsep.join([p for p in [value] if p.strip()] + [str(p) for p in added])
    return added
