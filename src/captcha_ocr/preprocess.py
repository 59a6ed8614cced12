"""Image -> model input. One function, shared by training, evaluation and reading.

Conventions fixed here (the Keras tutorial's, written down):
- the input is ``(C, H, W)`` float32 in [0, 1], C = 1 (grey) or 3 (RGB);
- any size is resized (bilinear) to the model's ``width x height``; the network
  then downsamples width by 4 and reads the columns left to right as time steps;
- transparent pixels are composited on white, 16-bit images scaled to 8 bits.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .config import ImageConfig

__all__ = ["IMAGE_SUFFIXES", "ImageError", "ImageSource", "open_image", "preprocess", "to_array"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
DEFAULT_MAX_PIXELS = 4_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]  # noqa: UP007


class ImageError(ValueError):
    """An input could not be read as an image; the message is one line for the user."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than allowed (checked from the header, before decoding)."""


def _name(source: object) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def open_image(source: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Step 1: read ``source`` (path, encoded bytes, PIL image or array) into a decoded PIL image.

    Args:
        source: a file path, the bytes of an encoded image, a PIL image, or an
            ``(H, W)`` / ``(H, W, 3|4)`` uint8 array.
        max_pixels: refuse larger images from their header, before decoding (None: no limit).

    Returns:
        A fully decoded PIL image (truncated files fail here, not later).

    Raises:
        ImageError: the source is missing, not an image, truncated or too large.
    """
    if isinstance(source, Image.Image):
        try:
            source.load()  # a lazily opened image decodes (and may fail) here
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"PIL image: cannot decode ({e})") from None
        return source
    if isinstance(source, np.ndarray):
        if source.dtype not in (np.uint8, np.uint16):
            raise ImageError(f"array of dtype {source.dtype}: pass uint8 (0-255) or uint16 pixels")
        try:
            return Image.fromarray(source)
        except (TypeError, ValueError) as e:
            raise ImageError(f"array of shape {source.shape} and dtype {source.dtype} "
                             f"is not an image: {e}") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty image data")
        fp = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{path}: no such file")
        try:
            fp = io.BytesIO(path.read_bytes())  # no open file left behind by a failed decode
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd chunks; we report failures ourselves
            img = Image.open(fp)
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(
                    f"{_name(source)}: image is {img.width}x{img.height}, over the limit of "
                    f"{max_pixels:,} pixels"
                )
            img.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{_name(source)}: not an image (unknown format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"{_name(source)}: cannot decode image ({e})") from None
    return img


def to_array(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """Steps 2-5: decoded PIL image -> ``(C, H, W)`` float32 in [0, 1]."""
    # 2. colour mode: 16-bit and float to 8 bits, transparency onto white, then L or RGB.
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(a * (255.0 / top), 0, 255).astype(np.uint8))
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
    return to_array(open_image(source, max_pixels), cfg)
