"""Image -> model input. One function, shared by training, evaluation and reading.

Conventions fixed here (the Keras tutorial's, written down):
- the input is ``(C, H, W)`` float32 in [0, 1], C = 1 (grey) or 3 (RGB);
- any size is resized (bilinear) to the model's ``width x height``; the network
  then downsamples width by 4 and reads the columns left to right as time steps;
- transparent pixels are composited on white, 16-bit images scaled to 8 bits.

It is also the one gate every image passes (reading, evaluation, training, the service):
only the formats in ``FORMATS`` are decoded, files are checked (regular file, size)
before they are read, and every failure to open, decode, convert or resize an image
becomes an ``ImageError`` naming it, so one bad image fails alone.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import ImageConfig

__all__ = ["FORMATS", "IMAGE_SUFFIXES", "ImageError", "ImageSource", "image_size", "open_image",
           "preprocess", "to_array"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
# The only decoders used, whatever a file is named: Pillow knows ~40 formats, some of
# them rarely exercised (or, like EPS, started as an external program).
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
DEFAULT_MAX_PIXELS = 4_000_000
# Checked before a file is read: 4 Mpx of uncompressed 32-bit BMP is 16 MB.
MAX_FILE_BYTES = 32 * 1024 * 1024

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image,  # noqa: UP007
                    np.ndarray]


class ImageError(ValueError):
    """An input could not be read as an image; the message is one line for the user."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed (checked from the header, before decoding)."""


# The first bytes of each format in FORMATS: a file that starts as one but does not decode
# is a damaged image of that format, not one of another format.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
          (b"GIF89a", "GIF"))
_BMP_HEADERS = (12, 40, 52, 56, 64, 108, 124)  # the sizes of BMP's info headers


