"""Seeded synthetic captcha styles: small generators in a registry by name, never stored.

Each style draws one image from ``(seed, index)`` alone: ``render("wavy", 0, 7)`` gives
the same pixels and label every time, in any process, with no global random state (a
``random.Random`` per image, seeded from a hash of style, seed and index). Fonts come
only from installed packages (matplotlib's TTFs and the ``captcha`` package's own), never
from the OS, so the output does not depend on the machine's fonts; it may change with
the Pillow or FreeType version.

Used by tests, benches and pretraining alike::

    from captcha_ocr.zoo import STYLES, render, write_style
    image, label = render("dots_noise", seed=0, index=3)
    write_style("wavy", "data/wavy", n=500, seed=0)

Only Pillow and numpy are imported; the fonts need matplotlib and ``captcha`` installed
(the ``train`` extra).
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import importlib.util
import io
import math
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from .data import LABELS_FILE, Sample
from .modeldir import atomic_write
from .preprocess import IMAGE_SUFFIXES

__all__ = ["STYLES", "Style", "ZooError", "font_paths", "get_style", "render", "sample", "write_style"]

Colour = tuple[int, int, int]
Size = tuple[int, int]  # (width, height)


class ZooError(ValueError):
    """An unknown style, a missing font package or a bad output folder (one-line message)."""


# ---------------------------------------------------------------- fonts

# Font files by stem, grouped by look. All ship with matplotlib, except DroidSansMono (captcha).
SANS = ("DejaVuSans", "DejaVuSans-Oblique", "DejaVuSansMono", "DroidSansMono", "cmss10")
SERIF = ("DejaVuSerif", "DejaVuSerif-Italic", "STIXGeneral", "STIXGeneralItalic", "cmr10", "cmti10")
BOLD = (
    "DejaVuSans-Bold",
    "DejaVuSans-BoldOblique",
    "DejaVuSerif-Bold",
    "DejaVuSerif-BoldItalic",
    "DejaVuSansMono-Bold",
    "STIXGeneralBol",
    "cmb10",
)
MONO = ("DejaVuSansMono", "DejaVuSansMono-Oblique", "DroidSansMono", "cmtt10")
_PACKAGE_FONTS = (("matplotlib", "mpl-data/fonts/ttf"), ("captcha", "data"))
_SYSTEM_FONTS = Path("/usr/share/fonts/truetype")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@lru_cache(maxsize=2)
def font_paths(system: bool = False) -> dict[str, Path]:
    """TrueType fonts of the installed packages (matplotlib, captcha), by file stem.

    Args:
        system: also list the OS fonts under /usr/share/fonts/truetype when present. The
            styles never use them, so that their output does not depend on the OS.

    Returns:
        ``{stem: path}``; a package's font wins over an OS font of the same stem.
    """
    found: dict[str, Path] = {}
    if system and _SYSTEM_FONTS.is_dir():
        found |= {p.stem: p for p in sorted(_SYSTEM_FONTS.rglob("*.ttf"))}
    for package, sub in _PACKAGE_FONTS:
        root = _package_dir(package)
        if root is not None and (root / sub).is_dir():
            found |= {p.stem: p for p in sorted((root / sub).glob("*.ttf"))}
    return found


@lru_cache(maxsize=512)
def _font(stem: str, size: int) -> ImageFont.FreeTypeFont:
    path = font_paths().get(stem)
    if path is None:
        raise ZooError(
            f"font {stem!r} not found: the zoo needs the matplotlib and captcha packages "
            "(pip install 'captcha-ocr[train]')"
        )
    return ImageFont.truetype(str(path), size)


def _has_glyph(font: ImageFont.FreeTypeFont, ch: str) -> bool:
    mask = font.getmask(ch)
    missing = font.getmask("\U0010fffd")  # a code point no font here maps: the .notdef glyph
    return mask.getbbox() is not None and (mask.size != missing.size or bytes(mask) != bytes(missing))


@lru_cache(maxsize=256)
def _fonts_for(stems: tuple[str, ...], alphabet: str) -> tuple[str, ...]:
    """The fonts among ``stems`` that draw every character of ``alphabet``."""
    ok = tuple(s for s in dict.fromkeys(stems) if all(_has_glyph(_font(s, 24), c) for c in alphabet))
    if not ok:
        raise ZooError(f"none of the fonts {', '.join(stems)} draws all of {alphabet!r}")
    return ok


@lru_cache(maxsize=64)
def _scale(stem: str) -> float:
    """Font size factor that gives this font's capitals DejaVu Sans's height (cm and STIX draw
    smaller at the same size)."""
    return _cap_height("DejaVuSans") / _cap_height(stem)


def _cap_height(stem: str) -> float:
    return max(1, -_font(stem, 100).getbbox("H", anchor="ls")[1])


@lru_cache(maxsize=16384)
def _glyph(stem: str, size: int, ch: str, stroke: int = 0) -> tuple[Image.Image, int]:
    """One character's coverage mask ('L', cropped to its ink; shared, never modify it) and
    the height of its top above the baseline (negative). ``stroke`` > 0: the outline only."""
    font = _font(stem, size)
    left, top, right, bottom = font.getbbox(ch, anchor="ls", stroke_width=stroke)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    draw = ImageDraw.Draw(mask)
    draw.text((-left, -top), ch, fill=255, font=font, anchor="ls", stroke_width=stroke, stroke_fill=255)
    if stroke:
        inner = Image.new("L", mask.size)
        ImageDraw.Draw(inner).text((-left, -top), ch, fill=255, font=font, anchor="ls")
        mask = ImageChops.subtract(mask, inner)
    return mask, top


# ---------------------------------------------------------------- colours and backgrounds


def _rgb(rng: random.Random, lo: int, hi: int) -> Colour:
    return rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi)


def _grey(rng: random.Random, lo: int, hi: int) -> Colour:
    g = rng.randint(lo, hi)
    return g, g, g


def _hsv(rng: random.Random, s: tuple[float, float], v: tuple[float, float]) -> Colour:
    """A colour of random hue with saturation and value drawn from the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return round(r * 255), round(g * 255), round(b * 255)


