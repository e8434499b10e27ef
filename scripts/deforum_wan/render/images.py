"""Reading pictures into frames: an init image at the render size, a frame written earlier."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..config.files import FileRefused, read_limited
from ..errors import WanError

MAX_IMAGE_BYTES = 256 << 20  # an init image (a 16-bit 8192x8192 PNG is about 200 MB)


def load_image(path: str, width: int, height: int, base: Path | None = None, fit: str = "crop",
               label: str = "init_image") -> np.ndarray:
    """An init image file as float32 (H, W, 3) in [0, 1] at the render size: ``crop`` keeps
    its aspect and centre-crops, ``fit`` keeps it and letterboxes, ``stretch`` resizes as
    Deforum does."""
    if "://" in path:
        raise WanError(f"{label} {path} is a URL; download it and give the local path")
    p = Path(path)
    if not p.is_absolute() and base is not None and not os.path.exists(p):  # never raises, unlike Path's
        p = base / p
    from PIL import Image, ImageOps

    data = read_limited(p, MAX_IMAGE_BYTES, f"{label} {path}")  # a FIFO or /dev/zero is refused
    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("RGB")
            if fit == "crop":
                img = ImageOps.fit(img, (width, height), Image.LANCZOS)
            elif fit == "fit":
                img = ImageOps.pad(img, (width, height), Image.LANCZOS, color=(0, 0, 0))
            else:
                img = img.resize((width, height), Image.LANCZOS)
            return np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise WanError(f"cannot read {label} {path}: {exc}") from None


def read_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(read_limited(path, MAX_IMAGE_BYTES, path.name))) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, FileRefused) as exc:
        raise WanError(f"cannot resume: {path.name} is unreadable ({exc})") from None
