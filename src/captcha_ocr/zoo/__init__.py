"""Seeded synthetic captcha styles: small generators in a registry by name, never stored.

Each style draws one image from ``(seed, index)`` alone: ``render("wavy", 0, 7)`` gives
the same pixels and label every time, in any process, with no global random state (a
``random.Random`` per image, seeded from a hash of style, seed and index). Fonts come
only from installed packages (matplotlib's TTFs and the ``captcha`` package's own), never
from the OS, so the output does not depend on the machine's fonts; it may change with
the Pillow or FreeType version.

Used by tests, benches and pretraining alike::

    from captcha_ocr.zoo import STYLES, render, sample, write_style
    image, label = render("dots_noise", seed=0, index=3)
    write_style("wavy", "data/wavy", n=500, seed=0)

Modules: ``fonts`` (finding, loading and caching fonts and glyphs), ``draw`` (colours,
backgrounds, noise, glyph layout), ``styles`` (one function per style, and ``STYLES``).
Only Pillow and numpy are imported; the fonts need matplotlib and ``captcha`` installed,
the ``train`` extra, and the wide pool (``render(..., fonts="wide")``, for pretraining)
ten font packages of PyPI: the ``fonts`` extra.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from ..data import LABELS_FILE, Sample
from ..modeldir import atomic_write
from ..preprocess import IMAGE_SUFFIXES
from .fonts import FONT_POOLS, ZooError, font_paths, fonts_for, pool
from .styles import STYLES, Style

# Bumped whenever a style draws differently for the same (seed, index): models record it.
ZOO_VERSION = 2

__all__ = ["FONT_POOLS", "STYLES", "ZOO_VERSION", "Style", "ZooError", "font_paths", "get_style", "pool",
           "render", "sample", "write_style"]


def get_style(style: str | Style) -> Style:
    """The registered style of that name (a ``Style`` is returned as is).

    Raises:
        ZooError: no style has that name.
    """
    if isinstance(style, Style):
        return style
    try:
        return STYLES[style]
    except KeyError:
        raise ZooError(f"unknown style {style!r}; known: {', '.join(STYLES)}") from None


def seeded_rng(key: str) -> random.Random:
    """A generator seeded from ``key`` by hashlib (not hash(): the same in every process)."""
    return random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=16).digest(), "big"))


def _rng(style: Style, seed: int, index: int) -> random.Random:
    return seeded_rng(f"{style.name}:{seed}:{index}")


def render(style: str | Style, seed: int, index: int, fonts: str = "zoo") -> tuple[Image.Image, str]:
    """Draw image number ``index`` of a style's seeded stream.

    Args:
        style: a style name (see ``STYLES``) or a ``Style``.
        seed: the stream.
        index: the image's place in the stream.
        fonts: ``"zoo"``, the style's own fonts; ``"wide"``, those and the font packages'
            faces of the same looks (``fonts.pool``: pretraining sees more typefaces than
            the zoo's images show).

    Returns:
        ``(RGB image of the style's size, label)``: the same for the same arguments, always.

    Raises:
        ZooError: unknown style or font pool, or its fonts are not installed.
    """
    style = get_style(style)
    rng = _rng(style, seed, index)
    text = style.label(rng)
    return style.draw(rng, text, style.size, fonts_for(pool(style.fonts, fonts), style.alphabet)), text


def sample(style: str | Style, seed: int, n: int, start: int = 0) -> Iterator[tuple[Image.Image, str]]:
    """Images ``start .. start + n - 1`` of a style's stream, drawn as they are asked for.

    Returns:
        An iterator of ``(image, label)``, as ``render`` gives them.
    """
    style = get_style(style)
    return (render(style, seed, i) for i in range(start, start + n))


def write_style(
    style: str | Style, folder: str | Path, n: int, seed: int = 0, fmt: str = "png"
) -> list[Sample]:
    """Write images 0 .. n-1 of a style's stream as ``000000.png ...`` and their ``labels.csv``.

    Args:
        style: a style name or a ``Style``.
        folder: where to write; created if missing, and must not hold images yet.
        n: how many images.
        seed: the stream.
        fmt: image format by file suffix: png, jpg, jpeg, gif, bmp, webp.

    Returns:
        The written samples, as ``captcha_ocr.data.discover`` reads them back.

    Raises:
        ZooError: unknown style or format, or the folder already holds images.
    """
    style, folder, fmt = get_style(style), Path(folder), fmt.lower()
    if f".{fmt}" not in IMAGE_SUFFIXES:
        raise ZooError(f"unknown image format {fmt!r}; use one of {', '.join(s[1:] for s in IMAGE_SUFFIXES)}")
    if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        raise ZooError(f"{folder}: already holds images; write to an empty folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ZooError(f"{folder}: is a file (or under one), not a folder; write to a folder") from None
    except OSError as e:
        raise ZooError(f"{folder}: cannot create the folder ({e.strerror})") from None
    digits = max(6, len(str(n - 1)))
    samples = []
    for i, (img, label) in enumerate(sample(style, seed, n)):
        path = folder / f"{i:0{digits}d}.{fmt}"
        img.save(path)
        samples.append(Sample(path, label))
    _write_labels(folder / LABELS_FILE, samples)
    return samples


def _write_labels(path: Path, samples: list[Sample]) -> None:
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file", "label"])
    writer.writerows((s.path.name, s.label) for s in samples)
    atomic_write(path, rows.getvalue())
