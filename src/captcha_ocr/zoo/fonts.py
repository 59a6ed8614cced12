"""Fonts for the zoo: found in installed packages only, loaded once, glyphs cached.

matplotlib ships DejaVu, STIX and Computer Modern TTFs, and the ``captcha`` package its
DroidSansMono. The styles use only these, never the OS's fonts, so that an image does not
depend on the machine it was drawn on.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

__all__ = ["BOLD", "FONT_POOLS", "MONO", "SANS", "SERIF", "WIDE_PACKAGES", "ZooError", "font", "font_paths",
           "fonts_for", "glyph", "pool", "scale"]

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

# The wide pool (``pool(..., "wide")``): faces of font packages on PyPI (the ``fonts``
# extra), added to a style's own fonts of the same look when pretraining asks for them.
# Styles draw from their own fonts only, so zoo images stay what they were. Amatic SC is
# left out: it draws lower case as small capitals.
WIDE = {
    SANS: (
        "Lato-Regular", "Lato-Italic", "Lato-Light", "SourceSansPro-Regular", "SourceSansPro-It",
        "SourceSansPro-Light", "HankenGrotesk-Regular", "HankenGrotesk-Italic", "HankenGrotesk-Medium",
        "Manrope-Regular", "Manrope-Medium", "Manrope-Light", "RedHatDisplay-Regular",
        "RedHatDisplay-Italic", "RedHatDisplay-Medium", "FjallaOne-Regular", "Intuitive",
    ),
    SERIF: (
        "Caladea-Regular", "Caladea-Italic", "SourceSerifPro-Regular", "SourceSerifPro-It",
        "SourceSerifPro-Light", "SourceSerifPro-Semibold",
    ),
    BOLD: (
        "Lato-Bold", "Lato-BoldItalic", "Lato-Black", "SourceSansPro-Bold", "SourceSansPro-Black",
        "HankenGrotesk-Bold", "Manrope-Bold", "Manrope-ExtraBold", "RedHatDisplay-Bold",
        "RedHatDisplay-Black", "Caladea-Bold", "SourceSerifPro-Bold", "SourceSerifPro-Black",
        "FredokaOne-Regular",
    ),
    MONO: (),
}
WIDE_PACKAGES = ("font_lato", "font_source_sans_pro", "font_source_serif_pro", "font_hanken_grotesk",
                 "font_manrope", "font_rhd", "font_fjallaone", "font_intuitive", "font_caladea",
                 "font_fredoka_one")
FONT_POOLS = ("zoo", "wide")

# Later entries win a stem: matplotlib's and captcha's fonts, which the zoo's images are
# drawn with, come last, so that no font package can change them.
_PACKAGE_FONTS = (*((name, "files") for name in WIDE_PACKAGES),
                  ("matplotlib", "mpl-data/fonts/ttf"), ("captcha", "data"))
_SYSTEM_FONTS = Path("/usr/share/fonts/truetype")


class ZooError(ValueError):
    """An unknown style, a missing font package or a bad output folder (one-line message)."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def font_paths(system: bool = False) -> dict[str, Path]:
    """Fonts of the installed packages (matplotlib, captcha and the font packages of
    ``WIDE_PACKAGES``; TrueType, or OpenType where a face has no TrueType file), by file stem.

    Args:
        system: also list the OS fonts under /usr/share/fonts/truetype when present. The
            styles never use them, so that their output does not depend on the OS.

    Returns:
        ``{stem: path}``; a package's font wins over an OS font of the same stem, and
        matplotlib's and captcha's over a font package's.
    """
    return dict(_font_paths(system))


