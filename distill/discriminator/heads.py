"""Trainable discriminator heads: one small patch head per feature layer, one logit per spatial
(or token) position, spectral normalisation, conditioning by projection (Miyato & Koyama 2018):
logit = w^T h + <e(y), h> / sqrt(C), with h the head's hidden features and e(y) a class embedding
(integer labels) or a linear map of a conditioning vector (e.g. a pooled text embedding, (B, D)).

Spectral normalisation bounds each layer's gain by 1, so without a normalisation inside the head
the logits are as small as the feature *differences* between real and fake (|logit| ~ 0.1 on the
MNIST teacher's features: a hinge loss stuck at 2, the discriminator at chance). StyleGAN-T's
heads normalise after the first convolution for this reason (BatchNormLocal); we use GroupNorm,
which is per sample, so the heads stay independent of the batch split across processes."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


def _sn(m: nn.Module, on: bool) -> nn.Module:
    return spectral_norm(m) if on else m


HEAD_NORMS = {
    "group": lambda c: nn.GroupNorm(math.gcd(8, c), c),  # per sample: (B, C, H, W) over C/G x H x W
    "none": lambda c: nn.Identity(),
}


class PatchHead(nn.Module):
    """(B, C_in, H, W) features (+ labels (B,) or a conditioning vector (B, cond_dim)) -> (B, H, W) logits."""

    def __init__(self, c_in: int, c_hidden: int = 64, num_classes: Optional[int] = None, sn: bool = True,
                 cond_dim: Optional[int] = None, norm: str = "group"):
        super().__init__()
        self.conv = _sn(nn.Conv2d(c_in, c_hidden, 3, padding=1, bias=norm == "none"), sn)  # a norm removes a bias
        self.norm = HEAD_NORMS[norm](c_hidden)
        self.act = nn.LeakyReLU(0.2)
        self.mix = _sn(nn.Conv2d(c_hidden, c_hidden, 1), sn)
        self.out = _sn(nn.Conv2d(c_hidden, 1, 1), sn)
        self.embed = _sn(nn.Embedding(num_classes, c_hidden), sn) if num_classes else None
        self.proj = _sn(nn.Linear(cond_dim, c_hidden), sn) if cond_dim else None
        self.scale = 1.0 / math.sqrt(c_hidden)

    def forward(self, f: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.act(self.mix(self.act(self.norm(self.conv(f)))))  # (B, C_h, H, W)
        logit = self.out(h).squeeze(1)  # (B, H, W)
        if self.embed is not None and y is not None and not y.is_floating_point():
            e = self.embed(y)[:, :, None, None]  # (B, C_h, 1, 1)
            logit = logit + (e * h).sum(1) * self.scale  # projection, Eq. 3 of Miyato & Koyama 2018
        if self.proj is not None and y is not None and y.is_floating_point():
            e = self.proj(y.to(h.dtype))[:, :, None, None]  # (B, C_h, 1, 1)
            logit = logit + (e * h).sum(1) * self.scale
        return logit