def _mix(a: Colour, b: Colour, t: float) -> Colour:
    """``a`` moved a fraction ``t`` of the way towards ``b``."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _hgradient(size: Size, left: Colour, right: Colour) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]  # (1, W, 1)
    row = np.asarray(left, np.float32) * (1 - t) + np.asarray(right, np.float32) * t
    return Image.fromarray(np.repeat(row, h, axis=0).round().astype(np.uint8), "RGB")


def _noisy(rng: random.Random, size: Size, base: Colour, spread: int) -> Image.Image:
    """A flat background with per-pixel noise of +-``spread``."""
    w, h = size
    g = np.random.default_rng(rng.getrandbits(64))
    a = np.asarray(base, np.int16) + g.integers(-spread, spread + 1, (h, w, 1), dtype=np.int16)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB")


def _speckle(img: Image.Image, rng: random.Random, density: float, lo: int, hi: int) -> Image.Image:
    """Set a share ``density`` of pixels to random greys in [lo, hi] (salt-and-pepper noise)."""
    a = np.array(img)
    g = np.random.default_rng(rng.getrandbits(64))
    hit = g.random(a.shape[:2]) < density
    a[hit] = g.integers(lo, hi + 1, (int(hit.sum()), 1), dtype=np.uint8)
    return Image.fromarray(a, "RGB")


# ---------------------------------------------------------------- noise strokes


def _lines(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    n: int,
    size: Size,
    colour: Callable[[], Colour],
    width: tuple[int, int] = (1, 1),
) -> None:
    """``n`` straight lines from the left half to the right half of the image."""
    w, h = size
    for _ in range(n):
        start = (rng.uniform(-0.1, 0.4) * w, rng.uniform(0, h))
        end = (rng.uniform(0.6, 1.1) * w, rng.uniform(0, h))
        draw.line([start, end], fill=colour(), width=rng.randint(*width))


def _curve(
    draw: ImageDraw.ImageDraw, rng: random.Random, size: Size, colour: Colour | int, width: int = 1
) -> None:
    """One quadratic Bezier curve across the image, as a polyline."""
    w, h = size
    (x0, y0), (x1, y1) = (
        (rng.uniform(-0.1, 0.3) * w, rng.uniform(0.1, 0.9) * h),
        (rng.uniform(0.7, 1.1) * w, rng.uniform(0.1, 0.9) * h),
    )
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(-0.6, 1.6) * h
    ts = [i / 16 for i in range(17)]
    pts = [
        (
            (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t * t * x1,
            (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t * t * y1,
        )
        for t in ts
    ]
    draw.line(pts, fill=colour, width=width, joint="curve")


def _sine(
    draw: ImageDraw.ImageDraw, rng: random.Random, size: Size, colour: Colour | int, width: int
) -> None:
    """One sine-shaped line across the whole width."""
    w, h = size
    y, amp, period, phase = (
        rng.uniform(0.3, 0.7) * h,
        rng.uniform(0.1, 0.3) * h,
        rng.uniform(0.5, 1.5) * w,
        rng.uniform(0, 2 * math.pi),
    )
    pts = [(x, y + amp * math.sin(2 * math.pi * x / period + phase)) for x in range(0, w + 6, 6)]
    draw.line(pts, fill=colour, width=width, joint="curve")


def _dots(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    n: int,
    size: Size,
    colour: Callable[[], Colour],
    radius: tuple[float, float],
) -> None:
    w, h = size
    for _ in range(n):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(*radius)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour())


# ---------------------------------------------------------------- glyph layout


@dataclass
class _Piece:
    """One thing to paste: an 'L' coverage mask painted in ``fill``, or an 'RGBA' image
    (``fill`` None) pasted through its own alpha; ``x, y`` is its top-left corner."""

    mask: Image.Image
    x: float
    y: float
    fill: Colour | int | None = None


def _set_line(
    rng: random.Random,
    text: str,
    fonts: tuple[str, ...],
    sizes: tuple[int, int],
    angle: float = 0.0,
    gap: tuple[float, float] = (0.0, 0.1),
    dy: float = 0.05,
    stroke: int = 0,
    jitter: float = 0.06,
) -> list[_Piece]:
    """Lay ``text`` out on a baseline at y = 0, each glyph in a random font, in a size within
    ``jitter`` of the line's (drawn from ``sizes``), turned by up to +-``angle`` degrees, moved
    up/down by up to ``dy`` and followed by a gap of ``gap`` (fractions of the font size;
    negative gaps make glyphs touch or overlap)."""
    pieces, pen, base = [], 0.0, rng.randint(*sizes)
    for ch in text:
        stem = rng.choice(fonts)
        size = round(base * _scale(stem) * rng.uniform(1 - jitter, 1 + jitter))
        mask, top = _glyph(stem, size, ch, stroke)
        cx, cy = pen + mask.width / 2, top + mask.height / 2 + rng.uniform(-dy, dy) * size
        if angle:
            mask = mask.rotate(rng.uniform(-angle, angle), Image.Resampling.BILINEAR, expand=True)
        pieces.append(_Piece(mask, cx - mask.width / 2, cy - mask.height / 2))
        pen = cx + mask.width / 2 + rng.uniform(*gap) * size
    return pieces


def _fit(pieces: list[_Piece], box: tuple[int, int, int, int], rng: random.Random) -> list[_Piece]:
    """Shrink the pieces together if they overflow ``box`` (x0, y0, x1, y1), then move them
    to a random place inside it: nothing is clipped."""
    x0, y0 = min(p.x for p in pieces), min(p.y for p in pieces)
    x1, y1 = max(p.x + p.mask.width for p in pieces), max(p.y + p.mask.height for p in pieces)
    bw, bh = box[2] - box[0], box[3] - box[1]
    s = min(1.0, bw / (x1 - x0), bh / (y1 - y0))
    ox, oy = box[0] + rng.uniform(0, bw - s * (x1 - x0)), box[1] + rng.uniform(0, bh - s * (y1 - y0))
    out = []
    for p in pieces:
        mask = p.mask
        if s < 1:
            mask = mask.resize(
                (max(1, int(mask.width * s)), max(1, int(mask.height * s))), Image.Resampling.BILINEAR
            )
        out.append(_Piece(mask, ox + (p.x - x0) * s, oy + (p.y - y0) * s, p.fill))
    return out


def _paint(canvas: Image.Image, pieces: list[_Piece]) -> None:
    for p in pieces:
        at = (round(p.x), round(p.y))
        canvas.paste(p.mask if p.fill is None else p.fill, at, p.mask)


def _text_band(pieces: list[_Piece]) -> tuple[float, float, float, float]:
    return (
        min(p.x for p in pieces),
        min(p.y for p in pieces),
        max(p.x + p.mask.width for p in pieces),
        max(p.y + p.mask.height for p in pieces),
    )


# ---------------------------------------------------------------- labels


def _random_text(rng: random.Random, alphabet: str, lengths: tuple[int, int]) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(*lengths)))


def _expression(rng: random.Random, lengths: tuple[int, int], suffixes: tuple[str, ...]) -> str:
    """``a op b`` plus a suffix such as "=" or "=?", with ``a >= b`` for "-"."""
    while True:
        op = rng.choice("+-x")
        a, b = (rng.randint(0, 10 ** rng.randint(1, 2) - 1) for _ in range(2))
        if op == "x":
            b %= 10
        a, b = (b, a) if op == "-" and a < b else (a, b)
        text = f"{a}{op}{b}{rng.choice(suffixes)}"
        if lengths[0] <= len(text) <= lengths[1]:
            return text


# ---------------------------------------------------------------- the styles


def _imagecaptcha(rng: random.Random, text: str, size: Size) -> Image.Image:
    """The captcha package's ImageCaptcha algorithm (version 0.7), with a seeded generator:
    thick glyphs turned and warped, overlapping, squeezed to fit, dots and an arc."""
    w, h = size
    bg, fg = _rgb(rng, 238, 255), _mix(_rgb(rng, 10, 200), _rgb(rng, 238, 255), rng.uniform(0, 0.14))
    fonts = _fonts_for(("DroidSansMono", "DejaVuSans", "DejaVuSerif", "DejaVuSansMono-Bold"), text)
    masks = []
    for c in text:
        font = _font(rng.choice(fonts), round(rng.choice((42, 50, 56)) * h / 60))
        if rng.random() > 0.5:  # the package's optional space before a character
            masks.append(Image.new("L", (round(font.getlength(" ")), 1)))
        masks.append(_warped_char(rng, c, font))
    text_width = sum(m.width for m in masks)
    canvas = Image.new("RGB", (max(text_width, w), h), bg)
    average = text_width // len(text)
    offset = average // 10
    for m in masks:
        canvas.paste(fg, (offset, (h - m.height) // 2), m)
        offset += m.width - rng.randint(0, int(0.25 * average))
    if canvas.width > w:
        canvas = canvas.resize((w, h))
    draw = ImageDraw.Draw(canvas)
    for _ in range(30):
        x, y = rng.randint(0, w), rng.randint(0, h)
        draw.line(((x, y), (x - 1, y - 1)), fill=fg, width=3)
    x1, x2 = rng.randint(0, w // 5), rng.randint(w // 5, w)
    y1 = rng.randint(h // 5, h - h // 5)
    y2 = rng.randint(y1, h - h // 5)
    draw.arc((x1, y1, x2, y2), rng.randint(0, 20), rng.randint(160, 200), fill=fg)
    return canvas.filter(ImageFilter.SMOOTH)


def _warped_char(rng: random.Random, c: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    _, _, w, h = (round(v) for v in font.getbbox(c))
    w, h = w + 1, h + 1
    dx, dy = rng.randint(0, 4), rng.randint(0, 6)
    im = Image.new("L", (w + dx, h + dy))
    ImageDraw.Draw(im).text((dx, dy), c, fill=255, font=font)
    im = im.crop(im.getbbox())
    im = im.rotate(rng.uniform(-30, 30), Image.Resampling.BILINEAR, expand=True)
    wx, wy = w * rng.random() * 0.2 + 0.1, h * rng.random() * 0.1 + 0.2
    x1, y1, x2, y2 = (int(rng.uniform(-d, d)) for d in (wx, wy, wx, wy))
    w2, h2 = w + abs(x1) + abs(x2), h + abs(y1) + abs(y2)
    quad = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)
    return im.resize((w2, h2)).transform((w, h), Image.Transform.QUAD, quad)


def _gradient_colour(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Each character in its own colour and font on a dark-to-light horizontal grey gradient."""
    w, h = size
    dark, light = rng.randint(30, 80), rng.randint(200, 245)
    canvas = _hgradient(size, (dark,) * 3, (light,) * 3)
    fonts = _fonts_for(SANS + SERIF + BOLD, text)
    pieces = _fit(
        _set_line(
            rng, text, fonts, (round(h * 0.7), round(h * 0.9)), angle=15, gap=(0.1, 0.6), dy=0.08, jitter=0.15
        ),
        (4, 1, w - 4, h - 1),
        rng,
    )
    for p in pieces:
        under = dark + (light - dark) * (p.x + p.mask.width / 2) / w
        p.fill = _hsv(rng, (0.5, 1.0), (0.8, 1.0) if under < 120 else (0.15, 0.45))
    _paint(canvas, pieces)
    return canvas


