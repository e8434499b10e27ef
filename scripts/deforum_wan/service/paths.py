"""Files the tab receives: an upload is copied into the output folder, where the one input
rule (``render.inputs``) lets jobs read it."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

UPLOADS = "wan-uploads"  # the tab copies uploaded files here (inside the output folder)


def keep_upload(path: str | os.PathLike, outdir: str | os.PathLike) -> Path:
    """A file the browser uploaded (in gradio's temporary folder) copied into the output
    folder, where jobs may read it and where it outlives gradio's clean-up."""
    source = Path(path)
    folder = Path(outdir).expanduser().resolve() / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex[:8]}-{source.name[-120:]}"
    shutil.copyfile(source, target)
    return target
