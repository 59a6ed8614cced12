"""The synthetic style zoo: sizes, determinism, labels, datasets on disk, the CLI."""

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from captcha_ocr.cli import main
from captcha_ocr.data import discover
from captcha_ocr.zoo import STYLES, ZooError, font_paths, get_style, render, sample, write_style
from captcha_ocr.zoo.draw import fit, set_line, widen
from captcha_ocr.zoo.fonts import WIDE_PACKAGES, fonts_for, pool

NAMES = list(STYLES)


def digest(img) -> str:
    return hashlib.sha256(img.tobytes()).hexdigest()


def test_at_least_ten_styles():
    assert len(STYLES) >= 10
    assert all(name == s.name and s.description for name, s in STYLES.items())


def test_styles_use_package_fonts_only():
    import captcha
    import matplotlib

    roots = {Path(captcha.__file__).parent, Path(matplotlib.__file__).parent}
    used = {stem for style in STYLES.values() for stem in style.fonts}
    assert all(roots & set(font_paths()[stem].parents) for stem in used)
    assert set(font_paths()) <= set(font_paths(system=True))


@pytest.mark.parametrize("name", NAMES)
def test_every_font_of_a_style_draws_its_whole_alphabet(name):
    style = STYLES[name]
    assert fonts_for(style.fonts, style.alphabet) == tuple(dict.fromkeys(style.fonts))


@pytest.mark.parametrize("name", NAMES)
def test_the_wide_pool_adds_package_faces_that_draw_the_whole_alphabet(name):
    style = STYLES[name]
    wide = pool(style.fonts, "wide")
    assert pool(style.fonts, "zoo") == style.fonts and wide[: len(style.fonts)] == style.fonts
    extra = set(wide) - set(style.fonts)
    assert len(extra) >= 14
    homes = {p.parent.parent.name for p in (font_paths()[stem] for stem in extra)}
    assert homes <= set(WIDE_PACKAGES)  # font packages, never the OS's fonts
    assert fonts_for(wide, style.alphabet) == tuple(dict.fromkeys(wide))


def test_wide_renders_keep_the_label_and_size_and_change_the_glyphs():
    for name in ("gradient_colour", "line_mesh", "bold_caps"):
        pairs = [(render(name, 2, i), render(name, 2, i, "wide")) for i in range(10)]
        assert all(la == lb and a.size == b.size for (a, la), (b, lb) in pairs)
        assert sum(digest(a) != digest(b) for (a, _), (b, _) in pairs) >= 5
        assert digest(render(name, 2, 3, "wide")[0]) == digest(pairs[3][1][0])


def test_an_unknown_pool_is_one_line():
    with pytest.raises(ZooError, match="unknown font pool 'huge'; use one of zoo, wide"):
        render("wavy", 0, 0, "huge")


def test_a_font_without_the_glyphs_is_dropped():
    assert fonts_for(("DejaVuSans", "DejaVuSansDisplay"), "abc") == ("DejaVuSans",)
    with pytest.raises(ZooError, match="none of the fonts"):
        fonts_for(("DejaVuSansDisplay",), "abc")


@pytest.mark.parametrize("name", NAMES)
def test_renders_at_declared_size(name):
    img, _ = render(name, 0, 0)
    assert img.mode == "RGB" and img.size == STYLES[name].size


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_image(name):
    (a, la), (b, lb) = render(name, 3, 5), render(name, 3, 5)
    assert la == lb and digest(a) == digest(b)


@pytest.mark.parametrize("name", NAMES)
def test_other_seeds_differ(name):
    images = [digest(render(name, seed, 0)[0]) for seed in range(4)]
    images += [digest(render(name, 0, index)[0]) for index in range(1, 4)]
    assert len(set(images)) == len(images)


@pytest.mark.parametrize("name", NAMES)
def test_labels_fit_alphabet_and_lengths(name):
    style = STYLES[name]
    labels = [label for _, label in sample(name, 1, 30)]
    for label in labels:
        assert set(label) <= set(style.alphabet), label
        assert style.lengths[0] <= len(label) <= style.lengths[1], label
    assert len(set(labels)) > 20  # random, not a few repeats


