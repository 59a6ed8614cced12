"""Write labeled captchas of styles drawn by other people's generators: unseen styles.

The zoo's styles were all seen in pretraining (other seeds), so they flatter the base
models; the real styles in ../shared/data are few. This writes datasets of captcha
generators published on PyPI by others (their fonts, layouts and noise), which neither
base saw and which no recipe choice was tuned on: a check of generality. Bench only:
run it with a throwaway Python where those packages are installed, never beside
captcha-ocr (one of them installs a module named ``captcha`` that shadows the real one)::

    python3 -m venv /tmp/genvenv
    /tmp/genvenv/bin/pip install gvcode multicolorcaptcha claptcha easy-captcha
    /tmp/genvenv/bin/python bench/foreign_styles.py --out runs/foreign --n 2500
    python bench/styles_bench.py --data runs/foreign/* --ns 200 500

Each style is a folder of PNGs named by index with a ``labels.csv`` (file,label), seeded:
the same ``--seed`` writes the same images (these packages draw from the global
``random`` module, reseeded per image).
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import string
import sys
from pathlib import Path

STYLES = ("gvcode_mix", "multicolor_caps", "easy_default", "claptcha_noise", "gvcode_sum")


def _gvcode_mix(rng: random.Random):
    """gvcode's default look (200x80 Arial, coloured glyphs, lines), 4-5 mixed-case chars."""
    from gvcode import VFCode

    code = VFCode(width=160, height=60, fontsize=rng.randint(34, 42), draw_dots=rng.random() < 0.5)
    text = "".join(rng.choice(string.digits + string.ascii_letters) for _ in range(rng.randint(4, 5)))
    code.generate(text)
    return code._img.convert("RGB"), text


def _gvcode_sum(rng: random.Random):
    """gvcode's arithmetic captcha: 'a+b' / 'a-b' / 'axb' with the operator drawn."""
    from gvcode import VFCode

    code = VFCode(width=150, height=50, fontsize=34, draw_lines=rng.random() < 0.7)
    op = rng.choice("+-x")
    text = f"{rng.randint(1, 20)}{op}{rng.randint(1, 20)}"
    code.symbol, code.result = op, True
    code.generate(text)
    return code._img.convert("RGB"), text


def _multicolor_caps(rng: random.Random):
    """multicolorcaptcha: four capitals or digits, each tile its own colour, lines and circles."""
    from multicolorcaptcha import CaptchaGenerator

    gen = CaptchaGenerator(1)
    captcha = gen.gen_captcha_image(difficult_level=rng.randint(1, 3), chars_mode="ascii",
                                    multicolor=rng.random() < 0.5, margin=False)
    return captcha.image.convert("RGB"), captcha.characters


def _easy_default(rng: random.Random):
    """easy-captcha's DefaultGenerator: an outlined italic font, lines, dots and arcs, 100x50."""
    from captcha.generator import DefaultGenerator

    text = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(4))
    image = DefaultGenerator().make_captcha(string=text, image_size=(120, 50))
    return image.convert("RGB"), text


def _claptcha_noise(rng: random.Random):
    """claptcha: one FreeSans face, white noise over the text, lowercase and digits."""
    import claptcha

    font = Path(sys.modules["multicolorcaptcha"].__file__ if "multicolorcaptcha" in sys.modules
                else __import__("multicolorcaptcha").__file__).parent / "fonts/freefont-20120503"
    face = rng.choice(["FreeSans.ttf", "FreeSerif.ttf", "FreeMonoBold.ttf"])
    text = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(rng.randint(5, 6)))
    c = claptcha.Claptcha(text, str(font / face), size=(180, 60), margin=(12, 10),
                          noise=rng.uniform(0.2, 0.5))
    return c.image[1].convert("RGB"), text


DRAW = {"gvcode_mix": _gvcode_mix, "gvcode_sum": _gvcode_sum, "multicolor_caps": _multicolor_caps,
        "easy_default": _easy_default, "claptcha_noise": _claptcha_noise}


def write(style: str, out: Path, n: int, seed: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rng = random.Random(f"{style}/{seed}/{i}")
        random.seed(f"{style}/{seed}/{i}/global")  # the packages' own draws
        image, text = DRAW[style](rng)
        name = f"{i:05d}.png"
        image.save(out / name)
        rows.append((name, text))
    tmp = out / "labels.csv.tmp"
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows])
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(out / "labels.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--styles", nargs="+", default=list(STYLES), choices=STYLES)
    args = ap.parse_args()
    for style in args.styles:
        write(style, args.out / style, args.n, args.seed)
        print(f"{style}: {args.n} images in {args.out / style}", flush=True)


if __name__ == "__main__":
    main()
