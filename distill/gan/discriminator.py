"""The discriminator: StyleGAN2's residual architecture (Karras et al. 2020, Fig. 7c) with a
minibatch standard deviation layer (Karras et al. 2018, Sec. 3) and projection conditioning
(Miyato & Koyama 2018, Eq. 3):

    fromRGB (1x1) -> per level: [conv 3x3, avg-pool 2x, conv 3x3] + [avg-pool 2x, 1x1] skip, / sqrt(2)
    -> at r0: minibatch std (+1 channel), conv 3x3, flatten, fc -> phi(x) (B, C0)
    D(x, y) = psi(phi(x)) + <embed(y), phi(x)>          (Eq. 3, Miyato & Koyama: y^T V phi(x) + psi(phi(x)))

Outputs raw logits (B,), the input of every loss in `distill.gan.losses.ADV_LOSSES`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualizedConv2d, EqualizedLinear, level_width, resolution_pyramid
from .regularizers import MinibatchStd


class ResidualBlock(nn.Module):
    """(B, in, r, r) -> (B, out, r/2, r/2); the second conv runs at the lower resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualizedConv2d(in_channels, out_channels, 3, activation=True)
        self.skip = EqualizedConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.avg_pool2d(self.conv0(x), 2))
        return (h + self.skip(F.avg_pool2d(x, 2))) * math.sqrt(0.5)


class ResidualDiscriminator(nn.Module):
    """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,). `num_classes` 0: unconditional
    (no projection term); `mbstd_group` 0: no minibatch std layer."""

    def __init__(self, resolution: int, channels: int, num_classes: int = 0, width: int = 64,
                 max_width: int = 256, mbstd_group: int = 4):
        super().__init__()
        levels = resolution_pyramid(resolution)[::-1]  # highest first
        widths = [level_width(resolution, r, width, max_width) for r in levels]
        self.from_rgb = EqualizedConv2d(channels, widths[0], 1, activation=True)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        add_epilogue(self, widths[-1], levels[-1], num_classes, mbstd_group)
        self.num_classes = num_classes

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "ResidualDiscriminator":
        d, data = recipe.discriminator, recipe.data
        return cls(data.resolution, data.channels, num_classes, d.width, d.max_width, d.mbstd_group)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, C, R, R) -> (B, C0)."""
        h = self.from_rgb(x)
        for block in self.blocks:
            h = block(h)
        return epilogue(self, h)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        phi = self.features(x)  # (B, C0)
        return projection_logits(self.out(phi).squeeze(1), phi, self.embed, labels, self.embed_gain)


def add_epilogue(d: nn.Module, c0: int, r0: int, num_classes: int, mbstd_group: int) -> None:
    """The layers at the base resolution r0 (c0 channels), as attributes of `d`: minibatch std (`mbstd_group` 0:
    none), conv 3x3, fc -> phi(x); psi `out`, the projection V `embed` (num_classes 0: none) and its gain."""
    d.mbstd = MinibatchStd(mbstd_group) if mbstd_group else None
    d.conv = EqualizedConv2d(c0 + (1 if mbstd_group else 0), c0, 3, activation=True)
    d.fc = EqualizedLinear(c0 * r0 * r0, c0, activation=True)
    d.out = EqualizedLinear(c0, 1)  # psi
    d.embed = nn.Embedding(num_classes, c0) if num_classes else None  # V
    d.embed_gain = 1.0 / math.sqrt(c0)


def epilogue(d: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """phi(x) from the features at r0 through `add_epilogue`'s layers: (B, c0, r0, r0) -> (B, c0)."""
    if d.mbstd is not None:
        h = d.mbstd(h)
    return d.fc(d.conv(h).flatten(1))


def projection_logits(psi: torch.Tensor, phi: torch.Tensor, embed: Optional[nn.Embedding],
                      labels: Optional[torch.Tensor], gain: float = 1.0) -> torch.Tensor:
    """psi(phi(x)) + gain y^T V phi(x) (Miyato & Koyama 2018, Eq. 3; V = `embed`, None: unconditional).
    psi (B,), phi (B, F), labels (B,) -> logits (B,)."""
    if embed is None:
        return psi
    if labels is None:
        raise ValueError("a class-conditional discriminator needs labels")
    return psi + gain * (embed(labels) * phi).sum(dim=1)