def _rotated_tiles(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Each glyph dark on its own pale, tilted square tile, on a white page."""
    w, h = size
    canvas = Image.new("RGB", size, _grey(rng, 240, 255))
    fonts = _fonts_for(SANS + BOLD, "0123456789+-x=")
    pieces, x = [], 0.0
    for ch in text:
        side = rng.randint(h - 8, h - 3)
        pale = _hsv(rng, (0.08, 0.3), (0.88, 1.0))
        tile = Image.new("RGBA", (side, side), (*pale, 255))
        stem = rng.choice(fonts)
        mask, _ = _glyph(stem, round(side * _scale(stem) * rng.uniform(0.75, 0.9)), ch)
        at = ((side - mask.width) // 2 + rng.randint(-1, 1), (side - mask.height) // 2 + rng.randint(-1, 1))
        tile.paste(_hsv(rng, (0.4, 1.0), (0.1, 0.45)), at, mask)
        tile = tile.rotate(rng.uniform(-30, 30), Image.Resampling.BILINEAR, expand=True, fillcolor=(*pale, 0))
        pieces.append(_Piece(tile, x, rng.uniform(-1.5, 1.5) - tile.height / 2))
        x += tile.width * rng.uniform(0.85, 1.5)
    _paint(canvas, _fit(pieces, (2, 1, w - 2, h - 1), rng))
    return canvas


def _arithmetic(rng: random.Random, text: str, size: Size) -> Image.Image:
    """A sum to solve ("23x4=?") in dark glyphs on a noisy light background with lines."""
    w, h = size
    canvas = _noisy(rng, size, _rgb(rng, 200, 240), spread=rng.randint(15, 35))
    draw = ImageDraw.Draw(canvas)
    _lines(draw, rng, rng.randint(2, 4), size, lambda: _hsv(rng, (0.2, 0.7), (0.5, 0.9)))
    fonts = _fonts_for(SANS + SERIF + BOLD, "0123456789+-x=?")
    ink = _hsv(rng, (0.0, 0.8), (0.0, 0.35))
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=12, gap=(0.0, 0.2)),
        (3, 2, w - 3, h - 2),
        rng,
    )
    for p in pieces:
        p.fill = ink
    _paint(canvas, pieces)
    _lines(draw, rng, 1, size, lambda: _mix(ink, (255, 255, 255), 0.4))
    return canvas


def _mesh(draw: ImageDraw.ImageDraw, rng: random.Random, size: Size) -> None:
    """Two crossing families of thin, roughly parallel lines in random colours."""
    w, h = size
    for across in (True, False):
        slope, step = rng.uniform(-0.6, 0.6), rng.uniform(5, 9)
        span = (w if across else h) * 0.6 + (h if across else w)
        c = -span / 2 + rng.uniform(0, step)
        while c < (h if across else w) + span / 2:
            colour = _hsv(rng, (0.2, 0.7), (0.7, 0.95))
            if across:
                draw.line([(0, c), (w, c + slope * w)], fill=colour)
            else:
                draw.line([(c, 0), (c + slope * h, h)], fill=colour)
            c += step + rng.uniform(-1.5, 1.5)


def _line_mesh(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Small mixed-case text in several fonts and colours over a mesh of thin coloured lines."""
    w, h = size
    canvas = Image.new("RGB", size, _rgb(rng, 230, 255))
    draw = ImageDraw.Draw(canvas)
    _mesh(draw, rng, size)
    fonts = _fonts_for(SANS + BOLD + BOLD + MONO, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.6), round(h * 0.8)), angle=20, gap=(-0.05, 0.15)),
        (2, 1, w - 2, h - 1),
        rng,
    )
    for p in pieces:
        p.fill = _hsv(rng, (0.5, 1.0), (0.1, 0.45))
    _paint(canvas, pieces)
    _lines(draw, rng, rng.randint(1, 2), size, lambda: _hsv(rng, (0.5, 1.0), (0.3, 0.7)))
    return canvas


