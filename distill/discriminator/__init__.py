"""The ADD discriminator: a feature backbone plus trainable patch heads.

    D(x, y) = [head_k(F_k(aug(x)), y) for each chosen layer k]   -> logits (B, sum_k H_k W_k)

Optionally S sets of heads, one per student timestep: sample i is judged by set head[i] only.
The backbone is frozen (ADD, LADD) or trained outside the heads' optimizer (DMD2's fake score encoder);
gradients flow through it to the student's images either way.
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
                 augment: str = "", cond_dim: Optional[int] = None, head_norm: str = "group", head_sets: int = 1):
        super().__init__()
        self.backbone = backbone
        # heads[j * K + k]: set j, layer k (K layers); one set keeps the flat layout of earlier checkpoints
        self.heads = nn.ModuleList(PatchHead(c, c_hidden, num_classes, sn, cond_dim, head_norm)
                                   for _ in range(head_sets) for c in backbone.channels)
        self.head_sets = head_sets
        self.augment = augment
        self.backbone_trainable = any(p.requires_grad for p in backbone.parameters())

    def features(self, x, y, t=None, noise=None, u=None) -> list[torch.Tensor]:
        if self.augment and u is not None:
            x = diff_augment(x, u, self.augment)
        return self.backbone(x, y, t, noise)

    def heads_forward(self, feats: list[torch.Tensor], y, head: Optional[torch.Tensor] = None) -> torch.Tensor:
        """feature maps -> (B, L) logits, L = total number of patch positions over one set's heads.
        With several sets, `head` (B,) picks each sample's set; each set runs on its own samples only,
        an empty batch included, so every parameter is in the graph on every process (as DDP requires)."""
        K = len(feats)

        def set_logits(j, fs, c):
            return torch.cat([self.heads[j * K + k](f, c).flatten(1) for k, f in enumerate(fs)], dim=1)

        if self.head_sets == 1:
            return set_logits(0, feats, y)
        if head is None:
            raise ValueError("a discriminator with several head sets needs `head` (B,): the set judging each sample")
        parts = []
        for j in range(self.head_sets):
            idx = (head == j).nonzero().squeeze(1)  # (B_j,)
            parts.append((idx, set_logits(j, [f[idx] for f in feats], y[idx] if y is not None else None)))
        out = parts[0][1].new_zeros(head.shape[0], parts[0][1].shape[1])
        for idx, logits in parts:
            out = out.index_copy(0, idx, logits)
        return out  # (B, L)

    def forward(self, x, y=None, t=None, noise=None, u=None, return_features: bool = False, c=None, head=None,
                backbone_grad: float = 1.0):
        """-> (logits (B, L), features or None). With `return_features` the features are cut from the
        backbone's graph and made leaves, so R1 can take gradients at the heads' inputs (each layer's head
        alone: no path through the later backbone blocks). A trained backbone's features also reach the
        heads straight through, leaf + (f - sg(f)): same values, and the losses still reach its weights.
        `y` goes to the backbone and, unless a head conditioning `c` is given, to the heads
        (latent students pass the text conditioning as `y` and its pooled embedding as `c`);
        `head` (B,) the head set judging each sample when there are several; `backbone_grad` scales the
        gradient that enters a trained backbone through its features (values unchanged), the weight of the
        discriminator loss in that network's own update."""
        feats = self.features(x, y, t, noise, u)
        if self.backbone_trainable and backbone_grad != 1.0:
            feats = [f.detach() + backbone_grad * (f - f.detach()) for f in feats]
        if return_features:  # fp32 leaves: accelerate's mixed-precision wrapper converts bf16/fp16 outputs to
            # fp32 copies, which would cut them from the graph (R1 would see "unused" tensors)
            leaves = [f.detach().float().requires_grad_(True) for f in feats]
            if self.backbone_trainable:
                feats = [leaf + (f.float() - f.detach().float()) for leaf, f in zip(leaves, feats)]
            else:
                feats = leaves
            return self.heads_forward(feats, y if c is None else c, head), leaves
        return self.heads_forward(feats, y if c is None else c, head), None


__all__ = ["Discriminator", "PatchHead", "TeacherFeatures", "TimmFeatures", "build_backbone", "NUM_RANDOM"]