def _looks_like(head: bytes) -> str | None:
    """The format whose signature ``head`` (the first 18 bytes) starts with, if any."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADERS:
        return "BMP"  # "BM" alone starts too much
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "PIL image" if isinstance(source, Image.Image) else type(source).__name__


def open_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Step 1: read ``source`` (path, encoded bytes, PIL image or array) into a decoded PIL image.

    Args:
        source: a file path, the bytes of an encoded image (or a binary file object
            holding them), a PIL image, or an ``(H, W)`` / ``(H, W, 1|3|4)`` uint8 array.
        max_pixels: refuse larger images from their header, before decoding (None: no limit).

    Returns:
        A fully decoded PIL image (truncated files fail here, not later).

    Raises:
        ImageError: the source is missing, not an image, truncated or too large.
    """
    if isinstance(source, Image.Image):
        _check_pixels("PIL image", source.width, source.height, max_pixels)  # before decoding
        try:
            source.load()  # a lazily opened image decodes (and may fail) here
        except Exception as e:  # noqa: BLE001 - whatever the decoder raises
            raise ImageError(f"PIL image: cannot decode ({_one_line(e)})") from None
        return source
    if isinstance(source, np.ndarray):
        if source.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"array of dtype {source.dtype}: pass uint8 (0-255) or uint16 pixels")
        if source.ndim == 3 and source.shape[2] == 1:
            source = source[:, :, 0]  # (H, W, 1): grey
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (2, 3, 4)):
            hint = (": channels first? pass arr.transpose(1, 2, 0)" if source.ndim == 3
                    and source.shape[0] in (1, 2, 3, 4) else "")
            raise ImageError(f"array of shape {source.shape} is not an image: pass (H, W) or "
                             f"(H, W, 1) grey, (H, W, 2) grey and alpha, or (H, W, 3|4) colour "
                             f"pixels{hint}")
        _check_pixels("array", source.shape[1], source.shape[0], max_pixels)
        if source.ndim == 3 and source.dtype == np.uint16:  # Pillow keeps 16 bits for grey only
            source = _to_8_bits(source.astype(np.float32), 65535.0)
        try:
            return Image.fromarray(source)
        except (TypeError, ValueError) as e:
            raise ImageError(f"array of shape {source.shape} and dtype {source.dtype} "
                             f"is not an image: {e}") from None
    name = _name(source)
    if hasattr(source, "read") and not isinstance(source, (str, os.PathLike)):
        name = _file_name(source)
        source = _read_file_object(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty image data")
        if len(source) > MAX_FILE_BYTES:
            raise ImageError(f"{name}: {len(source):,} bytes, over the limit of "
                             f"{MAX_FILE_BYTES:,} for one image")
        fp = io.BytesIO(source)
    elif not isinstance(source, (str, os.PathLike)):
        raise ImageError(f"{type(source).__name__} is not an image: pass a path, encoded bytes, a "
                         "binary file, a PIL image or a uint8 array")
    elif not str(source):
        raise ImageError("an empty path: give an image file")
    else:
        fp = io.BytesIO(_read_file(Path(source)))  # no open file left behind by a failed decode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd chunks; we report failures ourselves
            img = Image.open(fp, formats=FORMATS)
            if img.width == 0 or img.height == 0:
                raise ImageError(f"{name}: image is {img.width}x{img.height} pixels (empty)")
            _check_pixels(name, img.width, img.height, max_pixels)
            img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own limit, on opening: before ours
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = int(found.group(1)) if found else None
        size = f"of {pixels:,} pixels" if pixels else "larger than Pillow opens"
        if max_pixels is not None and pixels and pixels > max_pixels:  # ours would refuse it too
            raise _too_large(name, size, max_pixels) from None
        raise ImageTooLargeError(f"{name}: image {size}, over the limit of "
                                 f"{2 * (Image.MAX_IMAGE_PIXELS or 0):,} that Pillow opens at all "
                                 "(far larger than a captcha: is it the right file?)") from None
    except Exception as e:  # noqa: BLE001 - a decoder's failure, whatever its type, is this image's
        fmt = _looks_like(fp.getvalue()[:18])
        if fmt:  # truncated, or damaged inside: "fetch it again" is what helps
            why = "" if isinstance(e, UnidentifiedImageError) else f" ({_one_line(e)})"
            raise ImageError(f"{name}: a damaged {fmt} file{why}: it starts as one but "
                             "does not decode; fetch it again") from None
        if isinstance(e, UnidentifiedImageError):
            raise ImageError(f"{name}: not an image in a supported format "
                             f"({', '.join(FORMATS)})") from None
        raise ImageError(f"{name}: cannot decode image ({_one_line(e)})") from None
    return img


def _too_large(name: str, size: str, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{name}: image {size}, over the limit of {max_pixels:,} pixels (far "
                              "larger than a captcha: is it the right file? --max-pixels of "
                              "predict, eval and serve, and Reader.load(max_pixels=...), set the "
                              "limit)")


def _check_pixels(name: str, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _too_large(name, f"is {width}x{height}", max_pixels)


def _file_name(f) -> str:
    """An open file's name in messages: its path, "<stdin>", else "file object" (a ``BytesIO``)."""
    name = getattr(f, "name", None)
    return name if isinstance(name, str) else "file object"


def _read_file_object(f) -> bytes:
    """The bytes of an open binary file (or ``BytesIO``), at most one over the size
    limit (the check that follows refuses more), as one-line ``ImageError``s."""
    name = _file_name(f)
    try:
        data = f.read(MAX_FILE_BYTES + 1)
    except UnicodeDecodeError:
        raise ImageError(f"{name}: opened as text; open it in binary mode ('rb')") from None
    except (OSError, ValueError) as e:  # closed, unreadable
        raise ImageError(f"{name}: cannot read it ({_one_line(e)})") from None
    if isinstance(data, str):
        raise ImageError(f"{name}: opened as text; open it in binary mode ('rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError(f"{name}: read() gave {type(data).__name__}, not bytes (an async file? "
                         "read its bytes first)")
    if len(data) == 0:
        if name == "<stdin>":
            raise ImageError("<stdin>: no data: pipe an image in")
        raise ImageError(f"{name}: nothing left to read (at its end? seek(0) first)")
    return bytes(data)


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of encoded image bytes from the header alone (nothing decoded);
    None when the bytes are not an image in one of ``FORMATS``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                return img.size
    except Exception:  # noqa: BLE001 - not an image: decoding will say why, for that item
        return None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _read_file(path: Path) -> bytes:
    """The bytes of an image file, after checking that it is a regular file of a sane size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path}: not a regular file (a device, pipe or socket); pass an image file")
    if st.st_size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file is {st.st_size:,} bytes, over the limit of "
                         f"{MAX_FILE_BYTES:,} for one image")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)  # the file may have grown since stat
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{path}: file is over the limit of {MAX_FILE_BYTES:,} bytes for one image")
    return data


def _to_8_bits(a: np.ndarray, top: float) -> np.ndarray:
    """Float pixels from 0 to ``top`` as uint8 (floored), as every 16-bit input is read."""
    return np.clip(a * (255.0 / top), 0, 255).astype(np.uint8)


def to_array(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """Steps 2-5: decoded PIL image -> ``(C, H, W)`` float32 in [0, 1]."""
    # 2. colour mode: 16-bit and float to 8 bits, transparency onto white, then L or RGB.
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(_to_8_bits(a, top))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA") and img.getchannel("A").getextrema()[0] < 255:
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img.convert("RGBA"))
    mode = "L" if cfg.channels == 1 else "RGB"
    if img.mode != mode:
        img = img.convert(mode)
    # 3. crop to the model's box (fractions of the image) and resize to its input size
    #    (bilinear, as tf.image.resize), in one pass.
    if cfg.crop != (0.0, 0.0, 1.0, 1.0):
        left, top, right, bottom = cfg.crop
        box = (left * img.width, top * img.height, right * img.width, bottom * img.height)
        img = img.resize((cfg.width, cfg.height), Image.Resampling.BILINEAR, box=box)
    elif img.size != (cfg.width, cfg.height):
        img = img.resize((cfg.width, cfg.height), Image.Resampling.BILINEAR)
    # 4. scale to [0, 1].
    a = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
    # 5. layout (H, W[, C]) -> (C, H, W); the model turns width into time.
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def preprocess(
    source: ImageSource, cfg: ImageConfig, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read one image and make it a model input.

    Args:
        source: path, encoded bytes, PIL image or uint8 array.
        cfg: the model's input size and channels.
        max_pixels: refuse images larger than this, checked before decoding.

    Returns:
        ``(C, H, W)`` float32 array in [0, 1].

    Raises:
        ImageError: the source cannot be read as an image.
    """
    img = open_image(source, max_pixels)
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{_name(source)}: image is {img.width}x{img.height} pixels (empty)")
    try:
        return to_array(img, cfg)
    except Exception as e:  # noqa: BLE001 - a mode Pillow cannot convert, a failed resize
        raise ImageError(f"{_name(source)}: cannot convert {img.mode} image "
                         f"({_one_line(e)})") from None
