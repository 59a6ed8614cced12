"""Training-time augmentation on whole batches (torch, no torchvision).

Captcha-shaped perturbations: the colour channels shuffled (colour images), a small
random affine warp (rotation, scale, shear, shift), pixel noise, and a random dark line
across the image, as the captcha's own strike-through strokes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_batch"]


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


def augment_batch(x: torch.Tensor, g: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Randomly perturb a batch ``(B, C, H, W)`` in [0, 1]; returns a new tensor in [0, 1].

    ``strength`` scales every perturbation (0: none; 1: the full ranges)."""
    x = _channels(x, g, p=0.5 * strength)
    x = _affine(x, g, strength)
    x = _line(x, g, p=0.3 * strength)
    x = x + torch.randn(x.shape, generator=g) * (0.03 * strength)
    return x.clamp_(0, 1)
