"""Drawing parts the styles share: colours, backgrounds, noise strokes, glyph layout, warps.

Every random choice comes from the ``random.Random`` passed in (numpy noise from a
generator seeded by it), so a style is as deterministic as its caller's generator.
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .fonts import glyph, scale

__all__ = [
    "Colour",
    "Piece",
    "Size",
    "curve",
    "dots",
    "fit",
    "grey",
    "hgradient",
    "hsv",
    "lines",
    "mesh",
    "mix",
    "noisy",
    "paint",
    "rgb",
    "set_line",
    "sine",
    "sine_warp",
    "speckle",
    "text_box",
    "widen",
]

Colour = tuple[int, int, int]
Size = tuple[int, int]  # (width, height)
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1)

# ---------------------------------------------------------------- colours


def rgb(rng: random.Random, lo: int, hi: int) -> Colour:
    """Each channel uniform in [lo, hi]."""
    return rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi)


def grey(rng: random.Random, lo: int, hi: int) -> Colour:
    g = rng.randint(lo, hi)
    return g, g, g


def hsv(rng: random.Random, s: tuple[float, float], v: tuple[float, float]) -> Colour:
    """A random hue with saturation and value (0-1) drawn from the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return round(r * 255), round(g * 255), round(b * 255)


def mix(a: Colour, b: Colour, t: float) -> Colour:
    """``a`` moved a fraction ``t`` of the way towards ``b``."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


# ---------------------------------------------------------------- backgrounds


def hgradient(size: Size, left: Colour, right: Colour) -> Image.Image:
    """An RGB image shading from ``left`` to ``right``."""
    w, h = size
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]  # (1, W, 1)
    row = np.asarray(left, np.float32) * (1 - t) + np.asarray(right, np.float32) * t  # (1, W, 3)
    return Image.fromarray(np.repeat(row, h, axis=0).round().astype(np.uint8), "RGB")


def noisy(rng: random.Random, size: Size, base: Colour, spread: int) -> Image.Image:
    """A flat ``base`` colour with grey per-pixel noise of +-``spread``."""
    w, h = size
    g = np.random.default_rng(rng.getrandbits(64))
    a = np.asarray(base, np.int16) + g.integers(-spread, spread + 1, (h, w, 1), dtype=np.int16)
    return Image.fromarray(a.clip(0, 255).astype(np.uint8), "RGB")


def speckle(img: Image.Image, rng: random.Random, density: float, lo: int, hi: int) -> Image.Image:
    """A copy of ``img`` with a share ``density`` of its pixels set to random greys in [lo, hi]."""
    a = np.array(img)
    g = np.random.default_rng(rng.getrandbits(64))
    hit = g.random(a.shape[:2]) < density
    a[hit] = g.integers(lo, hi + 1, (int(hit.sum()), 1), dtype=np.uint8)
    return Image.fromarray(a, "RGB")


def widen(img: Image.Image, rng: random.Random, factor: float, where: float) -> Image.Image:
    """``img`` placed in a strip ``factor`` times as wide, at ``where`` (0: left edge, 1:
    right), as sites draw short text in a long box: the background goes on beyond it
    (its edge columns, shading towards a random colour: a gradient continues).
    """
    a = np.asarray(img.convert("RGB"), np.float32)
    h, w, _ = a.shape
    pad = max(0, round(w * factor) - w)
    left = round(pad * where)
    out = np.pad(a, ((0, 0), (left, pad - left), (0, 0)), mode="edge")
    target = np.asarray(rgb(rng, 0, 255), np.float32)
    reach = rng.uniform(0.0, 0.6)  # how far the far end goes towards the target colour
    for lo, hi, ramp in ((0, left, np.linspace(reach, 0.0, left)),
                         (left + w, pad + w, np.linspace(0.0, reach, pad - left))):
        if hi > lo:
            t = ramp.astype(np.float32)[None, :, None]
            out[:, lo:hi] = out[:, lo:hi] * (1 - t) + target * t
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8), "RGB")


# ---------------------------------------------------------------- noise strokes


def lines(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    n: int,
    size: Size,
    colour: Callable[[], Colour],
    width: tuple[int, int] = (1, 1),
) -> None:
    """``n`` straight lines from the left part of the image to the right part."""
    w, h = size
    for _ in range(n):
        start = (rng.uniform(-0.1, 0.4) * w, rng.uniform(0, h))
        end = (rng.uniform(0.6, 1.1) * w, rng.uniform(0, h))
        draw.line([start, end], fill=colour(), width=rng.randint(*width))


def curve(
    draw: ImageDraw.ImageDraw, rng: random.Random, size: Size, colour: Colour | int, width: int = 1
) -> None:
    """One quadratic Bezier curve across the image."""
    w, h = size
    x0, y0 = rng.uniform(-0.1, 0.3) * w, rng.uniform(0.1, 0.9) * h
    x1, y1 = rng.uniform(0.7, 1.1) * w, rng.uniform(0.1, 0.9) * h
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(-0.6, 1.6) * h  # the control point
    ts = [i / 16 for i in range(17)]
    pts = [
        (
            (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t * t * x1,
            (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t * t * y1,
        )
        for t in ts
    ]
    draw.line(pts, fill=colour, width=width, joint="curve")


def sine(draw: ImageDraw.ImageDraw, rng: random.Random, size: Size, colour: Colour | int, width: int) -> None:
    """One sine-shaped line across the whole width."""
    w, h = size
    y, amp = rng.uniform(0.3, 0.7) * h, rng.uniform(0.1, 0.3) * h
    period, phase = rng.uniform(0.5, 1.5) * w, rng.uniform(0, 2 * math.pi)
    pts = [(x, y + amp * math.sin(2 * math.pi * x / period + phase)) for x in range(0, w + 6, 6)]
    draw.line(pts, fill=colour, width=width, joint="curve")


def dots(
    draw: ImageDraw.ImageDraw,
    rng: random.Random,
    n: int,
    size: Size,
    colour: Callable[[], Colour],
    radius: tuple[float, float],
) -> None:
    """``n`` round dots of random radius."""
    w, h = size
    for _ in range(n):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(*radius)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour())


def mesh(draw: ImageDraw.ImageDraw, rng: random.Random, size: Size, colour: Callable[[], Colour]) -> None:
    """Two crossing families of thin, roughly parallel lines, 5-9 pixels apart."""
    w, h = size
    for across in (True, False):
        slope, step = rng.uniform(-0.6, 0.6), rng.uniform(5, 9)
        span = 0.6 * (w if across else h) + (h if across else w)  # sloped lines cover the corners too
        c = -span / 2 + rng.uniform(0, step)
        while c < (h if across else w) + span / 2:
            ends = [(0, c), (w, c + slope * w)] if across else [(c, 0), (c + slope * h, h)]
            draw.line(ends, fill=colour())
            c += step + rng.uniform(-1.5, 1.5)


# ---------------------------------------------------------------- glyph layout


@dataclass
class Piece:
    """One thing to paste: an 'L' coverage mask painted in ``fill``, or an 'RGBA' image
    (``fill`` None) pasted through its own alpha; ``x, y`` is its top-left corner."""

    mask: Image.Image
    x: float
    y: float
    fill: Colour | int | None = None


def set_line(
    rng: random.Random,
    text: str,
    fonts: tuple[str, ...],
    sizes: tuple[int, int],
    angle: float = 0.0,
    gap: tuple[float, float] = (0.0, 0.1),
    dy: float = 0.05,
    stroke: int = 0,
    jitter: float = 0.06,
) -> list[Piece]:
    """Lay ``text`` out glyph by glyph on a baseline at y = 0.

    Args:
        rng: the image's generator.
        text: the characters.
        fonts: font stems; each glyph picks one.
        sizes: (smallest, largest) font size of the line, in pixels.
        angle: each glyph turns by up to +-``angle`` degrees.
        gap: (least, most) space after a glyph, as a fraction of its size; negative
            values make glyphs touch or overlap.
        dy: each glyph moves up or down by up to this fraction of its size.
        stroke: > 0: hollow glyphs, outlines this wide.
        jitter: each glyph's size is within this fraction of the line's.

    Returns:
        Unpainted pieces (``fill`` None), in the line's own coordinates; see ``fit``.
    """
    pieces, pen, base = [], 0.0, rng.randint(*sizes)
    for ch in text:
        stem = rng.choice(fonts)
        size = 2 * round(
            base * scale(stem) * rng.uniform(1 - jitter, 1 + jitter) / 2
        )  # even: fewer glyphs to cache
        mask, top = glyph(stem, size, ch, stroke)
        cx, cy = pen + mask.width / 2, top + mask.height / 2 + rng.uniform(-dy, dy) * size
        if angle:
            mask = mask.rotate(rng.uniform(-angle, angle), Image.Resampling.BILINEAR, expand=True)
        pieces.append(Piece(mask, cx - mask.width / 2, cy - mask.height / 2))
        pen = cx + mask.width / 2 + rng.uniform(*gap) * size
    return pieces


def text_box(pieces: list[Piece]) -> tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) box around all pieces."""
    return (
        min(p.x for p in pieces),
        min(p.y for p in pieces),
        max(p.x + p.mask.width for p in pieces),
        max(p.y + p.mask.height for p in pieces),
    )


