"""The input the recipe decides from the images: crop, size and colour."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from captcha_ocr.config import ImageConfig
from captcha_ocr.data import Sample
from captcha_ocr.geometry import choose_image, image_stats
from captcha_ocr.preprocess import preprocess


def _strip(rng, text_right: float, colour: bool, size=(255, 40)) -> Image.Image:
    """A fixed dark-to-light gradient with random blobs of 'text' left of ``text_right``."""
    w, h = size
    ramp = np.tile(np.linspace(40, 230, w), (h, 1)).astype(np.uint8)
    img = Image.fromarray(np.stack([ramp] * 3, -1))
    d = ImageDraw.Draw(img)
    for _ in range(5):
        x = rng.integers(4, int(w * text_right) - 12)
        y = rng.integers(4, h - 16)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) if colour else (255, 255, 255)
        d.rectangle([x, y, x + 10, y + 12], fill=fill)
    return img


def _dataset(tmp_path, n=40, **kw) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        p = tmp_path / f"{i}.png"
        _strip(rng, **kw).save(p)
        out.append(Sample(p, "abcde"))
    return out


def test_text_in_the_left_third_is_cropped_to_it(tmp_path):
    stats = image_stats(_dataset(tmp_path, text_right=0.35, colour=True))
    left, top, right, bottom = stats.crop
    assert (stats.width, stats.height) == (255, 40)
    assert left == 0.0 and 0.33 <= right <= 0.45
    assert stats.chroma > 0.01


def test_rare_descenders_are_not_cropped_away(tmp_path):
    """Text in rows 6-30 of 40, and in 1 image of 4 a descender down to row 38 (a 'g' or
    'p'): those rows vary about 5% as much as the text's over the dataset (as
    rsce_gradient5's), but they carry text, so they stay."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(64):
        ramp = np.tile(np.linspace(60, 230, 255), (40, 1)).astype(np.uint8)
        img = Image.fromarray(np.stack([ramp] * 3, -1))
        d = ImageDraw.Draw(img)
        x = int(rng.integers(4, 60))
        d.rectangle([x, 6, x + 40, 30], fill=(255, 0, 0))
        if i % 4 == 0:
            d.rectangle([x, 30, x + 7, 38], fill=(0, 0, 255))
        p = tmp_path / f"{i}.png"
        img.save(p)
        samples.append(Sample(p, "abcde"))
    left, top, right, bottom = image_stats(samples).crop
    assert right < 0.6  # the empty right part is still cropped
    assert bottom * 40 >= 38


def test_text_over_the_whole_width_is_not_cropped(tmp_path):
    stats = image_stats(_dataset(tmp_path, text_right=1.0, colour=False))
    assert stats.crop[0] == 0.0 and stats.crop[2] == 1.0
    assert stats.chroma < 0.01


def test_choose_image_size_colour_and_room_for_the_labels(tmp_path):
    colour = image_stats(_dataset(tmp_path, text_right=0.35, colour=True))
    im = choose_image(colour, max_label_len=5)
    assert im.channels == 3 and im.crop == colour.crop
    assert im.height == 32
    assert im.width >= 16 * 5
    (tmp_path / "grey").mkdir()
    grey = image_stats(_dataset(tmp_path / "grey", text_right=1.0, colour=False))
    im = choose_image(grey, max_label_len=12)
    assert im.channels == 1 and im.width >= 16 * 12


def test_crop_is_applied_by_the_shared_preprocessing():
    # A smooth image: resizing a box reads a little past its edges (the filter's reach),
    # which only matters where neighbouring pixels differ a lot.
    small = np.random.default_rng(1).integers(0, 256, (4, 20), dtype=np.uint8)
    img = Image.fromarray(small).resize((200, 40), Image.Resampling.BICUBIC)
    cfg = ImageConfig(20, 50, 1, crop=(0.0, 0.0, 0.5, 1.0))
    ref = preprocess(img.crop((0, 0, 100, 40)), ImageConfig(20, 50, 1))
    got = preprocess(img, cfg)
    np.testing.assert_allclose(got[..., :-1], ref[..., :-1], atol=1.5 / 255)
    np.testing.assert_allclose(got, ref, atol=5 / 255)  # the edge column sees past the box


@pytest.mark.parametrize("bad", [(0.5, 0, 0.4, 1), (0, 0, 1.2, 1), (-0.1, 0, 1, 1)])
def test_a_crop_outside_the_image_is_refused(bad):
    with pytest.raises(ValueError, match="crop"):
        ImageConfig(32, 100, 1, crop=bad)


def test_crop_round_trips_through_json():
    from captcha_ocr.config import from_dict

    cfg = ImageConfig(32, 112, 3, crop=(0.0, 0.015, 0.44, 0.835))
    back = from_dict(ImageConfig, {"height": 32, "width": 112, "channels": 3,
                                   "crop": [0.0, 0.015, 0.44, 0.835]})
    assert back == cfg
