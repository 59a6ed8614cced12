"""Training-time augmentation on whole batches (torch, no torchvision).

Captcha-shaped perturbations: the colour channels shuffled (colour images), a small
random affine warp (rotation, scale, shear, shift), pixel noise, and a random dark line
across the image, as the captcha's own strike-through strokes.

The pixel noise follows the site's images (``aug_noise``): as much as they carry
themselves (``pixel_noise``), between ``NOISE_MIN`` and ``NOISE_MAX``. Clean renderings
with faint glyphs lose those glyphs under strong noise (rsce_gradient5's dark grey
characters differ from their background by 5-15 grey levels, sd 0.03 is 8); noisy ones
need it. Seed 1, 500 labels, 500 held out (`python bench/styles_bench.py --styles S --ns
500`), noise sd 0.03 -> 0.01: rsce_gradient5 0.908 -> 0.920, gradient_colour 0.956 ->
0.982, wavy 0.894 -> 0.922, imagecaptcha 0.422 -> 0.436, line_mesh 0.958 -> 0.960, but
dots_noise 0.808 -> 0.768 and captcha_images_v2 (300 test) 0.983 -> 0.970 (seed 2: 0.990
-> 0.997). With the noise from the data, dots_noise, line_mesh and arithmetic keep 0.03
(their own noise: 0.086, 0.040, 0.033) and the others get 0.01-0.011.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NOISE_MAX", "NOISE_MIN", "aug_noise", "augment_batch", "pixel_noise"]

NOISE_MIN, NOISE_MAX = 0.01, 0.03  # sd of the added pixel noise, 0-1 scale


def _affine(x: torch.Tensor, g: torch.Generator, strength: float) -> torch.Tensor:
    b = x.shape[0]

    def u(scale: float) -> torch.Tensor:  # uniform in [-scale, scale], shape (B,)
        return (torch.rand(b, generator=g) * 2 - 1) * scale * strength

    angle = u(math.radians(4))
    zoom = 1 + u(0.08)
    shear = u(0.15)
    tx, ty = u(0.06), u(0.10)  # fractions of half-width / half-height
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + shear, tx], 1),
        torch.stack([sin, cos, ty], 1),
    ], 1)  # (B, 2, 3): output -> input sampling coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _line(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """With probability p per image, darken a random thin straight line."""
    b, _, h, w = x.shape
    hit = torch.rand(b, generator=g) < p
    y0, y1 = torch.rand(b, generator=g) * h, torch.rand(b, generator=g) * h
    ys = torch.arange(h).view(1, h, 1).float()
    xs = torch.linspace(0, 1, w).view(1, 1, w)
    centre = y0.view(b, 1, 1) + (y1 - y0).view(b, 1, 1) * xs  # (B, 1, W)
    mask = ((ys - centre).abs() < 1.0) & hit.view(b, 1, 1)  # (B, H, W)
    return torch.where(mask.unsqueeze(1), x * 0.3, x)


_PERMS = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def _channels(x: torch.Tensor, g: torch.Generator, p: float) -> torch.Tensor:
    """Colour images: with probability p, an image's channels in a random order (red text
    becomes green or blue), so a site's few text colours do not become what the model reads."""
    if x.shape[1] != 3:
        return x
    b = x.shape[0]
    pick = torch.randint(len(_PERMS), (b,), generator=g)
    pick = torch.where(torch.rand(b, generator=g) < p, pick, torch.zeros_like(pick))
    perm = _PERMS[pick]  # (B, 3); row 0 is the identity
    return x.gather(1, perm.view(-1, 3, 1, 1).expand_as(x))


def pixel_noise(images: np.ndarray) -> float:
    """The pixel noise of model inputs ``(N, C, H, W)`` in [0, 1], as the network sees them:
    per image, a robust sd (1.4826 x the median absolute deviation) of the differences of
    horizontally neighbouring grey pixels over sqrt(2); the median over the images. Flat
    renderings give 0 (most neighbours are equal); speckle, dots and meshes do not."""
    if len(images) == 0:
        return 0.0
    d = np.diff(images.mean(axis=1), axis=2).reshape(len(images), -1)  # (N, H * (W - 1))
    mad = np.median(np.abs(d - np.median(d, axis=1, keepdims=True)), axis=1)
    return round(float(np.median(1.4826 * mad / math.sqrt(2))), 5)


def aug_noise(images: np.ndarray) -> float:
    """The sd of the augmentation's pixel noise for a site whose inputs are ``images``:
    their own noise (``pixel_noise``), within [NOISE_MIN, NOISE_MAX]."""
    return float(np.clip(pixel_noise(images), NOISE_MIN, NOISE_MAX))


def augment_batch(x: torch.Tensor, g: torch.Generator, strength: float = 1.0,
                  noise: float = NOISE_MAX) -> torch.Tensor:
    """Randomly perturb a batch ``(B, C, H, W)`` in [0, 1]; returns a new tensor in [0, 1].

    ``strength`` scales every perturbation (0: none; 1: the full ranges); ``noise`` is the
    sd of the pixel noise at full strength."""
    x = _channels(x, g, p=0.5 * strength)
    x = _affine(x, g, strength)
    x = _line(x, g, p=0.3 * strength)
    x = x + torch.randn(x.shape, generator=g) * (noise * strength)
    return x.clamp_(0, 1)
