"""Reading pictures into frames: an init image at the render size, a frame written earlier."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..config.files import read_limited
from ..errors import WanError

MAX_IMAGE_BYTES = 256 << 20  # an init image (a 16-bit 8192x8192 PNG is about 200 MB)
# Decoded pixels: a few KB of PNG can claim 144 megapixels (800 MB decoded); 8192x8192 is
# far above any Wan size. Checked from the header, before anything is decoded.
MAX_PIXELS = 8192 * 8192
# What an init image may be: raster formats PIL decodes. SVG, HTML and the like are refused
# by content, whatever the name says (served inline, they would run script).
RASTER_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}


def open_raster(data: bytes, what: str):
    """``data`` opened (not decoded) as a raster image of at most MAX_PIXELS; WanError otherwise."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data), formats=list(RASTER_FORMATS))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise WanError(f"cannot read {what}: not a PNG, JPEG, WebP, BMP, GIF or TIFF image ({exc})") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise WanError(f"{what} is {w}x{h} ({w * h / 1e6:.0f} megapixels); at most {MAX_PIXELS / 1e6:.0f}"
                       " megapixels are read")
    return img


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
        with open_raster(data, f"{label} {path}") as img:
            img = rgb8(ImageOps.exif_transpose(img))
            if fit == "crop":
                img = ImageOps.fit(img, (width, height), Image.LANCZOS)
            elif fit == "fit":
                img = ImageOps.pad(img, (width, height), Image.LANCZOS, color=(0, 0, 0))
            else:
                img = img.resize((width, height), Image.LANCZOS)
            return np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise WanError(f"cannot read {label} {path}: {exc}") from None


def rgb8(img):
    """``img`` as 8-bit RGB; 16-bit and 32-bit greys scaled to 0..255 (PIL's own convert
    clips them, a 16-bit picture comes out washed out)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        from PIL import Image

        return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def read_png(path: Path) -> np.ndarray:
    """A frame written earlier, opened refusing links and special files (a damaged frame)."""
    try:
        with open_raster(read_limited(path, MAX_IMAGE_BYTES, path.name, follow=False), path.name) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, WanError) as exc:
        raise WanError(f"cannot resume: {path.name} is unreadable ({exc})") from None
