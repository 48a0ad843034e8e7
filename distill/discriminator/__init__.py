"""The ADD discriminator: a frozen feature backbone plus trainable patch heads.

    D(x, y) = [head_k(F_k(aug(x)), y) for each chosen layer k]   -> logits (B, sum_k H_k W_k)

Only the heads train. Gradients flow through the frozen backbone to the student's images.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .augment import NUM_RANDOM, diff_augment
from .backbones import TeacherFeatures, TimmFeatures, build_backbone
from .heads import PatchHead


class Discriminator(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: Optional[int], c_hidden: int = 64, sn: bool = True,
                 augment: str = "", cond_dim: Optional[int] = None, head_norm: str = "group"):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(PatchHead(c, c_hidden, num_classes, sn, cond_dim, head_norm) for c in backbone.channels)
        self.augment = augment

    def features(self, x, y, t=None, noise=None, u=None) -> list[torch.Tensor]:
        if self.augment and u is not None:
            x = diff_augment(x, u, self.augment)
        return self.backbone(x, y, t, noise)

    def heads_forward(self, feats: list[torch.Tensor], y) -> torch.Tensor:
        """feature maps -> (B, L) logits, L = total number of patch positions over heads."""
        return torch.cat([h(f, y).flatten(1) for h, f in zip(self.heads, feats)], dim=1)

    def forward(self, x, y=None, t=None, noise=None, u=None, return_features: bool = False, c=None):
        """-> (logits (B, L), features or None). With `return_features` the features are cut from
        the backbone's graph and made leaves, so R1 can take gradients at the heads' inputs.
        `y` goes to the backbone and, unless a head conditioning `c` is given, to the heads
        (latent students pass the text conditioning as `y` and its pooled embedding as `c`)."""
        feats = self.features(x, y, t, noise, u)
        if return_features:  # fp32 leaves: accelerate's mixed-precision wrapper converts bf16/fp16 outputs to
            # fp32 copies, which would cut them from the graph (R1 would see "unused" tensors)
            feats = [f.detach().float().requires_grad_(True) for f in feats]
        return self.heads_forward(feats, y if c is None else c), (feats if return_features else None)


__all__ = ["Discriminator", "PatchHead", "TeacherFeatures", "TimmFeatures", "build_backbone", "NUM_RANDOM"]
