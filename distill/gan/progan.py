"""Progressive GAN (Karras et al. 2018, "Progressive Growing of GANs"): `generator.kind: progan`,
`discriminator.kind: progan`.

Both networks grow together, one resolution level of `layers.resolution_pyramid(R)` at a time
(Sec. 2, Fig. 2), on the schedule `growth_stage(step, phase_steps, levels)`: the lowest level for
`phase_steps` steps, then for each higher level a fade-in (alpha 0 -> 1 linearly over `phase_steps`) and
a stabilisation phase (`phase_steps`); after the last level, full resolution with alpha 1 for good.
The trainer calls `set_step(step)` before each step (architectures.Growing), so the stage is a
function of the step and a resumed run grows exactly as an uninterrupted one. The stage (level, alpha)
is also a buffer, so an exported generator samples at the stage it was exported at.

    G: z (B, z_dim), y -> [pixnorm(z), pixnorm(embed(y))] -> dense -> r0 x r0 -> conv 3x3
       -> per level: nearest 2x, conv 3x3, conv 3x3   (leaky ReLU + pixel norm after every conv, Sec. 4.2)
       -> lerp(up2x(toRGB_{l-1}(h_{l-1})), toRGB_l(h_l), alpha) at level l -> nearest-upsampled to R x R
    D: x (B, C, R, R) -> avg-pooled to the level's resolution r_l -> fromRGB_l -> block_l (conv, conv,
       avg-pool 2x), faded with fromRGB_{l-1}(avg-pool 2x of the input) by alpha -> blocks down to r0
       -> minibatch std (Sec. 3) -> conv 3x3 -> dense -> dense -> logit, + projection <embed(y), phi(x)>

So G always returns full-resolution images and D always takes them (the trainer needs no growth
logic); pooling the reals in D to the current level is the paper's showing the reals at the current
resolution, and the fromRGB fade is its fade of the reals (App. A.1). Every layer has an equalized
learning rate (Sec. 4.1, `layers.EqualizedConv2d` / `EqualizedLinear`: N(0, 1) weights, He's constant
applied at run time). The paper's losses are the recipes' (WGAN-GP lambda 10, drift 0.001; Adam lr 1e-3,
betas (0, 0.99)). A WGAN-GP's gradient is taken on the full-resolution input: at a level k times below
the output, pooling divides its norm by k, so the critic is held to slope k on the level's own images,
i.e. the paper's critic scaled by k (the WGAN losses are linear in D and Adam is invariant to that scale).

Deviations from the paper: class conditioning (the paper's models were unconditional): z is concatenated
with a learned class embedding, both pixel-normalised, and D is conditioned by projection (Miyato & Koyama
2018); truncation scales the pixel-normalised latent (scaling z itself is undone by the pixel norm);
leaky ReLU's sqrt(2) is applied after the activation (StyleGAN's convention, the same He scale).
Layers of the levels not yet grown get no gradient; a multi-process run needs DDP's
find_unused_parameters while growing.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from .architectures import Draws, check_labels, truncate_z
from .discriminator import add_epilogue, epilogue, projection_logits
from .layers import EqualizedConv2d, EqualizedLinear, level_width, normalize_2nd_moment, resolution_pyramid


def growth_stage(step: int, phase_steps: int, levels: int) -> tuple[int, float]:
    """(level index, alpha) at `step`: level 0 for steps [0, P); level k >= 1 fades in over
    [P (2k - 1), 2kP) with alpha = (step - P (2k - 1)) / P and is stable (alpha 1) over [2kP, P (2k + 1));
    the last level (levels - 1) stays from its fade-in on."""
    P = phase_steps
    if step < P:
        return 0, 1.0
    k, r = divmod(step - P, 2 * P)
    if k + 1 >= levels:
        return levels - 1, 1.0
    return k + 1, (r / P if r < P else 1.0)


def upsample_nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, r, r) -> (B, C, size, size), each pixel repeated (size / r)^2 times (exact)."""
    f = size // x.shape[-1]
    return x if f == 1 else x.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Pixelwise feature vector normalisation (Sec. 4.2): each pixel's features to unit 2nd moment."""
    return normalize_2nd_moment(x)


class Growth:
    """The growth schedule and the current stage as a buffer `stage` = [level index, alpha] (a mixin of
    both networks, nn.Modules)."""

    def init_growth(self, levels: int, phase_steps: int) -> None:
        self.num_levels, self.phase_steps = levels, phase_steps
        self.register_buffer("stage", torch.tensor([levels - 1, 1.0]))  # built fully grown

    def set_step(self, step: int) -> None:
        level, alpha = growth_stage(int(step), self.phase_steps, self.num_levels)
        self.stage.copy_(torch.tensor([float(level), alpha]))

    def current(self) -> tuple[int, float]:
        level, alpha = self.stage.tolist()
        return int(round(level)), float(alpha)