@pytest.mark.parametrize("text", ["W", "mmmmmmmm", "Wj9g"])
def test_glyphs_are_shrunk_into_the_box_not_clipped(text):
    rng = random.Random(0)
    pieces = fit(set_line(rng, text, ("DejaVuSans-Bold",), (40, 44), angle=30), (3, 2, 63, 28), rng)
    for p in pieces:
        assert 3 <= round(p.x) and round(p.x) + p.mask.width <= 63 + 1
        assert 2 <= round(p.y) and round(p.y) + p.mask.height <= 28 + 1


def test_sums_are_sums():
    for _, label in sample("arithmetic", 0, 20):
        assert label.rstrip("?").endswith("=") and any(op in label for op in "+-x")


def test_styles_look_different():
    means = {name: np.asarray(render(name, 0, 0)[0], np.float32).mean(axis=(0, 1)) for name in NAMES}
    looks = {(STYLES[name].size, tuple(np.round(m / 8))) for name, m in means.items()}
    assert len(looks) == len(NAMES)
    assert means["dark_bg"].mean() < 100 < means["bold_caps"].mean()


def test_fresh_process_gives_the_same_image_without_torch():
    code = (
        "import hashlib, sys; from captcha_ocr.zoo import render; img, label = render('wavy', 7, 11); "
        "print(label, hashlib.sha256(img.tobytes()).hexdigest(), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    img, label = render("wavy", 7, 11)
    assert out.split() == [label, digest(img), "False"]


def test_unknown_style():
    with pytest.raises(ZooError, match="unknown style 'nope'; known: imagecaptcha"):
        get_style("nope")


def test_write_style_reads_back(tmp_path):
    written = write_style("pastel_digits", tmp_path / "set", n=12, seed=4)
    samples = discover(tmp_path / "set")
    assert [s.path.name for s in samples] == [f"{i:06d}.png" for i in range(12)]
    assert (
        [s.label for s in samples]
        == [s.label for s in written]
        == [lb for _, lb in sample("pastel_digits", 4, 12)]
    )
    assert (tmp_path / "set" / "labels.csv").read_text().startswith("file,label\n000000.png,")


def test_write_style_jpg_and_refuses_a_folder_with_images(tmp_path):
    write_style("bold_caps", tmp_path, n=2, fmt="jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.jpg", "000001.jpg", "labels.csv"]
    with pytest.raises(ZooError, match="already holds images"):
        write_style("bold_caps", tmp_path, n=2)
    with pytest.raises(ZooError, match="unknown image format"):
        write_style("bold_caps", tmp_path / "new", n=2, fmt="tiff")


def run(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_lists_styles(capsys):
    rc, out, _ = run(capsys, "zoo")
    assert rc == 0 and len(out.splitlines()) == len(STYLES)
    assert "wavy" in out and "300x80" in out and "0-9 + - x =" in out


def test_cli_writes_a_folder(capsys, tmp_path):
    rc, out, _ = run(capsys, "zoo", "line_mesh", "--out", tmp_path / "d", "-n", 5, "--seed", 2)
    assert rc == 0 and "wrote 5 line_mesh images" in out
    assert [s.label for s in discover(tmp_path / "d")] == [lb for _, lb in sample("line_mesh", 2, 5)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nope", "--out", "x"], "unknown style 'nope'; known: imagecaptcha"),
        (["wavy"], "--out"),
        (["wavy", "--out", "{file}"], "is a file (or under one), not a folder"),
        (["wavy", "--out", "{file}/sub"], "is a file (or under one), not a folder"),
        (["--out", "x"], "name the style to write to x"),
    ],
)
def test_cli_one_line_errors(capsys, tmp_path, args, needle):
    (tmp_path / "labels.csv").write_text("file,label\n")
    args = [x.format(file=tmp_path / "labels.csv") for x in args]
    rc, _, err = run(capsys, "zoo", *args)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and needle in err


def test_widen_keeps_the_image_and_continues_its_background():
    img, _ = render("gradient_colour", 0, 0)
    for where in (0.0, 0.5, 1.0):
        out = widen(img, random.Random(3), 2.0, where)
        assert out.size == (2 * img.width, img.height) and out.mode == "RGB"
        left = round(img.width * where)
        a, b = np.asarray(out).astype(int), np.asarray(img).astype(int)
        assert np.array_equal(a[:, left : left + img.width], b)
        # next to the image, the strip is the image's own edge column
        edge = left + img.width if where < 1 else left - 1
        src = img.width - 1 if where < 1 else 0
        assert np.abs(a[:, edge] - b[:, src]).max() <= 1