@lru_cache(maxsize=2)
def _font_paths(system: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if system and _SYSTEM_FONTS.is_dir():
        found |= {p.stem: p for p in sorted(_SYSTEM_FONTS.rglob("*.ttf"))}
    for package, sub in _PACKAGE_FONTS:
        root = _package_dir(package)
        if root is not None and (root / sub).is_dir():
            files = sorted((root / sub).glob("*.otf")) + sorted((root / sub).glob("*.ttf"))
            found |= {p.stem: p for p in files}  # a TrueType file wins over an OpenType one
    return found


@lru_cache(maxsize=64)
def pool(stems: tuple[str, ...], which: str = "zoo") -> tuple[str, ...]:
    """The fonts a style draws from.

    Args:
        stems: the style's own fonts (``Style.fonts``).
        which: ``"zoo"``, those alone; ``"wide"``, those and the font packages' faces of
            each look (``WIDE``: sans, serif, bold) that ``stems`` shares a font with.

    Returns:
        The stems, the style's own first.

    Raises:
        ZooError: an unknown pool, or a wide face whose package is not installed.
    """
    if which == "zoo":
        return stems
    if which != "wide":
        raise ZooError(f"unknown font pool {which!r}; use one of {', '.join(FONT_POOLS)}")
    extra = tuple(f for look, faces in WIDE.items() if set(look) & set(stems) for f in faces)
    missing = sorted({f for f in extra if f not in _font_paths(False)})
    if missing:
        raise ZooError(f"fonts {', '.join(missing[:3])} not found: the wide font pool needs "
                       f"the font packages of the fonts extra (pip install 'captcha-ocr[train,fonts]')")
    return stems + extra


@lru_cache(maxsize=512)  # a face costs ~120 kB and ~15 us to load (the wide pool: ~60 faces)
def font(stem: str, size: int) -> ImageFont.FreeTypeFont:
    """The package font of that stem at ``size`` pixels, loaded once.

    Raises:
        ZooError: no installed package ships it.
    """
    path = _font_paths(False).get(stem)
    if path is None:
        raise ZooError(
            f"font {stem!r} not found: the zoo needs the matplotlib and captcha packages, "
            "and its wide pool the font packages (pip install 'captcha-ocr[train,fonts]')"
        )
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=4096)
def _draws(stem: str, ch: str) -> bool:
    f = font(stem, 24)
    mask, missing = f.getmask(ch), f.getmask("\U0010fffd")  # no font here maps it: the .notdef glyph
    return mask.getbbox() is not None and (mask.size != missing.size or bytes(mask) != bytes(missing))


@lru_cache(maxsize=256)
def fonts_for(stems: tuple[str, ...], alphabet: str) -> tuple[str, ...]:
    """The fonts among ``stems`` (duplicates dropped) that draw every character of ``alphabet``.

    Raises:
        ZooError: none does.
    """
    ok = tuple(s for s in dict.fromkeys(stems) if all(_draws(s, c) for c in alphabet))
    if not ok:
        raise ZooError(f"none of the fonts {', '.join(stems)} draws all of {alphabet!r}")
    return ok


def _cap_height(stem: str) -> int:
    return max(1, -font(stem, 100).getbbox("H", anchor="ls")[1])


@lru_cache(maxsize=64)
def scale(stem: str) -> float:
    """The size factor that gives this font's capitals DejaVu Sans's height (Computer Modern
    and STIX draw smaller at the same size)."""
    return _cap_height("DejaVuSans") / _cap_height(stem)


@lru_cache(maxsize=16384)  # a glyph costs ~3 kB and ~40 us to draw
def glyph(stem: str, size: int, ch: str, stroke: int = 0) -> tuple[Image.Image, int]:
    """One character, drawn once and cached.

    Args:
        stem: font file stem.
        size: font size in pixels.
        ch: the character.
        stroke: > 0: only its outline, this many pixels wide (a hollow glyph).

    Returns:
        ``(mask, top)``: its coverage ('L', cropped to the ink; shared: never modify it) and
        the height of its top above the baseline (negative).
    """
    f = font(stem, size)
    left, top, right, bottom = f.getbbox(ch, anchor="ls", stroke_width=stroke)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(mask).text(
        (-left, -top), ch, fill=255, font=f, anchor="ls", stroke_width=stroke, stroke_fill=255
    )
    if stroke:
        inner = Image.new("L", mask.size)
        ImageDraw.Draw(inner).text((-left, -top), ch, fill=255, font=f, anchor="ls")
        mask = ImageChops.subtract(mask, inner)
    return mask, top
