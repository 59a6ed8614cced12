import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captcha_ocr import preprocess as preprocess_module
from captcha_ocr.config import ImageConfig
from captcha_ocr.preprocess import MAX_FILE_BYTES, ImageError, ImageTooLargeError, preprocess

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
    assert np.array_equal(a, preprocess(np.asarray(img)[:, :, None], CFG))  # (H, W, 1)
    with open(tmp_path / "x.png", "rb") as f:  # a binary file object
        assert np.array_equal(a, preprocess(f, CFG))
    with open(tmp_path / "x.png") as f, pytest.raises(ImageError, match="open it in binary mode"):
        preprocess(f, CFG)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with open(tmp_path / "bad.png", "rb") as f, pytest.raises(
            ImageError, match=rf"^{tmp_path / 'bad.png'}: not an image in a supported format"):
        preprocess(f, CFG)  # the open file's path, not "bytes"
    with pytest.raises(ImageError, match=r"^file object: not an image in a supported format"):
        preprocess(io.BytesIO(b"not a png"), CFG)
    with pytest.raises(ImageError, match=r"array of shape \(10,\) is not an image"):
        preprocess(np.zeros(10, np.uint8), CFG)  # was read as a 10x1 image
    rgb = np.asarray(images_in_every_mode()["RGB"])
    with pytest.raises(ImageError, match=r"\(3, 50, 200\) is not an image: .*channels first\? "
                                         r"pass arr.transpose\(1, 2, 0\)$"):
        preprocess(np.zeros((3, 50, 200), np.uint8), CFG)
    assert np.array_equal(preprocess(rgb.transpose(2, 0, 1).transpose(1, 2, 0), CFG), preprocess(rgb, CFG))
    grey_alpha = np.stack([np.asarray(img), np.full_like(np.asarray(img), 255)], axis=2)
    assert np.array_equal(preprocess(grey_alpha, CFG), a)  # (H, W, 2): grey and alpha


