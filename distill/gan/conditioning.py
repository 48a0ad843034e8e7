"""Class conditioning of a discriminator by projection (Miyato & Koyama 2018, Eq. 3), for the kinds whose
features phi(x) feed a linear logit: D(x, y) = w^T phi(x) + b + <V y, phi(x)>."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


def projection_logits(phi: torch.Tensor, out: nn.Module, embed: Optional[nn.Module],
                      labels: Optional[torch.Tensor]) -> torch.Tensor:
    """phi (B, F), `out` F -> 1 (w, b), `embed` the class embedding V (None: unconditional) -> logits (B,)."""
    logits = out(phi).squeeze(1)
    if embed is None:
        return logits
    if labels is None:
        raise ValueError("a class-conditional discriminator needs labels")
    return logits + (embed(labels) * phi).sum(dim=1)  # y^T V phi(x)
