import numpy as np
import pytest
import torch

from captcha_ocr.augment import NOISE_MAX, NOISE_MIN, aug_noise, augment_batch, pixel_noise


def test_shape_range_and_seeded():
    x = torch.rand(4, 1, 50, 200)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(2)))
    assert (a - x).abs().mean() > 0.01  # it does perturb


def test_small_perturbation_keeps_the_picture():
    x = torch.ones(2, 1, 50, 200)
    x[:, :, 20:30, 50:150] = 0  # a dark bar
    a = augment_batch(x, torch.Generator().manual_seed(0), strength=0.5)
    assert a[:, :, 22:28, 70:130].mean() < 0.4  # the bar is still there


def test_pixel_noise_measures_the_sites_own_noise():
    rng = np.random.default_rng(0)
    flat = np.zeros((20, 3, 32, 128), np.float32)
    flat[:, :, 8:24, 10:60] = 0.8  # clean text-like blocks: most neighbours equal
    assert pixel_noise(flat) == 0.0
    for sd in (0.02, 0.05):
        noisy = np.clip(0.5 + rng.normal(0, sd, (20, 1, 32, 128)), 0, 1).astype(np.float32)
        assert pixel_noise(noisy) == pytest.approx(sd, rel=0.15)
    assert aug_noise(flat) == NOISE_MIN
    assert aug_noise(np.clip(0.5 + rng.normal(0, 0.2, (5, 1, 32, 128)), 0, 1)) == NOISE_MAX


def test_noise_sd_is_what_is_added():
    x = torch.full((8, 1, 32, 128), 0.5)
    for sd in (0.01, 0.03):
        a = augment_batch(x, torch.Generator().manual_seed(0), noise=sd)
        # the warp and the strike line move little of a flat image; the noise is the spread
        assert (a - x)[(a - x).abs() < 0.2].std().item() == pytest.approx(sd, rel=0.2)
