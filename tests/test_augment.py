import torch

from captcha_ocr.augment import augment_batch


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