def fit(pieces: list[Piece], box: Box, rng: random.Random) -> list[Piece]:
    """Shrink the pieces together if they overflow ``box``, then move them to a random place
    inside it: nothing is clipped."""
    x0, y0, x1, y1 = text_box(pieces)
    bw, bh = box[2] - box[0], box[3] - box[1]
    s = min(1.0, bw / (x1 - x0), bh / (y1 - y0))
    ox, oy = box[0] + rng.uniform(0, bw - s * (x1 - x0)), box[1] + rng.uniform(0, bh - s * (y1 - y0))
    out = []
    for p in pieces:
        mask = p.mask
        if s < 1:
            small = (max(1, int(mask.width * s)), max(1, int(mask.height * s)))
            mask = mask.resize(small, Image.Resampling.BILINEAR)
        out.append(Piece(mask, ox + (p.x - x0) * s, oy + (p.y - y0) * s, p.fill))
    return out


def paint(canvas: Image.Image, pieces: list[Piece], fill: Colour | int | None = None) -> None:
    """Paste the pieces onto ``canvas``, each in its own fill, else in ``fill``."""
    for p in pieces:
        colour = p.fill if p.fill is not None else fill
        canvas.paste(p.mask if colour is None else colour, (round(p.x), round(p.y)), p.mask)


# ---------------------------------------------------------------- warps


def sine_warp(mask: Image.Image, amp: float, period: float, phase: float, step: int = 6) -> Image.Image:
    """Shift each column of ``mask`` up or down by ``amp * sin(2 pi x / period + phase)``."""
    w, h = mask.size
    cells = []
    for x in range(0, w, step):
        x2 = min(x + step, w)
        d1, d2 = (amp * math.sin(2 * math.pi * v / period + phase) for v in (x, x2))
        cells.append(((x, 0, x2, h), (x, d1, x, h + d1, x2, h + d2, x2, d2)))  # source NW, SW, SE, NE
    return mask.transform(mask.size, Image.Transform.MESH, cells, Image.Resampling.BILINEAR)
