"""DCGAN (Radford et al. 2015, "Unsupervised Representation Learning with Deep Convolutional GANs"),
class-conditional, for small images. `generator.kind: dcgan`, `discriminator.kind: dcgan`.

Generator (Sec. 3, Fig. 1), all-convolutional, no pooling, no fully connected hidden layer:

    [z, embed(y)] (B, z_dim + e, 1, 1) --transposed conv, kernel r0--> (B, C0, r0, r0)   (the "projection")
    per higher level: BN -> ReLU -> transposed conv 4x4 stride 2 (2x the resolution)
    the last one outputs the image channels, then Tanh (no BN on the output)

Discriminator: strided 4x4 convolutions (stride 2, no pooling) with LeakyReLU 0.2, batch norm on every
layer but the first; the last feature map, flattened, is phi(x), and the logit is
w^T phi(x) + b + <V y, phi(x)> (projection conditioning, Miyato & Koyama 2018, Eq. 3).

Every conv / linear weight (and the projection V) is drawn from N(0, 0.02), batch-norm gains from
N(1, 0.02), biases 0 (Sec. 4). Resolutions follow `layers.resolution_pyramid` (28 px: 7, 14, 28;
32 px: 4, 8, 16, 32), widths `layers.level_width`. The class embedding's size is `generator.w_dim`.

Batch norm in G: batch statistics in a training forward, running statistics otherwise
(`distill.gan.batchnorm`); an exported generator (eval mode) is deterministic given z and the label.
Its running statistics are the raw generator's; the trainer's EMA covers the parameters only.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .architectures import Draws, check_labels, truncate_z
from .batchnorm import ModeBatchNorm2d, norm_mode
from .conditioning import projection_logits
from .layers import level_width, resolution_pyramid

INIT_STD = 0.02  # Sec. 4: all weights from a zero-centred normal with standard deviation 0.02
LRELU_SLOPE = 0.2


@torch.no_grad()
def dcgan_init(module: nn.Module) -> None:
    """Sec. 4: conv / transposed conv / linear weights ~ N(0, 0.02), batch-norm gains ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, INIT_STD)
            nn.init.zeros_(m.bias)


class DCGANGenerator(ModelMixin, ConfigMixin):
    """See the module docstring. `num_classes` 0: unconditional."""

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 100,
                 embed_dim: int = 64, width: int = 64, max_width: int = 512):
        super().__init__()
        levels = resolution_pyramid(resolution)
        widths = [level_width(resolution, r, width, max_width) for r in levels[:-1]]  # hidden levels
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        cond = z_dim + (embed_dim if num_classes else 0)
        self.project = nn.ConvTranspose2d(cond, widths[0], levels[0], bias=False)  # 1x1 -> r0 x r0
        self.norms = nn.ModuleList(ModeBatchNorm2d(c) for c in widths)  # before each upsampling conv
        outs = widths[1:] + [channels]
        # a bias only where no batch norm follows: the output layer
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=i == len(outs) - 1)
                                 for i, (a, b) in enumerate(zip(widths, outs)))
        dcgan_init(self)  # the embedding keeps nn.Embedding's N(0, 1), the scale of z

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "DCGANGenerator":
        g, data = recipe.generator, recipe.data
        return cls(resolution=data.resolution, channels=data.channels, num_classes=num_classes, z_dim=g.z_dim,
                   embed_dim=g.w_dim, width=g.width, max_width=g.max_width)

    def forward(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False) -> torch.Tensor:
        """z (B, z_dim), labels (B,) -> images (B, C, R, R) in (-1, 1)."""
        mode = norm_mode(self, draws, update_stats)
        w = self.project.weight
        y = check_labels(class_labels, self.config.num_classes, z.shape[0], w.device)
        x = truncate_z(z.to(w), truncation)
        if self.embed is not None:
            x = torch.cat([x, self.embed(y)], dim=1)
        h = self.project(x[:, :, None, None])  # (B, C0, r0, r0)
        for norm, up in zip(self.norms, self.ups):
            h = up(F.relu(norm(h, mode)))
        return torch.tanh(h)

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """DCGAN draws nothing but z."""
        return {}


class DCGANDiscriminator(nn.Module):
    """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,). `num_classes` 0: no projection term."""

    def __init__(self, resolution: int, channels: int, num_classes: int = 0, width: int = 64, max_width: int = 512):
        super().__init__()
        levels = resolution_pyramid(resolution)[::-1]  # highest first
        widths = [level_width(resolution, r, width, max_width) for r in levels[1:]]  # after each strided conv
        ins = [channels] + widths[:-1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2, padding=1, bias=i == 0)
                                   for i, (a, b) in enumerate(zip(ins, widths)))
        # no batch norm on the first layer (Sec. 3): it would remove the input's own mean and scale
        self.norms = nn.ModuleList([nn.Identity()] + [nn.BatchNorm2d(c) for c in widths[1:]])
        features = widths[-1] * levels[-1] ** 2
        self.out = nn.Linear(features, 1)  # w, b
        self.embed = nn.Embedding(num_classes, features) if num_classes else None  # V
        dcgan_init(self)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, INIT_STD)

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "DCGANDiscriminator":
        d, data = recipe.discriminator, recipe.data
        return cls(data.resolution, data.channels, num_classes, d.width, d.max_width)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, C, R, R) -> (B, C0 r0 r0)."""
        h = x
        for conv, norm in zip(self.convs, self.norms):
            h = F.leaky_relu(norm(conv(h)), LRELU_SLOPE)
        return h.flatten(1)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return projection_logits(self.features(x), self.out, self.embed, labels)
