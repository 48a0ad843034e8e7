"""The multi-scale PatchGAN discriminator with feature matching (pix2pixHD, Wang et al. 2018, Sec. 3.2;
used unchanged by SPADE, App. A): `num_D` PatchGANs, the k-th judging the input average-pooled
k times by 2, each returning its intermediate feature maps so the generator can match them.

Each PatchGAN (SPADE's NLayerDiscriminator): conv4x4 stride 2 (ndf) + LReLU, then n_layers_D - 2
stride-2 and one stride-1 conv4x4 with instance norm, spectral norm on every conv (SPADE's D), and a 1-channel conv4x4.
Input: cat(label map, image) (B, K + 3, H, W). Output: per scale, the list of feature maps, the
last being the (B, 1, H', W') logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .spade import sn


class SNPatchDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        stages = [nn.Sequential(sn(nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2)),
                                nn.LeakyReLU(0.2))]
        c = ndf
        for n in range(1, n_layers):
            out = ndf * min(2**n, 8)
            stride = 1 if n == n_layers - 1 else 2
            stages.append(nn.Sequential(sn(nn.Conv2d(c, out, 4, stride=stride, padding=2, bias=False)),
                                        nn.InstanceNorm2d(out, affine=False), nn.LeakyReLU(0.2)))
            c = out
        stages.append(nn.Conv2d(c, 1, 4, stride=1, padding=2))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2):
        super().__init__()
        self.scales = nn.ModuleList(SNPatchDiscriminator(input_nc, ndf, n_layers) for _ in range(num_D))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, D in enumerate(self.scales):
            if i:  # the reference's downsampling: 3x3 average pooling, stride 2
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(D(x))
        return out


def logits(outputs: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """The last map of each scale: the patch logits."""
    return [feats[-1] for feats in outputs]


def feature_matching(fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD Eq. 4: sum over scales and intermediate layers (the logits excluded) of the mean L1
    between D's features of the fake and of the real image (real features fixed), averaged over the
    scales as in the SPADE reference. -> (B,) per sample."""
    total = 0.0
    for f_scale, r_scale in zip(fake, real):
        for f, r in zip(f_scale[:-1], r_scale[:-1]):
            total = total + (f - r.detach()).abs().flatten(1).mean(1)
    return total / len(fake)