class ConvPN(nn.Module):
    """3x3 equalized conv -> leaky ReLU -> pixel norm."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = EqualizedConv2d(c_in, c_out, 3, activation=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(self.conv(x))


class ProGANGenerator(ModelMixin, ConfigMixin, Growth):
    """See the module docstring. `num_classes` 0: unconditional. (B, z_dim) -> (B, C, R, R), ~[-1, 1]."""

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 128,
                 width: int = 64, max_width: int = 256, phase_steps: int = 1000):
        super().__init__()
        levels = resolution_pyramid(resolution)
        widths = [level_width(resolution, r, width, max_width) for r in levels]
        self.levels, self.widths = levels, widths
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        self.dense = EqualizedLinear(z_dim * (2 if num_classes else 1), widths[0] * levels[0] ** 2, activation=True)
        self.blocks = nn.ModuleList([ConvPN(widths[0], widths[0])])
        self.blocks.extend(nn.Sequential(ConvPN(a, b), ConvPN(b, b)) for a, b in zip(widths[:-1], widths[1:]))
        self.torgbs = nn.ModuleList(EqualizedConv2d(c, channels, 1) for c in widths)
        self.init_growth(len(levels), phase_steps)

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "ProGANGenerator":
        g, data = recipe.generator, recipe.data
        return cls(resolution=data.resolution, channels=data.channels, num_classes=num_classes, z_dim=g.z_dim,
                   width=g.width, max_width=g.max_width, phase_steps=g.progan.phase_steps)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def latent(self, z: torch.Tensor, class_labels, truncation: float) -> torch.Tensor:
        """[psi pixnorm(z), pixnorm(embed(y))] (B, z_dim or 2 z_dim)."""
        y = check_labels(class_labels, self.config.num_classes, z.shape[0], self.stage.device)
        x = truncate_z(pixel_norm(z.to(self.stage.device, self.dense.weight.dtype)), truncation)
        return x if y is None else torch.cat([x, pixel_norm(self.embed(y))], dim=1)

    def forward(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False) -> torch.Tensor:
        """Deterministic given z (ProGAN draws nothing else; `draws` and `update_stats` are unused)."""
        level, alpha = self.current()
        r0 = self.levels[0]
        h = pixel_norm(self.dense(self.latent(z, class_labels, truncation)).view(z.shape[0], -1, r0, r0))
        h = self.blocks[0](h)
        prev = h
        for i in range(1, level + 1):
            prev, h = h, self.blocks[i](upsample_nearest(h, self.levels[i]))
        img = self.torgbs[level](h)
        if level > 0 and alpha < 1.0:  # fade-in: alpha 0 is the previous stage's image exactly
            img = torch.lerp(upsample_nearest(self.torgbs[level - 1](prev), self.levels[level]), img, alpha)
        return upsample_nearest(img, self.config.resolution)

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        return {}


class DownBlock(nn.Module):
    """conv 3x3, conv 3x3 (leaky ReLU), avg-pool 2x: (B, in, r, r) -> (B, out, r/2, r/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualizedConv2d(c_in, c_in, 3, activation=True)
        self.conv1 = EqualizedConv2d(c_in, c_out, 3, activation=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv1(self.conv0(x)), 2)


class ProGANDiscriminator(Growth, nn.Module):
    """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,), at the stage set by `set_step`."""

    def __init__(self, resolution: int, channels: int, num_classes: int = 0, width: int = 64, max_width: int = 256,
                 mbstd_group: int = 4, phase_steps: int = 1000):
        super().__init__()
        levels = resolution_pyramid(resolution)
        widths = [level_width(resolution, r, width, max_width) for r in levels]
        self.levels, self.resolution = levels, resolution
        self.from_rgbs = nn.ModuleList(EqualizedConv2d(channels, c, 1, activation=True) for c in widths)
        # blocks[i] takes level i down to level i - 1 (blocks[0] unused: a placeholder keeps indices aligned)
        self.blocks = nn.ModuleList([nn.Identity()] + [DownBlock(b, a) for a, b in zip(widths[:-1], widths[1:])])
        add_epilogue(self, widths[0], levels[0], num_classes, mbstd_group)  # StyleGAN2's D ends as ProGAN's
        self.init_growth(len(levels), phase_steps)

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "ProGANDiscriminator":
        d, data = recipe.discriminator, recipe.data
        return cls(data.resolution, data.channels, num_classes, d.width, d.max_width, d.mbstd_group,
                   recipe.generator.progan.phase_steps)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, C, R, R) -> (B, C0), at the current stage."""
        level, alpha = self.current()
        x = F.avg_pool2d(x, self.resolution // self.levels[level]) if self.levels[level] < self.resolution else x
        h = self.from_rgbs[level](x)
        if level > 0:
            h = self.blocks[level](h)
            if alpha < 1.0:  # fade-in: alpha 0 reads the image at the previous level only
                h = torch.lerp(self.from_rgbs[level - 1](F.avg_pool2d(x, 2)), h, alpha)
        for i in range(level - 1, 0, -1):
            h = self.blocks[i](h)
        return epilogue(self, h)  # minibatch std, conv 3x3, dense

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        phi = self.features(x)
        return projection_logits(self.out(phi).squeeze(1), phi, self.embed, labels, self.embed_gain)