def _bold_caps(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Bold capitals, each in its own colour, some of them faint (low contrast)."""
    w, h = size
    bg = _rgb(rng, 225, 255)
    canvas = Image.new("RGB", size, bg)
    fonts = _fonts_for(BOLD, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.65), round(h * 0.85)), angle=15, gap=(-0.08, 0.12)),
        (2, 1, w - 2, h - 1),
        rng,
    )
    for p in pieces:
        p.fill = _hsv(rng, (0.6, 1.0), (0.3, 0.85))
        if rng.random() < 0.3:
            p.fill = _mix(p.fill, bg, rng.uniform(0.35, 0.55))
    _paint(canvas, pieces)
    return canvas


# (background, ink) pairs, like sites' colour schemes
_THEMES: tuple[tuple[Colour, Colour], ...] = (
    ((255, 255, 255), (20, 20, 20)),
    ((250, 245, 215), (30, 60, 160)),
    ((225, 225, 225), (150, 20, 20)),
    ((215, 235, 250), (10, 30, 90)),
    ((240, 230, 210), (40, 110, 40)),
    ((40, 40, 48), (235, 235, 235)),
)


def _digits_strike(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Digits in one of a few colour themes, struck through by two or three lines of ink."""
    w, h = size
    bg, ink = (_mix(c, _rgb(rng, 0, 255), 0.1) for c in rng.choice(_THEMES))
    canvas = Image.new("RGB", size, bg)
    fonts = _fonts_for(SANS + SERIF + BOLD + MONO, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.7), round(h * 0.9)), angle=10, gap=(0.05, 0.4)),
        (4, 2, w - 4, h - 2),
        rng,
    )
    for p in pieces:
        p.fill = ink
    _paint(canvas, pieces)
    x0, y0, x1, y1 = _text_band(pieces)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(2, 3)):
        ya, yb = (rng.uniform(y0 + 0.25 * (y1 - y0), y1 - 0.25 * (y1 - y0)) for _ in range(2))
        draw.line(
            [(x0 - rng.uniform(0, 8), ya), (x1 + rng.uniform(0, 8), yb)], fill=ink, width=rng.randint(1, 2)
        )
    return canvas


