"""Decide a model's input from the training images: size, colour and crop.

Sites draw captchas in every size and aspect, grey or coloured, and often in a fixed
part of a larger image (text in the left third of a gradient strip, say). One fixed
input (the tutorial's 200x50 grey) reads some of them and leaves others stuck on the
CTC plateau: when text covers a third of the width, the alignment CTC starts from
(characters spread evenly over the whole width) points at empty background. So the
recipe looks at the images first:

1. crop: the box where images differ from each other. Pixels that are the same in
   every image (a fixed gradient or frame) carry no text; text and per-image noise
   vary. A dimension is cropped only where the varying part covers under 85% of it,
   with a margin, so a site that fills its image is left whole. A row or column varies
   from 2% of the way between the least varying one (the noise floor) and the most:
   descenders are rare but are text (rsce_gradient5's rows 31-38 vary 4-6% as much as
   its busiest; a 10% threshold cut them off, 'g' read as 'c' and 'h' as 'n'; seed 1,
   500 labels, 500 held out: 0.900 -> 0.908).
2. height: 32 pixels. Larger inputs read no better and cost more: on captcha_images_v2
   (500 labels, 436 held out) 48 pixels read 0.986 and 32 pixels 0.984 in half the
   training time; on rsce_gradient5 (500/500) 40 pixels 0.65, 32 pixels 0.74
   (scripted runs, seed 1).
3. width: the cropped aspect ratio at that height, rounded to 4, and at least 16
   pixels (4 time steps) per character of the longest label. Fine-tuning: at least the
   width the model started from (the base: 128, the width it was pretrained at, where
   every zoo style was resized to 128x32). Narrower images stretched to it read better
   than at their own aspect (seed 1, 200 labels, 500 held out, from the base: line_mesh
   0.880 -> 0.956, hollow 0.956 -> 0.984, dots_noise 0.676 -> 0.724, imagecaptcha 0.304
   -> 0.386, henan_digits4 0.974 both); wider ones keep their own width (gradient_colour
   squeezed from 204 to 128 read 0.862 against 0.942).
4. channels: 3 where the images carry colour, 1 where they are grey.

No torch here: the CLI and the benches use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .config import ImageConfig
from .data import Sample
from .preprocess import ImageError, open_image

__all__ = ["ImageStats", "choose_image", "image_stats"]

MAX_LOOK = 256  # images looked at (an even spread over the dataset)
HEIGHT = 32
PIXELS_PER_CHAR = 16  # 4 time steps per character at the network's width / 4
CROP_BELOW = 0.85  # crop a dimension only where the varying part covers less than this
CROP_MARGIN = 0.06  # margin around the varying part, as a fraction of the dimension
VARYING = 0.02  # a row/column varies where its deviation is this share of the way from the
# smallest (the noise floor) to the largest
COLOUR = 0.01  # mean |channel - grey| (0-1 scale) above which images count as coloured


@dataclass(frozen=True)
class ImageStats:
    """What the images of a dataset look like.

    Attributes:
        width, height: the median source size in pixels.
        crop: (left, top, right, bottom) fractions: the part where images differ.
        chroma: mean distance of a pixel's channels from its grey level (0-1 scale).
        n: how many images were looked at.
    """

    width: int
    height: int
    crop: tuple[float, float, float, float]
    chroma: float
    n: int


def _extent(profile: np.ndarray) -> tuple[float, float]:
    """(start, end) fractions of the varying part of a deviation profile (whole if wide)."""
    n = len(profile)
    smooth = np.convolve(profile, np.ones(3) / 3, mode="same")
    floor, top = smooth.min(), smooth.max()
    if top <= floor:
        return 0.0, 1.0
    idx = np.flatnonzero(smooth >= floor + VARYING * (top - floor))
    start, end = idx[0] / n, (idx[-1] + 1) / n
    if end - start >= CROP_BELOW:
        return 0.0, 1.0
    return round(max(0.0, start - CROP_MARGIN), 4), round(min(1.0, end + CROP_MARGIN), 4)


def image_stats(samples: Sequence[Sample]) -> ImageStats:
    """Look at up to ``MAX_LOOK`` images spread over ``samples``.

    Raises:
        ImageError: none of the images looked at could be read.
    """
    step = max(1, len(samples) // MAX_LOOK)
    sizes, pixels = [], []
    for s in samples[::step][:MAX_LOOK]:
        try:
            img = open_image(s.path).convert("RGB")
        except (ImageError, ValueError, OSError):  # training skips these images too
            continue
        sizes.append(img.size)
        pixels.append(img)
    if not sizes:
        raise ImageError("none of the images could be read")
    w, h = (int(np.median([s[i] for s in sizes])) for i in (0, 1))
    # (N, h, w, 3) in [0, 1], every image at the median size.
    a = np.stack([np.asarray(p.resize((w, h), Image.Resampling.BILINEAR),
                             np.float32) for p in pixels]) / 255
    dev = np.abs(a - np.median(a, axis=0)).mean(axis=(0, 3))  # (h, w): how much images differ
    left, right = _extent(dev.mean(axis=0))
    top, bottom = _extent(dev.mean(axis=1))
    chroma = float(np.abs(a - a.mean(axis=3, keepdims=True)).mean())
    crop = (float(left), float(top), float(right), float(bottom))
    return ImageStats(w, h, crop, round(chroma, 5), len(sizes))


def _round4(x: float) -> int:
    return max(4, int(round(x / 4)) * 4)


def choose_image(stats: ImageStats, max_label_len: int, min_width: int = 0) -> ImageConfig:
    """The model input for images like ``stats`` with labels up to ``max_label_len``
    (at least ``min_width`` pixels wide: a fine-tuned model's starting width)."""
    left, top, right, bottom = stats.crop
    crop_w, crop_h = stats.width * (right - left), stats.height * (bottom - top)
    height = HEIGHT
    width = max(_round4(height * crop_w / crop_h), _round4(PIXELS_PER_CHAR * max_label_len),
                min_width)
    channels = 3 if stats.chroma > COLOUR else 1
    return ImageConfig(height, width, channels, stats.crop)