def test_truncated_png_is_image_error():
    data = _png(images_in_every_mode()["RGB"])
    with pytest.raises(ImageError, match="a damaged PNG file"):
        preprocess(data[: len(data) // 2], CFG)


@pytest.mark.parametrize("data", [b"", b"not an image at all"])
def test_not_an_image(data):
    with pytest.raises(ImageError):
        preprocess(data, CFG)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
@pytest.mark.parametrize("damage", ["header", "truncated"])
def test_a_damaged_file_is_named_as_a_damaged_file_of_its_format(fmt, damage):
    buf = io.BytesIO()
    images_in_every_mode()["RGB"].save(buf, fmt)
    data = buf.getvalue()
    damaged = data[:18] + b"\x00" * 64 if damage == "header" else data[: len(data) // 2]
    with pytest.raises(ImageError, match=rf"^bytes: a damaged {fmt} file( \(.*\))?: it starts as one "
                                         r"but does not decode; fetch it again$"):
        preprocess(damaged, CFG)
    with pytest.raises(ImageError, match=r"^bytes: not an image in a supported format \(PNG, JPEG"):
        preprocess(b"\x00" * 18 + damaged[18:], CFG)


def test_bm_alone_is_not_called_a_damaged_bmp():
    with pytest.raises(ImageError, match=r"^bytes: cannot decode image \(") as refused:
        preprocess(b"BMW service record" + b"\x00" * 40, CFG)
    assert "damaged" not in str(refused.value)


def test_an_empty_path_and_a_source_of_no_image_type_are_image_errors():
    with pytest.raises(ImageError, match="^an empty path: give an image file$"):
        preprocess("", CFG)
    for source in (None, 5, ["x.png"]):
        with pytest.raises(ImageError, match=f"^{type(source).__name__} is not an image: pass a path"):
            preprocess(source, CFG)


def test_a_16_bit_colour_array_reads_as_its_8_bit_image_and_as_16_bit_grey_is_read():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 50, 3), dtype=np.uint16)
    assert np.array_equal(preprocess(rgb * 257, CFG), preprocess(rgb.astype(np.uint8), CFG))
    grey = np.random.default_rng(1).integers(0, 65536, (20, 50), dtype=np.uint16)
    colour = ImageConfig(height=32, width=128, channels=3)
    assert np.array_equal(preprocess(np.stack([grey] * 3, -1), colour), preprocess(grey, colour))


def test_missing_file_named(tmp_path):
    with pytest.raises(ImageError, match="nope.png"):
        preprocess(tmp_path / "nope.png", CFG)


def test_pixel_limit_checked_from_header():
    big = _png(Image.new("L", (3000, 2000)))
    with pytest.raises(ImageTooLargeError, match=r"3000x2000, over the limit of 4,000,000 pixels \(far "
                                                 r"larger than a captcha: is it the right file\? "
                                                 r"--max-pixels of predict, eval and serve"):
        preprocess(big, CFG, max_pixels=4_000_000)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` grey pixels (its data: a few bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


def test_an_image_past_pillows_own_limit_is_too_large_not_damaged():
    """Pillow refuses over 2 x MAX_IMAGE_PIXELS when it opens a file, before our header
    check: that was "a damaged PNG file ... fetch it again" (1.8 MB on disk)."""
    bomb = _png_header(30000, 20000)
    with pytest.raises(ImageTooLargeError, match=r"^bytes: image of 600,000,000 pixels, over the "
                                                 r"limit of 4,000,000 pixels .* --max-pixels"):
        preprocess(bomb, CFG, max_pixels=4_000_000)
    with pytest.raises(ImageTooLargeError, match=r"^bytes: image of 600,000,000 pixels, over the "
                                                 r"limit of [\d,]+ that Pillow opens at all"):
        preprocess(bomb, CFG, max_pixels=None)
    with pytest.raises(ImageTooLargeError, match=r"that Pillow opens at all"):  # not "raise ours"
        preprocess(bomb, CFG, max_pixels=10**9)


def test_pixel_limit_holds_for_arrays_and_pil_images_too():
    with pytest.raises(ImageTooLargeError, match="array: image is 3000x2000"):
        preprocess(np.zeros((2000, 3000), np.uint8), CFG, max_pixels=4_000_000)
    lazy = Image.open(io.BytesIO(_png(Image.new("L", (3000, 2000)))))  # not decoded yet
    with pytest.raises(ImageTooLargeError, match="PIL image: image is 3000x2000"):
        preprocess(lazy, CFG, max_pixels=4_000_000)
    assert preprocess(np.zeros((2000, 3000), np.uint8), CFG, max_pixels=None).shape == (1, 50, 200)


# ---------------------------------------------------------------- the image gate


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_lab_tiff_named_png_is_refused_by_format(tmp_path):
    path = tmp_path / "lab.png"
    path.write_bytes(_encoded(Image.new("LAB", (20, 10)), "TIFF"))
    with pytest.raises(ImageError, match=r"lab\.png: not an image in a supported format \(PNG"):
        preprocess(path, CFG)


@pytest.mark.parametrize("fmt", ["TIFF", "PCX", "TGA", "PPM", "ICO", "SGI"])
def test_formats_outside_the_allow_list_are_refused(fmt):
    data = _encoded(Image.new("RGB", (32, 16), "white"), fmt)
    with pytest.raises(ImageError, match="not an image in a supported format"):
        preprocess(data, CFG)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_allowed_formats_read(fmt):
    assert preprocess(_encoded(Image.new("RGB", (32, 16), "white"), fmt), CFG).shape == (1, 50, 200)


def test_unconvertible_mode_is_image_error():
    with pytest.raises(ImageError, match="PIL image: cannot convert LAB image"):
        preprocess(Image.new("LAB", (20, 10)), CFG)


def test_empty_array_is_image_error():
    with pytest.raises(ImageError, match="0x0 pixels"):
        preprocess(np.zeros((0, 0), np.uint8), CFG)


def test_fifo_and_device_are_not_regular_files(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(ImageError, match=r"pipe\.png: not a regular file"):
        preprocess(fifo, CFG)
    with pytest.raises(ImageError, match="/dev/zero: not a regular file"):
        preprocess("/dev/zero", CFG)


def test_folder_and_empty_file_messages(tmp_path):
    with pytest.raises(ImageError, match="is a folder"):
        preprocess(tmp_path, CFG)
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty file \(0 bytes\)"):
        preprocess(tmp_path / "e.png", CFG)


def test_huge_file_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    with big.open("wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(1 << 30)
    opened = []
    monkeypatch.setattr(preprocess_module, "open", lambda *a, **k: opened.append(a), raising=False)
    with pytest.raises(ImageError, match="big.png: file is 1,073,741,824 bytes, over the limit of"):
        preprocess(big, CFG)
    assert not opened  # refused from its size, never opened
    with pytest.raises(ImageError, match="over the limit of"):
        preprocess(b"\x89PNG" + bytes(MAX_FILE_BYTES), CFG)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048), st.sampled_from(["PNG", "GIF", "BMP", "JPEG", "WEBP"]),
       st.integers(0, 200), st.integers(0, 255))
def test_fuzzed_bytes_give_an_array_or_image_error(junk, fmt, at, byte):
    """Random bytes, and real images with bytes overwritten or cut: an array or an
    ImageError, nothing else."""
    good = bytearray(_encoded(Image.new("RGB", (24, 12), (9, 99, 199)), fmt))
    if at < len(good):
        good[at] = byte
    for data in (junk, bytes(good), bytes(good[: at + 8]), bytes(good) + junk):
        try:
            out = preprocess(data or b"x", CFG)
        except ImageError as e:
            assert "\n" not in str(e)
        else:
            assert out.shape == (1, 50, 200) and out.dtype == np.float32
