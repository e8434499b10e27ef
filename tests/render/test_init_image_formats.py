"""Init images: raster formats only (SVG refused by content, whatever its name), a bounded
number of decoded pixels (a small PNG claiming 144 megapixels is one line), EXIF orientation
applied and 16-bit greys scaled, not clipped."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deforum_wan.errors import WanError
from deforum_wan.render.images import load_image
from deforum_wan.service.paths import keep_upload

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def test_svg_is_refused_as_init_image_and_upload(tmp_path):
    for name in ("x.svg", "x.png"):
        path = tmp_path / name
        path.write_bytes(SVG)
        with pytest.raises(WanError, match="not a PNG, JPEG"):
            load_image(str(path), 16, 16)
        with pytest.raises(WanError, match="not a PNG, JPEG"):
            keep_upload(path, tmp_path / "out", "image")
    assert not list((tmp_path / "out").rglob("*.*"))  # nothing kept


def test_a_decompression_bomb_is_one_line(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path, optimize=True)  # 144 megapixels in a few KB
    assert path.stat().st_size < 100_000
    with pytest.raises(WanError) as err:
        load_image(str(path), 16, 16)
    assert "12000x12000 (144 megapixels)" in str(err.value) and "\n" not in str(err.value)


def test_16_bit_and_exif_orientation(tmp_path):
    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(grey)
    assert abs(load_image(str(grey), 8, 8, fit="stretch").mean() - 0.5) < 0.01  # not clipped to white
    rotated = tmp_path / "rotated.jpg"
    img = Image.new("RGB", (20, 10), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 10))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: blue on top
    img.save(rotated, exif=exif, quality=95)
    frame = load_image(str(rotated), 10, 20, fit="stretch")
    assert frame[2, 5, 2] > 0.8 and frame[17, 5, 0] > 0.8
