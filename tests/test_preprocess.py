import io

import numpy as np
import pytest
from PIL import Image

from captcha_ocr.config import ImageConfig
from captcha_ocr.preprocess import ImageError, ImageTooLargeError, preprocess

CFG = ImageConfig(height=50, width=200, channels=1)


def _gradient(w: int = 120, h: int = 40) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def images_in_every_mode() -> dict[str, Image.Image]:
    g = _gradient().astype(np.uint8)
    rgb = Image.fromarray(np.stack([g, g, g], -1))
    return {
        "L": Image.fromarray(g),
        "RGB": rgb,
        "RGBA": rgb.convert("RGBA"),
        "P": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256),
        "I;16": Image.fromarray((_gradient() * 257).astype(np.uint16)),
    }


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
def test_every_mode_same_shape_and_range(mode):
    img = images_in_every_mode()[mode]
    assert img.mode == mode
    x = preprocess(_png(img), CFG)  # through PNG bytes, as a user's file would come
    ref = preprocess(images_in_every_mode()["L"], CFG)
    assert x.shape == (1, 50, 200) and x.dtype == np.float32
    assert 0 <= x.min() and x.max() <= 1
    assert np.abs(x - ref).max() < 0.02  # same picture, whatever the mode


def test_colour_model_gets_three_channels():
    x = preprocess(images_in_every_mode()["RGB"], ImageConfig(32, 128, 3))
    assert x.shape == (3, 32, 128)


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    assert preprocess(img, CFG).min() == pytest.approx(1.0)


def test_path_array_and_bytes_agree(tmp_path):
    img = images_in_every_mode()["L"]
    img.save(tmp_path / "x.png")
    a = preprocess(tmp_path / "x.png", CFG)
    assert np.array_equal(a, preprocess(np.asarray(img), CFG))
    assert np.array_equal(a, preprocess((tmp_path / "x.png").read_bytes(), CFG))


def test_truncated_png_is_image_error():
    data = _png(images_in_every_mode()["RGB"])
    with pytest.raises(ImageError, match="cannot decode"):
        preprocess(data[: len(data) // 2], CFG)


@pytest.mark.parametrize("data", [b"", b"not an image at all"])
def test_not_an_image(data):
    with pytest.raises(ImageError):
        preprocess(data, CFG)


def test_missing_file_named(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        preprocess(tmp_path / "nope.png", CFG)


def test_pixel_limit_checked_from_header():
    big = _png(Image.new("L", (3000, 2000)))
    with pytest.raises(ImageTooLargeError, match="3000x2000"):
        preprocess(big, CFG, max_pixels=4_000_000)
