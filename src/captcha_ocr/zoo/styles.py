"""The styles: one small drawing function each, and the registry ``STYLES`` by name.

A drawing function takes ``(rng, text, size, fonts)`` and returns an RGB image of that
size showing ``text``; all its randomness comes from ``rng``.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .draw import (
    Colour,
    Piece,
    Size,
    curve,
    dots,
    fit,
    grey,
    hgradient,
    hsv,
    lines,
    mesh,
    mix,
    noisy,
    paint,
    rgb,
    set_line,
    sine,
    sine_warp,
    speckle,
    text_box,
)
from .fonts import BOLD, MONO, SANS, SERIF, font, glyph, scale

__all__ = ["STYLES", "Style"]

Fonts = tuple[str, ...]

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
        fonts: font stems to draw from (those that lack a character of the alphabet are dropped).
        draw: ``(rng, text, size, fonts) -> RGB image`` showing ``text``.
        text: ``(rng, lengths) -> label`` for labels that are not random strings of the
            alphabet (sums); None: random characters of the alphabet.
    """

    name: str
    description: str
    alphabet: str
    lengths: tuple[int, int]
    size: Size
    fonts: Fonts
    draw: Callable[[random.Random, str, Size, Fonts], Image.Image]
    text: Callable[[random.Random, tuple[int, int]], str] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.lengths[0] <= self.lengths[1]:
            raise ValueError(f"{self.name}: bad lengths {self.lengths}")

    def label(self, rng: random.Random) -> str:
        """A random label of this style."""
        if self.text is not None:
            return self.text(rng, self.lengths)
        return _random_text(rng, self.alphabet, self.lengths)


STYLES: dict[str, Style] = {}


def _style(
    name: str,
    description: str,
    *,
    alphabet: str,
    lengths: tuple[int, int],
    size: Size,
    fonts: Fonts,
    text: Callable[[random.Random, tuple[int, int]], str] | None = None,
):
    """Register the decorated drawing function as a style (see ``Style`` for the arguments)."""

    def register(draw: Callable[[random.Random, str, Size, Fonts], Image.Image]):
        STYLES[name] = Style(name, description, alphabet, lengths, size, fonts, draw, text)
        return draw

    return register


_CLEAR_LOWER = "abcdefghijkmnpqrstuvwxyz"  # no l, o: too like 1, 0
_CLEAR_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, O
_CLEAR_DIGITS = "23456789"
_MIXED = (
    "abdefghimnqrty" + _CLEAR_UPPER
)  # mixed case without lower case letters shaped like capitals (c, s, ...)
_SUMS = "0123456789+-x="

# ---------------------------------------------------------------- labels


def _random_text(rng: random.Random, alphabet: str, lengths: tuple[int, int]) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(*lengths)))


def _sum(rng: random.Random, lengths: tuple[int, int], suffixes: tuple[str, ...]) -> str:
    """``a op b`` and a suffix such as "=" or "=?", with ``a >= b`` for "-"."""
    while True:
        op = rng.choice("+-x")
        a, b = (rng.randint(0, 10 ** rng.randint(1, 2) - 1) for _ in range(2))
        if op == "x":
            b %= 10
        a, b = (b, a) if op == "-" and a < b else (a, b)
        text = f"{a}{op}{b}{rng.choice(suffixes)}"
        if lengths[0] <= len(text) <= lengths[1]:
            return text


# ---------------------------------------------------------------- imagecaptcha


