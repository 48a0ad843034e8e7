"""Trainable discriminator heads: one small patch head per feature layer, one logit per spatial
(or token) position, spectral normalisation, class conditioning by projection (Miyato & Koyama
2018): logit = w^T h + <embed(y), h> / sqrt(C), with h the head's hidden features."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn(m: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(m) if on else m


class PatchHead(nn.Module):
    """(B, C_in, H, W) features (+ labels (B,)) -> (B, H, W) logits."""

    def __init__(self, c_in: int, c_hidden: int = 64, num_classes: Optional[int] = None, sn: bool = True):
        super().__init__()
        self.conv = _sn(nn.Conv2d(c_in, c_hidden, 3, padding=1), sn)
        self.act = nn.LeakyReLU(0.2)
        self.mix = _sn(nn.Conv2d(c_hidden, c_hidden, 1), sn)
        self.out = _sn(nn.Conv2d(c_hidden, 1, 1), sn)
        self.embed = _sn(nn.Embedding(num_classes, c_hidden), sn) if num_classes else None
        self.scale = 1.0 / math.sqrt(c_hidden)

    def forward(self, f: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.act(self.mix(self.act(self.conv(f))))  # (B, C_h, H, W)
        logit = self.out(h).squeeze(1)  # (B, H, W)
        if self.embed is not None and y is not None:
            e = self.embed(y)[:, :, None, None]  # (B, C_h, 1, 1)
            logit = logit + (e * h).sum(1) * self.scale  # projection, Eq. 3 of Miyato & Koyama 2018
        return logit
