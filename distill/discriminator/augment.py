"""Differentiable augmentation (DiffAugment, Zhao et al. 2020): colour, translation, cutout,
applied identically-distributed to real and fake images before the discriminator.

Randomness comes in as a per-sample uniform tensor `u` (B, 7) drawn by the trainer for the global
batch, so the augmentation is a pure function and multi-process runs match single-process ones.
"""

from __future__ import annotations

import torch

NUM_RANDOM = 7


def color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (x in [-1, 1] scale)."""
    b = (u[:, 0] - 0.5).view(-1, 1, 1, 1)
    x = x + b
    if x.shape[1] > 1:
        m = x.mean(1, keepdim=True)
        x = (x - m) * (u[:, 1] * 2).view(-1, 1, 1, 1) + m
    m = x.mean((1, 2, 3), keepdim=True)
    return (x - m) * (u[:, 2] + 0.5).view(-1, 1, 1, 1) + m


def translation(x: torch.Tensor, u: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to `ratio` of the size with zero padding (bilinear-free: integer shifts)."""
    B, C, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ty = (u[:, 3] * (2 * sh + 1)).floor().long() - sh  # (B,)
    tx = (u[:, 4] * (2 * sw + 1)).floor().long() - sw
    gy = torch.arange(H, device=x.device).view(1, H, 1) - ty.view(B, 1, 1)
    gx = torch.arange(W, device=x.device).view(1, 1, W) - tx.view(B, 1, 1)
    valid = ((gy >= 0) & (gy < H) & (gx >= 0) & (gx < W)).unsqueeze(1)
    gy, gx = gy.clamp(0, H - 1), gx.clamp(0, W - 1)
    idx = (gy * W + gx).view(B, 1, H * W).expand(B, C, H * W)
    out = x.reshape(B, C, H * W).gather(2, idx).view(B, C, H, W)
    return out * valid


def cutout(x: torch.Tensor, u: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of side `ratio` x size at a random place inside the image."""
    B, C, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    y0 = (u[:, 5] * (H - ch + 1)).floor().long().view(B, 1, 1)
    x0 = (u[:, 6] * (W - cw + 1)).floor().long().view(B, 1, 1)
    ys = torch.arange(H, device=x.device).view(1, H, 1)
    xs = torch.arange(W, device=x.device).view(1, 1, W)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1)


AUGMENTS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, u: torch.Tensor, policy: str) -> torch.Tensor:
    """x: (B, C, H, W); u: (B, NUM_RANDOM) uniform in [0, 1); policy: 'color,translation,cutout'."""
    for name in [p for p in policy.split(",") if p]:
        x = AUGMENTS[name](x, u.to(x.device, x.dtype))
    return x