@_style(
    "imagecaptcha",
    "the captcha package's ImageCaptcha: warped overlapping glyphs, dots, an arc",
    alphabet=string.ascii_letters + string.digits,
    lengths=(4, 6),
    size=(160, 60),
    fonts=("DroidSansMono", "DejaVuSans", "DejaVuSerif", "DejaVuSansMono-Bold"),
)
def _imagecaptcha(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """The captcha package's ImageCaptcha algorithm (version 0.7) with a seeded generator (the
    package draws from ``secrets``): thick glyphs turned and warped, overlapping, squeezed to
    fit, then dots and an arc in the text colour."""
    w, h = size
    bg, fg = rgb(rng, 238, 255), mix(rgb(rng, 10, 200), rgb(rng, 238, 255), rng.uniform(0, 0.14))
    masks = []
    for c in text:
        f = font(rng.choice(fonts), round(rng.choice((42, 50, 56)) * h / 60))
        if rng.random() > 0.5:  # the package's optional space before a character
            masks.append(Image.new("L", (round(f.getlength(" ")), 1)))
        masks.append(_warped_char(rng, c, f))
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


def _warped_char(rng: random.Random, c: str, f: ImageFont.FreeTypeFont) -> Image.Image:
    """One ImageCaptcha glyph mask: offset, cropped, turned +-30 degrees, then a random quad warp."""
    _, _, w, h = (round(v) for v in f.getbbox(c))
    w, h = w + 1, h + 1
    dx, dy = rng.randint(0, 4), rng.randint(0, 6)
    im = Image.new("L", (w + dx, h + dy))
    ImageDraw.Draw(im).text((dx, dy), c, fill=255, font=f)
    im = im.crop(im.getbbox())
    im = im.rotate(rng.uniform(-30, 30), Image.Resampling.BILINEAR, expand=True)
    wx, wy = w * rng.random() * 0.2 + 0.1, h * rng.random() * 0.1 + 0.2
    x1, y1, x2, y2 = (int(rng.uniform(-d, d)) for d in (wx, wy, wx, wy))
    w2, h2 = w + abs(x1) + abs(x2), h + abs(y1) + abs(y2)
    quad = (x1, y1, -x1, h2 - y2, w2 + x2, h2 + y2, w2 - x2, -y1)  # source NW, SW, SE, NE
    return im.resize((w2, h2)).transform((w, h), Image.Transform.QUAD, quad)


# ---------------------------------------------------------------- light backgrounds


@_style(
    "gradient_colour",
    "each character in its own colour and font on a dark-to-light grey gradient",
    alphabet=_CLEAR_LOWER + _CLEAR_DIGITS,
    lengths=(5, 5),
    size=(255, 40),
    fonts=SANS + SERIF + BOLD,
)
def _gradient_colour(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Each character in its own colour and font on a dark-to-light horizontal grey gradient."""
    w, h = size
    dark, light = rng.randint(30, 80), rng.randint(200, 245)
    canvas = hgradient(size, (dark,) * 3, (light,) * 3)
    line = set_line(
        rng, text, fonts, (round(h * 0.7), round(h * 0.9)), angle=15, gap=(0.1, 0.6), dy=0.08, jitter=0.15
    )
    pieces = fit(line, (4, 1, w - 4, h - 1), rng)
    for p in pieces:  # light ink on the dark end, dark ink on the light end
        under = dark + (light - dark) * (p.x + p.mask.width / 2) / w
        p.fill = hsv(rng, (0.5, 1.0), (0.8, 1.0) if under < 120 else (0.15, 0.45))
    paint(canvas, pieces)
    return canvas


# the saturated primaries of many generators, and a few of their neighbours
_PURE = tuple((r, g, b) for r in (0, 255) for g in (0, 255) for b in (0, 255)) + (
    (255, 128, 0), (255, 128, 192), (128, 0, 255), (0, 128, 255), (128, 128, 128), (64, 64, 64),
)


def _packed_text(rng: random.Random, lengths: tuple[int, int]) -> str:
    letters = _CLEAR_LOWER if rng.random() < 0.7 else _CLEAR_UPPER
    return _random_text(rng, letters + _CLEAR_DIGITS, lengths)


@_style(
    "packed_colour",
    "upright glyphs packed tight or overlapping, each in its own pure colour, font and size, "
    "anywhere on a gradient or plain strip, often in its left part, sometimes framed",
    alphabet=_CLEAR_LOWER + _CLEAR_UPPER + _CLEAR_DIGITS,
    lengths=(4, 6),
    size=(240, 40),
    fonts=SANS + SERIF + BOLD,
    text=_packed_text,
)
def _packed_colour(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Tight or overlapping glyphs in pure colours, with no contrast promised beyond a floor."""
    w, h = size
    if rng.random() < 0.6:
        ends = (grey(rng, 20, 90), grey(rng, 190, 250))
        canvas = hgradient(size, *(ends if rng.random() < 0.75 else ends[::-1]))
    else:
        canvas = Image.new("RGB", size, rgb(rng, 170, 255) if rng.random() < 0.8 else rgb(rng, 0, 70))
    line = set_line(rng, text, fonts, (round(h * 0.6), round(h * 0.95)), angle=rng.choice((0, 0, 8)),
                    gap=(-0.22, 0.02), dy=0.04, jitter=0.25)
    right = w - 3 if rng.random() < 0.3 else round(w * rng.uniform(0.35, 0.8))
    pieces = fit(line, (3, 1, right, h - 1), rng)
    for p in pieces:  # any pure colour, but not the background's own brightness
        x, y = round(min(w - 1, p.x + p.mask.width / 2)), round(min(h - 1, p.y + p.mask.height / 2))
        under = sum(canvas.getpixel((x, y))) / 3
        p.fill = rng.choice(_PURE)
        while abs(sum(p.fill) / 3 - under) < 35:
            p.fill = rng.choice(_PURE) if rng.random() < 0.5 else hsv(rng, (0.6, 1.0), (0.5, 1.0))
    paint(canvas, pieces)
    if rng.random() < 0.5:
        ImageDraw.Draw(canvas).rectangle((0, 0, w - 1, h - 1), outline=grey(rng, 0, 60))
    return canvas


@_style(
    "rotated_tiles",
    "a sum like 12-4, each glyph on its own pale tilted tile",
    alphabet=_SUMS,
    lengths=(3, 5),
    size=(155, 30),
    fonts=SANS + BOLD,
    text=lambda rng, n: _sum(rng, n, ("", "", "=")),
)
def _rotated_tiles(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Each glyph dark on its own pale, tilted square tile, on a white page."""
    w, h = size
    canvas = Image.new("RGB", size, grey(rng, 240, 255))
    pieces, x = [], 0.0
    for ch in text:
        side = rng.randint(h - 8, h - 3)
        pale = hsv(rng, (0.08, 0.3), (0.88, 1.0))
        tile = Image.new("RGBA", (side, side), (*pale, 255))
        stem = rng.choice(fonts)
        mask, _ = glyph(stem, round(side * scale(stem) * rng.uniform(0.75, 0.9)), ch)
        at = ((side - mask.width) // 2 + rng.randint(-1, 1), (side - mask.height) // 2 + rng.randint(-1, 1))
        tile.paste(hsv(rng, (0.4, 1.0), (0.1, 0.45)), at, mask)
        # fill the corners with the tile's colour, transparent, so the edges blend without a dark fringe
        tile = tile.rotate(rng.uniform(-30, 30), Image.Resampling.BILINEAR, expand=True, fillcolor=(*pale, 0))
        pieces.append(Piece(tile, x, rng.uniform(-1.5, 1.5) - tile.height / 2))
        x += tile.width * rng.uniform(0.85, 1.5)
    paint(canvas, fit(pieces, (2, 1, w - 2, h - 1), rng))
    return canvas


@_style(
    "arithmetic",
    "a sum to solve like 23x4=? in dark glyphs on a noisy background",
    alphabet=_SUMS + "?",
    lengths=(4, 7),
    size=(120, 40),
    fonts=SANS + SERIF + BOLD,
    text=lambda rng, n: _sum(rng, n, ("=", "=?")),
)
def _arithmetic(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """A sum to solve ("23x4=?") in dark glyphs on a noisy light background with lines."""
    w, h = size
    canvas = noisy(rng, size, rgb(rng, 200, 240), spread=rng.randint(15, 35))
    draw = ImageDraw.Draw(canvas)
    lines(draw, rng, rng.randint(2, 4), size, lambda: hsv(rng, (0.2, 0.7), (0.5, 0.9)))
    ink = hsv(rng, (0.0, 0.8), (0.0, 0.35))
    line = set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=12, gap=(0.0, 0.2))
    paint(canvas, fit(line, (3, 2, w - 3, h - 2), rng), ink)
    lines(draw, rng, 1, size, lambda: mix(ink, (255, 255, 255), 0.4))
    return canvas


@_style(
    "line_mesh",
    "small mixed-case text in several fonts over a mesh of thin coloured lines",
    alphabet=_MIXED + _CLEAR_DIGITS,
    lengths=(4, 4),
    size=(92, 34),
    fonts=SANS + BOLD + MONO,
)
def _line_mesh(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Small mixed-case text in several fonts and colours over a mesh of thin coloured lines."""
    w, h = size
    canvas = Image.new("RGB", size, rgb(rng, 230, 255))
    draw = ImageDraw.Draw(canvas)
    mesh(draw, rng, size, lambda: hsv(rng, (0.2, 0.7), (0.7, 0.95)))
    line = set_line(rng, text, fonts, (round(h * 0.6), round(h * 0.8)), angle=20, gap=(-0.05, 0.15))
    pieces = fit(line, (2, 1, w - 2, h - 1), rng)
    for p in pieces:
        p.fill = hsv(rng, (0.5, 1.0), (0.1, 0.45))
    paint(canvas, pieces)
    lines(draw, rng, rng.randint(1, 2), size, lambda: hsv(rng, (0.5, 1.0), (0.3, 0.7)))
    return canvas


@_style(
    "bold_caps",
    "bold capitals in varied colours, some faint",
    alphabet=_CLEAR_UPPER,
    lengths=(4, 4),
    size=(100, 35),
    fonts=BOLD,
)
def _bold_caps(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Bold capitals, each in its own colour, some of them faint (low contrast)."""
    w, h = size
    bg = rgb(rng, 225, 255)
    canvas = Image.new("RGB", size, bg)
    line = set_line(rng, text, fonts, (round(h * 0.65), round(h * 0.85)), angle=15, gap=(-0.08, 0.12))
    pieces = fit(line, (2, 1, w - 2, h - 1), rng)
    for p in pieces:
        p.fill = hsv(rng, (0.6, 1.0), (0.3, 0.85))
        if rng.random() < 0.3:
            p.fill = mix(p.fill, bg, rng.uniform(0.35, 0.55))
    paint(canvas, pieces)
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


@_style(
    "digits_strike",
    "digits in a colour theme, struck through by two or three lines",
    alphabet=string.digits,
    lengths=(4, 4),
    size=(152, 42),
    fonts=SANS + SERIF + BOLD + MONO,
)
def _digits_strike(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Digits in one of a few colour themes, struck through by two or three lines of ink."""
    w, h = size
    bg, ink = (mix(c, rgb(rng, 0, 255), 0.1) for c in rng.choice(_THEMES))
    canvas = Image.new("RGB", size, bg)
    line = set_line(rng, text, fonts, (round(h * 0.7), round(h * 0.9)), angle=10, gap=(0.05, 0.4))
    pieces = fit(line, (4, 2, w - 4, h - 2), rng)
    paint(canvas, pieces, ink)
    x0, y0, x1, y1 = text_box(pieces)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(2, 3)):  # through the middle half of the text's height
        ya, yb = (rng.uniform(y0 + 0.25 * (y1 - y0), y1 - 0.25 * (y1 - y0)) for _ in range(2))
        draw.line(
            [(x0 - rng.uniform(0, 8), ya), (x1 + rng.uniform(0, 8), yb)], fill=ink, width=rng.randint(1, 2)
        )
    return canvas


@_style(
    "dots_noise",
    "dark text in heavy speckle and dot noise",
    alphabet=_CLEAR_LOWER + _CLEAR_DIGITS,
    lengths=(6, 6),
    size=(180, 50),
    fonts=SANS + SERIF + BOLD,
)
def _dots_noise(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Dark text buried in heavy speckle and dot noise."""
    w, h = size
    canvas = Image.new("RGB", size, grey(rng, 215, 255))
    ink = grey(rng, 0, 70)
    line = set_line(rng, text, fonts, (round(h * 0.55), round(h * 0.75)), angle=15, gap=(0.0, 0.25))
    paint(canvas, fit(line, (3, 2, w - 3, h - 2), rng), ink)
    dots(ImageDraw.Draw(canvas), rng, rng.randint(60, 120), size, lambda: grey(rng, 0, 150), (0.5, 1.6))
    return speckle(canvas, rng, rng.uniform(0.08, 0.18), 0, 160)


@_style(
    "pastel_digits",
    "tiny digits on a pastel background with thin curves",
    alphabet=string.digits,
    lengths=(4, 4),
    size=(70, 30),
    fonts=SANS + SERIF + BOLD + MONO,
)
def _pastel_digits(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """A few small digits over a pastel background crossed by thin curves."""
    w, h = size
    canvas = Image.new("RGB", size, hsv(rng, (0.08, 0.3), (0.93, 1.0)))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(1, 2)):
        curve(draw, rng, size, hsv(rng, (0.3, 0.8), (0.5, 0.85)))
    line = set_line(rng, text, fonts, (round(h * 0.6), round(h * 0.8)), angle=20, gap=(-0.05, 0.15))
    pieces = fit(line, (2, 1, w - 2, h - 1), rng)
    for p in pieces:
        p.fill = hsv(rng, (0.4, 1.0), (0.2, 0.6))
    paint(canvas, pieces)
    for _ in range(rng.randint(1, 2)):
        curve(draw, rng, size, hsv(rng, (0.3, 0.8), (0.4, 0.8)))
    return canvas


@_style(
    "hollow",
    "outlined bold capitals and digits over faint lines",
    alphabet=_CLEAR_UPPER + _CLEAR_DIGITS,
    lengths=(5, 5),
    size=(140, 50),
    fonts=BOLD,
)
def _hollow(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Outlined (hollow) bold glyphs over a few faint lines."""
    w, h = size
    canvas = Image.new("RGB", size, rgb(rng, 235, 255))
    lines(ImageDraw.Draw(canvas), rng, rng.randint(3, 6), size, lambda: hsv(rng, (0.1, 0.5), (0.7, 0.9)))
    ink = hsv(rng, (0.3, 1.0), (0.05, 0.4))
    line = set_line(
        rng,
        text,
        fonts,
        (round(h * 0.65), round(h * 0.85)),
        angle=12,
        gap=(-0.05, 0.15),
        stroke=rng.choice((1, 2)),
    )
    paint(canvas, fit(line, (3, 2, w - 3, h - 2), rng), ink)
    return canvas


# ---------------------------------------------------------------- text as a layer (glow, warp)


def _text_layer(pieces: list[Piece], size: Size) -> Image.Image:
    layer = Image.new("L", size)
    paint(layer, pieces, 255)
    return layer


@_style(
    "dark_bg",
    "light glowing text on a dark background",
    alphabet=_CLEAR_UPPER + _CLEAR_DIGITS,
    lengths=(5, 7),
    size=(200, 60),
    fonts=SANS + BOLD + MONO,
)
def _dark_bg(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Light glowing text on a dark background with dim noise."""
    w, h = size
    bg = hsv(rng, (0.2, 0.8), (0.05, 0.25))
    canvas = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(canvas)
    dots(draw, rng, rng.randint(20, 50), size, lambda: mix(bg, rgb(rng, 80, 200), 0.4), (0.5, 1.5))
    lines(draw, rng, rng.randint(1, 3), size, lambda: mix(bg, rgb(rng, 100, 255), 0.35))
    line = set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=12, gap=(0.05, 0.3))
    layer = _text_layer(fit(line, (5, 4, w - 5, h - 4), rng), size)
    glow = mix(bg, hsv(rng, (0.3, 1.0), (0.7, 1.0)), 0.6)
    canvas.paste(glow, (0, 0), layer.filter(ImageFilter.BoxBlur(rng.choice((1, 2)))))
    canvas.paste(hsv(rng, (0.0, 0.35), (0.88, 1.0)), (0, 0), layer)
    return canvas


@_style(
    "wavy",
    "text and lines warped by a sine wave, gradient ink",
    alphabet=_MIXED,
    lengths=(3, 8),
    size=(300, 80),
    fonts=SANS + SERIF + BOLD,
)
def _wavy(rng: random.Random, text: str, size: Size, fonts: Fonts) -> Image.Image:
    """Text and crossing lines warped together by a sine wave, in gradient ink on light noise."""
    w, h = size
    amp = rng.uniform(0.06, 0.12) * h
    canvas = noisy(rng, size, rgb(rng, 215, 250), spread=rng.randint(5, 20))
    line = set_line(rng, text, fonts, (round(h * 0.5), round(h * 0.7)), angle=10, gap=(0.0, 0.25))
    layer = _text_layer(fit(line, (6, round(amp) + 4, w - 6, h - round(amp) - 4), rng), size)
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(1, 3)):
        sine(draw, rng, size, 255, rng.randint(1, 3))
    layer = sine_warp(layer, amp, rng.uniform(0.3, 0.8) * w, rng.uniform(0, 2 * math.pi))
    ink = hgradient(size, hsv(rng, (0.4, 1.0), (0.15, 0.55)), hsv(rng, (0.4, 1.0), (0.15, 0.55)))
    canvas.paste(ink, (0, 0), layer)
    return canvas