def _dots_noise(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Dark text buried in heavy speckle and dot noise."""
    w, h = size
    canvas = Image.new("RGB", size, _grey(rng, 215, 255))
    fonts = _fonts_for(SANS + SERIF + BOLD, text)
    ink = _grey(rng, 0, 70)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.55), round(h * 0.75)), angle=15, gap=(0.0, 0.25)),
        (3, 2, w - 3, h - 2),
        rng,
    )
    for p in pieces:
        p.fill = ink
    _paint(canvas, pieces)
    _dots(ImageDraw.Draw(canvas), rng, rng.randint(60, 120), size, lambda: _grey(rng, 0, 150), (0.5, 1.6))
    return _speckle(canvas, rng, rng.uniform(0.08, 0.18), 0, 160)


def _dark_bg(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Light glowing text on a dark background with dim noise."""
    w, h = size
    bg = _hsv(rng, (0.2, 0.8), (0.05, 0.25))
    canvas = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(canvas)
    _dots(draw, rng, rng.randint(20, 50), size, lambda: _mix(bg, _rgb(rng, 80, 200), 0.4), (0.5, 1.5))
    _lines(draw, rng, rng.randint(1, 3), size, lambda: _mix(bg, _rgb(rng, 100, 255), 0.35))
    fonts = _fonts_for(SANS + BOLD + MONO, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=12, gap=(0.05, 0.3)),
        (5, 4, w - 5, h - 4),
        rng,
    )
    layer = Image.new("L", size)
    for p in pieces:
        p.fill = 255
    _paint(layer, pieces)
    glow = _mix(bg, _hsv(rng, (0.3, 1.0), (0.7, 1.0)), 0.6)
    canvas.paste(glow, (0, 0), layer.filter(ImageFilter.BoxBlur(rng.choice((1, 2)))))
    canvas.paste(_hsv(rng, (0.0, 0.35), (0.88, 1.0)), (0, 0), layer)
    return canvas


