"""SPADE's perceptual loss (Sec. 4, after pix2pixHD): L1 between VGG19 features of the output and of
the real photo at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, weighted 1/32, 1/16, 1/8, 1/4, 1.

The ImageNet weights are torchvision's, read only from the local torch hub cache
(`$TORCH_HOME/hub/checkpoints/vgg19-dcbfe7e4.pth`): nothing is downloaded. Without them the loss
is off and one line says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn

from ..engine.messages import get_logger

logger = get_logger(__name__)

SLICES = (2, 7, 12, 21, 30)  # ends of relu1_1 ... relu5_1 in torchvision's vgg19().features
WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg19_weights_path() -> Path:
    from torchvision.models import VGG19_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_Weights.IMAGENET1K_V1.url).name


class VGGLoss(nn.Module):
    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.stages = nn.ModuleList(features[a:b] for a, b in zip((0,) + SLICES[:-1], SLICES)).eval()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] each -> (B,) per-sample loss."""
        x, y = ((fake + 1) / 2 - self.mean) / self.std, ((real + 1) / 2 - self.mean) / self.std
        loss = 0.0
        for w, stage in zip(WEIGHTS, self.stages):
            x, y = stage(x), stage(y)
            loss = loss + w * (x - y.detach()).abs().flatten(1).mean(1)
        return loss


def load_vgg_loss() -> Optional[VGGLoss]:
    """The loss with the local VGG19 weights, or None (one notice) where they are absent."""
    try:
        from torchvision.models import vgg19

        path = vgg19_weights_path()
    except ImportError:
        logger.warning("translate.lambda_vgg: torchvision is not installed; the VGG loss is off")
        return None
    if not path.is_file():
        logger.warning(f"translate.lambda_vgg: no VGG19 weights at {path} (nothing is downloaded); the VGG loss is off")
        return None
    net = vgg19()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return VGGLoss(net.features)
