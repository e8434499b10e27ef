"""The Wan transformer files a model list offers: each usable transformer file in the model folders
once, a Wan 2.2 A14B pair of experts as one entry (its high-noise file, which finds its partner).

Anything else is left out without a word: the text encoders and VAEs are parts, and a host's
checkpoint folder (Forge Neo's ``models/Stable-diffusion``) holds SD, SDXL and Flux checkpoints
beside its Wan files; ``deforum_wan models`` says what each file is. Headers only: no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import WanError
from .detect import Detected, detect
from .file_models import partner_name
from .headers import read_header
from .places import confine, model_roots, weight_files


@dataclass(frozen=True)
class FileChoice:
    name: str  # what ``wan_model`` takes: the file's name, found in the model folders
    found: Detected
    low: str = ""  # the low-noise expert's file name, for a pair

    @property
    def label(self) -> str:
        """``wan_x.safetensors [file: Wan transformer T2V 1.3B, ..., bf16]``, a pair naming its partner."""
        what = f"two experts, low noise: {self.low}; " if self.low else ""
        return f"{self.name} [file: {what}{self.found.summary}, {self.found.quant}]"


def transformer_files(models_dir=None, extra=None) -> list[FileChoice]:
    """The Wan transformer files of the model folders, in folder order, each name once (the first
    one found is the one ``wan_model`` loads)."""
    roots = model_roots(models_dir, extra)
    found: dict[str, Detected] = {}
    for path, folder_kind in weight_files(roots):
        if folder_kind not in (None, "transformer") or path.name in found:
            continue
        try:
            detected = detect(read_header(confine(path, roots)))
        except (WanError, OSError):  # not a Wan file (another model's checkpoint), unreadable or refused
            continue
        if detected.kind == "transformer":
            found[path.name] = detected
    out = []
    for name, detected in found.items():
        pair = partner_name(name)
        if pair is not None and pair[0] in found:
            if pair[1] == "low":  # listed with its high-noise partner
                continue
            out.append(FileChoice(name, detected, low=pair[0]))
        else:
            out.append(FileChoice(name, detected))
    return out