def _warp(mask: Image.Image, amp: float, period: float, phase: float, step: int = 6) -> Image.Image:
    """Shift each column of ``mask`` up or down by ``amp * sin(2 pi x / period + phase)``."""
    w, h = mask.size
    mesh = []
    for x in range(0, w, step):
        x2 = min(x + step, w)
        d1, d2 = (amp * math.sin(2 * math.pi * v / period + phase) for v in (x, x2))
        mesh.append(((x, 0, x2, h), (x, d1, x, h + d1, x2, h + d2, x2, d2)))  # NW, SW, SE, NE
    return mask.transform(mask.size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)


def _wavy(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Text and crossing lines warped together by a sine wave, on a light noisy background."""
    w, h = size
    amp = rng.uniform(0.06, 0.12) * h
    canvas = _noisy(rng, size, _rgb(rng, 215, 250), spread=rng.randint(5, 20))
    fonts = _fonts_for(SANS + SERIF + BOLD, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=10, gap=(0.0, 0.25)),
        (6, round(amp) + 4, w - 6, h - round(amp) - 4),
        rng,
    )
    layer = Image.new("L", size)
    for p in pieces:
        p.fill = 255
    _paint(layer, pieces)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(1, 3)):
        _sine(draw, rng, size, 255, rng.randint(1, 3))
    layer = _warp(layer, amp, rng.uniform(0.3, 0.8) * w, rng.uniform(0, 2 * math.pi))
    ink = _hgradient(size, _hsv(rng, (0.4, 1.0), (0.15, 0.55)), _hsv(rng, (0.4, 1.0), (0.15, 0.55)))
    canvas.paste(ink, (0, 0), layer)
    return canvas


def _pastel_digits(rng: random.Random, text: str, size: Size) -> Image.Image:
    """A few small digits over a pastel background crossed by thin curves."""
    w, h = size
    canvas = Image.new("RGB", size, _hsv(rng, (0.08, 0.3), (0.93, 1.0)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(1, 2)):
        _curve(draw, rng, size, _hsv(rng, (0.3, 0.8), (0.5, 0.85)))
    fonts = _fonts_for(SANS + SERIF + BOLD + MONO, text)
    pieces = _fit(
        _set_line(rng, text, fonts, (round(h * 0.6), round(h * 0.8)), angle=20, gap=(-0.05, 0.15)),
        (2, 1, w - 2, h - 1),
        rng,
    )
    for p in pieces:
        p.fill = _hsv(rng, (0.4, 1.0), (0.2, 0.6))
    _paint(canvas, pieces)
    for _ in range(rng.randint(1, 2)):
        _curve(draw, rng, size, _hsv(rng, (0.3, 0.8), (0.4, 0.8)))
    return canvas


def _hollow(rng: random.Random, text: str, size: Size) -> Image.Image:
    """Outlined (hollow) bold glyphs over a few faint lines."""
    w, h = size
    canvas = Image.new("RGB", size, _rgb(rng, 235, 255))
    draw = ImageDraw.Draw(canvas)
    _lines(draw, rng, rng.randint(3, 6), size, lambda: _hsv(rng, (0.1, 0.5), (0.7, 0.9)))
    fonts = _fonts_for(BOLD, text)
    ink = _hsv(rng, (0.3, 1.0), (0.05, 0.4))
    pieces = _fit(
        _set_line(
            rng,
            text,
            fonts,
            (round(h * 0.65), round(h * 0.85)),
            angle=12,
            gap=(-0.05, 0.15),
            stroke=rng.choice((1, 2)),
        ),
        (3, 2, w - 3, h - 2),
        rng,
    )
    for p in pieces:
        p.fill = ink
    _paint(canvas, pieces)
    return canvas


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Style:
    """One captcha style.

    Attributes:
        name: registry key.
        description: one line.
        alphabet: every character a label may hold.
        lengths: (shortest, longest) label length.
        size: image (width, height) in pixels.
        draw: ``(rng, text, size) -> RGB image`` of ``text``.
        text: ``(rng, lengths) -> label``, for labels that are not random strings of the
            alphabet (sums); None: random characters of the alphabet.
    """

    name: str
    description: str
    alphabet: str
    lengths: tuple[int, int]
    size: Size
    draw: Callable[[random.Random, str, Size], Image.Image]
    text: Callable[[random.Random, tuple[int, int]], str] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.lengths[0] <= self.lengths[1]:
            raise ValueError(f"{self.name}: bad lengths {self.lengths}")

    def label(self, rng: random.Random) -> str:
        """A random label of this style."""
        if self.text is not None:
            return self.text(rng, self.lengths)
        return _random_text(rng, self.alphabet, self.lengths)


_CLEAR_LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o: too like 1, 0
_CLEAR_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
_CLEAR_DIGITS = "23456789"
_SUMS = "0123456789+-x="

STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            "imagecaptcha",
            "the captcha package's ImageCaptcha: warped overlapping glyphs, dots, an arc",
            string.ascii_letters + string.digits,
            (4, 6),
            (160, 60),
            _imagecaptcha,
        ),
        Style(
            "gradient_colour",
            "each character in its own colour and font on a dark-to-light grey gradient",
            _CLEAR_LOWER + _CLEAR_DIGITS,
            (5, 5),
            (255, 40),
            _gradient_colour,
        ),
        Style(
            "rotated_tiles",
            "a sum like 12-4, each glyph on its own pale tilted tile",
            _SUMS,
            (3, 5),
            (155, 30),
            _rotated_tiles,
            lambda rng, n: _expression(rng, n, ("", "", "=")),
        ),
        Style(
            "arithmetic",
            "a sum to solve like 23x4=? in dark glyphs on a noisy background",
            _SUMS + "?",
            (4, 7),
            (120, 40),
            _arithmetic,
            lambda rng, n: _expression(rng, n, ("=", "=?")),
        ),
        Style(
            "line_mesh",
            "small mixed-case text in several fonts over a mesh of thin coloured lines",
            _CLEAR_LOWER + _CLEAR_UPPER + _CLEAR_DIGITS,
            (4, 4),
            (92, 34),
            _line_mesh,
        ),
        Style(
            "bold_caps",
            "bold capitals in varied colours, some faint",
            _CLEAR_UPPER,
            (4, 4),
            (100, 35),
            _bold_caps,
        ),
        Style(
            "digits_strike",
            "digits in a colour theme, struck through by two or three lines",
            string.digits,
            (4, 4),
            (152, 42),
            _digits_strike,
        ),
        Style(
            "dots_noise",
            "dark text in heavy speckle and dot noise",
            _CLEAR_LOWER + _CLEAR_DIGITS,
            (6, 6),
            (180, 50),
            _dots_noise,
        ),
        Style(
            "dark_bg",
            "light glowing text on a dark background",
            _CLEAR_UPPER + _CLEAR_DIGITS,
            (5, 7),
            (200, 60),
            _dark_bg,
        ),
        Style(
            "wavy",
            "text and lines warped by a sine wave, gradient ink",
            _CLEAR_LOWER + _CLEAR_UPPER,
            (3, 8),
            (300, 80),
            _wavy,
        ),
        Style(
            "pastel_digits",
            "tiny digits on a pastel background with thin curves",
            string.digits,
            (4, 4),
            (70, 30),
            _pastel_digits,
        ),
        Style(
            "hollow",
            "outlined bold capitals and digits over faint lines",
            _CLEAR_UPPER + _CLEAR_DIGITS,
            (5, 5),
            (140, 50),
            _hollow,
        ),
    )
}


# ---------------------------------------------------------------- the API


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


def _rng(style: Style, seed: int, index: int) -> random.Random:
    key = f"{style.name}:{seed}:{index}".encode()  # hash-free: the same in every process
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=16).digest(), "big"))


def render(style: str | Style, seed: int, index: int) -> tuple[Image.Image, str]:
    """Draw image number ``index`` of a style's seeded stream.

    Args:
        style: a style name (see ``STYLES``) or a ``Style``.
        seed: the stream.
        index: the image's place in the stream.

    Returns:
        ``(RGB image of the style's size, label)``: the same for the same arguments, always.
    """
    style = get_style(style)
    rng = _rng(style, seed, index)
    text = style.label(rng)
    return style.draw(rng, text, style.size), text


def sample(style: str | Style, seed: int, n: int, start: int = 0) -> Iterator[tuple[Image.Image, str]]:
    """Images ``start .. start + n - 1`` of a style's stream, drawn one at a time.

    Returns:
        An iterator of ``(image, label)``.
    """
    style = get_style(style)
    return (render(style, seed, i) for i in range(start, start + n))


def write_style(
    style: str | Style, folder: str | Path, n: int, seed: int = 0, fmt: str = "png"
) -> list[Sample]:
    """Write ``n`` images of a style as ``000000.png ...`` and their ``labels.csv``.

    Args:
        style: a style name or a ``Style``.
        folder: where to write; created if missing, and must hold no images yet.
        n: how many images.
        seed: the stream (images 0 .. n-1 of it).
        fmt: file format by suffix: png, jpg, bmp, webp, gif.

    Returns:
        The written samples, as ``captcha_ocr.data.discover`` reads them back.

    Raises:
        ZooError: unknown style or format, or the folder already holds images.
    """
    style, folder = get_style(style), Path(folder)
    if f".{fmt.lower()}" not in IMAGE_SUFFIXES:
        raise ZooError(f"unknown image format {fmt!r}; use one of {', '.join(s[1:] for s in IMAGE_SUFFIXES)}")
    if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        raise ZooError(f"{folder}: already holds images; write to an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(6, len(str(n - 1)))
    samples = []
    for i, (img, label) in enumerate(sample(style, seed, n)):
        path = folder / f"{i:0{digits}d}.{fmt.lower()}"
        img.save(path)
        samples.append(Sample(path, label))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["file", "label"])
    writer.writerows((s.path.name, s.label) for s in samples)
    atomic_write(folder / LABELS_FILE, rows.getvalue())
    return samples
