"""BigGAN (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis"), for
small images. `generator.kind: biggan`, `discriminator.kind: biggan`.

Generator (Sec. 3, Fig. 15 a-b; Appendix B):

    z (B, z_dim) split into 1 + n_blocks chunks (hierarchical latents, Sec. 4 "skip-z"):
    chunk 0 --linear--> (B, C0, r0, r0); block k (r -> 2r) reads c_k = [shared(y), chunk k + 1]
    block:  CBN(h, c_k) -> ReLU -> upsample 2x (nearest) -> conv 3x3 -> CBN(., c_k) -> ReLU -> conv 3x3
            + skip: upsample 2x -> conv 1x1
    one self-attention block (SAGAN, Zhang et al. 2019) on the feature map at
    `generator.biggan.attention_resolution`; output: BN -> ReLU -> conv 3x3 -> Tanh

    CBN(h, c) = BN(h) * (1 + W_gain c) + W_bias c    (class-conditional batch norm)

The class embedding `shared` is ONE nn.Embedding (size `generator.biggan.shared_dim`) read by every
conditional batch norm (Sec. 3, "shared embedding"). Spectral norm on every conv and linear layer of G and
D (Sec. 3, after Zhang et al. 2019), orthogonal initialisation. Truncation scales z towards 0
(`architectures.truncate_z`, the toolkit's truncation for every z-input kind) rather than BigGAN's
resampling of values beyond a threshold.

Discriminator: residual blocks (ReLU -> conv 3x3 -> ReLU -> conv 3x3 -> average pool, + conv 1x1 skip; the
first without the leading ReLU), one per halving down to r0 and one more at r0, the same self-attention
block at its resolution (when D has a feature map there: below the image resolution), ReLU, global sum
pooling -> phi(x); logit = w^T phi(x) + b + <V y, phi(x)> (projection, Miyato & Koyama 2018), all
spectrally normalised.

Batch norm in G: batch statistics in a training forward, running statistics otherwise
(`distill.gan.batchnorm`); its running statistics are the raw generator's (the trainer's EMA covers the
parameters only), and sampling outside a training forward runs no spectral-norm power iteration, so an
image is a function of z and the label alone. The paper's losses are the recipe's (gan.loss hinge,
gan.ortho 1e-4: `distill.gan.regularizers.orthogonal_penalty`, which skips the shared embedding and
regularises spectrally normalised layers through their raw weights).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import DistillError
from .architectures import Draws, check_labels, truncate_z
from .batchnorm import ModeBatchNorm2d, NormMode, norm_mode
from .conditioning import projection_logits
from .layers import level_width, resolution_pyramid
from .regularizers import apply_spectral_norm


def conv(a: int, b: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(a, b, k, padding=k // 2)


def up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


@torch.no_grad()
def orthogonal_init(module: nn.Module) -> None:
    """BigGAN's initialisation (Appendix B): orthogonal conv, linear and embedding weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


@contextmanager
def no_power_iteration(module: nn.Module, when: bool):
    """Spectral norm's power iteration (which updates u, v in train mode) paused while `when`: sampling
    from a generator in train mode then leaves it unchanged and is deterministic."""
    norms = [p for m in module.modules() if parametrize.is_parametrized(m, "weight")
             for p in m.parametrizations.weight] if when else []
    states = [p.training for p in norms]
    for p in norms:
        p.training = False
    try:
        yield
    finally:
        for p, s in zip(norms, states):
            p.training = s


def z_chunk_sizes(z_dim: int, slots: int) -> list[int]:
    """Sizes of the hierarchical latent's chunks (the first ones one larger when z_dim % slots)."""
    if z_dim < slots:
        raise DistillError(f"generator.z_dim ({z_dim}) must be at least the number of latent chunks ({slots}: "
                           "one for the input layer and one per generator block)")
    return [z_dim // slots + (i < z_dim % slots) for i in range(slots)]


class ConditionalBatchNorm(nn.Module):
    """BN(h) * (1 + W_gain c) + W_bias c: gains and biases linear in c = [shared(y), z chunk]."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.bn = ModeBatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(cond_dim, channels, bias=False)
        self.bias = nn.Linear(cond_dim, channels, bias=False)

    def forward(self, h: torch.Tensor, c: torch.Tensor, mode: NormMode) -> torch.Tensor:
        return self.bn(h, mode) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    """(B, in, r, r), c (B, cond) -> (B, out, 2r, 2r)."""

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.bn1, self.bn2 = ConditionalBatchNorm(cin, cond_dim), ConditionalBatchNorm(cout, cond_dim)
        self.conv1, self.conv2, self.skip = conv(cin, cout, 3), conv(cout, cout, 3), conv(cin, cout, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor, mode: NormMode) -> torch.Tensor:
        h = self.conv1(up2(F.relu(self.bn1(x, c, mode))))
        h = self.conv2(F.relu(self.bn2(h, c, mode)))
        return h + self.skip(up2(x))


class SelfAttention(nn.Module):
    """SAGAN's block (Zhang et al. 2019, Sec. 3; BigGAN's variant with 2x max-pooled keys and values):
    x + gamma o(softmax(theta(x)^T phi(x)) g(x)), gamma initialised 0. (B, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        k = max(1, channels // 8)
        self.theta, self.phi = conv(channels, k, 1), conv(channels, k, 1)
        self.g, self.o = conv(channels, max(1, channels // 2), 1), conv(max(1, channels // 2), channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        theta = self.theta(x).flatten(2)  # (B, k, HW)
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # (B, k, HW/4)
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # (B, C/2, HW/4)
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (B, HW, HW/4)
        o = (g @ beta.transpose(1, 2)).view(B, -1, H, W)  # (B, C/2, H, W)
        return x + self.gamma * self.o(o)


def attention_level(levels: list[int], attention_resolution: int) -> Optional[int]:
    """The pyramid level index of the attention block; None for 0 (no attention)."""
    if not attention_resolution:
        return None
    if attention_resolution not in levels:
        raise DistillError(f"generator.biggan.attention_resolution: {attention_resolution} is not one of the "
                           f"network's resolutions ({', '.join(map(str, levels))}; 0: none)")
    return levels.index(attention_resolution)


class BigGANGenerator(ModelMixin, ConfigMixin):
    """See the module docstring. `num_classes` 0: unconditional (the conditional batch norms read z only)."""

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 128,
                 shared_dim: int = 128, width: int = 64, max_width: int = 256, attention_resolution: int = 16):
        super().__init__()
        levels = resolution_pyramid(resolution)
        widths = [level_width(resolution, r, width, max_width) for r in levels]
        self.chunks = z_chunk_sizes(z_dim, len(levels))  # input layer + one per block
        self.attention_at = attention_level(levels, attention_resolution)
        self.r0, self.c0 = levels[0], widths[0]
        self.shared = nn.Embedding(num_classes, shared_dim) if num_classes else None
        e = shared_dim if num_classes else 0
        self.linear = nn.Linear(self.chunks[0], widths[0] * levels[0] ** 2)
        self.blocks = nn.ModuleList(GBlock(a, b, e + n) for a, b, n in zip(widths[:-1], widths[1:], self.chunks[1:]))
        self.attention = SelfAttention(widths[self.attention_at]) if self.attention_at is not None else None
        self.out_bn = ModeBatchNorm2d(widths[-1])
        self.out_conv = conv(widths[-1], channels, 3)
        orthogonal_init(self)
        apply_spectral_norm(self)  # every conv and linear; the shared embedding is not one

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "BigGANGenerator":
        g, data = recipe.generator, recipe.data
        return cls(resolution=data.resolution, channels=data.channels, num_classes=num_classes, z_dim=g.z_dim,
                   shared_dim=g.biggan.shared_dim, width=g.width, max_width=g.max_width,
                   attention_resolution=g.biggan.attention_resolution)

    def conditions(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """z (B, z_dim) -> (the input layer's chunk, [c_k = [shared(y), chunk k + 1] for each block])."""
        parts = list(torch.split(z, self.chunks, dim=1))
        emb = self.shared(y) if self.shared is not None else None
        cs = [p if emb is None else torch.cat([emb, p], dim=1) for p in parts[1:]]
        return parts[0], cs

    def forward(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False) -> torch.Tensor:
        """z (B, z_dim), labels (B,) -> images (B, C, R, R) in (-1, 1)."""
        mode = norm_mode(self, draws, update_stats)
        device = self.out_bn.running_mean.device
        y = check_labels(class_labels, self.config.num_classes, z.shape[0], device)
        z0, cs = self.conditions(truncate_z(z.to(device, self.out_bn.running_mean.dtype), truncation), y)
        with no_power_iteration(self, when=self.training and draws is None):
            h = self.linear(z0).view(z.shape[0], self.c0, self.r0, self.r0)
            if self.attention_at == 0:
                h = self.attention(h)
            for k, (block, c) in enumerate(zip(self.blocks, cs)):
                h = block(h, c, mode)
                if self.attention_at == k + 1:
                    h = self.attention(h)
            return torch.tanh(self.out_conv(F.relu(self.out_bn(h, mode))))

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """BigGAN draws nothing but z."""
        return {}


class DBlock(nn.Module):
    """(B, in, r, r) -> (B, out, r/2, r/2) (or r with down False); `first`: no ReLU before conv1."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool):
        super().__init__()
        self.conv1, self.conv2 = conv(cin, cout, 3), conv(cout, cout, 3)
        self.skip = conv(cin, cout, 1) if (cin != cout or down) else None
        self.down, self.first = down, first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x  # the shortcut: the first block pools before its 1x1 conv, the others after (BigGAN's code)
        if self.first and self.down:
            s = F.avg_pool2d(s, 2)
        if self.skip is not None:
            s = self.skip(s)
        if self.down and not self.first:
            s = F.avg_pool2d(s, 2)
        return h + s


class BigGANDiscriminator(nn.Module):
    """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,). `num_classes` 0: no projection term."""

    def __init__(self, resolution: int, channels: int, num_classes: int = 0, width: int = 64, max_width: int = 256,
                 attention_resolution: int = 16):
        super().__init__()
        levels = resolution_pyramid(resolution)
        attention_level(levels, attention_resolution)  # the same check as the generator's
        outs = levels[::-1][1:] + [levels[0]]  # each block's output resolution: one per halving, one more at r0
        widths = [level_width(resolution, r, width, max_width) for r in outs]
        ins = [channels] + widths[:-1]
        self.blocks = nn.ModuleList(DBlock(a, b, down=i < len(outs) - 1, first=i == 0)
                                    for i, (a, b) in enumerate(zip(ins, widths)))
        at = outs.index(attention_resolution) if attention_resolution in outs else None
        self.attention_after = at
        self.attention = SelfAttention(widths[at]) if at is not None else None
        self.out = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(num_classes, widths[-1]) if num_classes else None  # V
        orthogonal_init(self)
        apply_spectral_norm(self)
        if self.embed is not None:
            self.embed = spectral_norm(self.embed)  # BigGAN's SNEmbedding

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "BigGANDiscriminator":
        d, data = recipe.discriminator, recipe.data
        return cls(data.resolution, data.channels, num_classes, d.width, d.max_width,
                   recipe.generator.biggan.attention_resolution)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi(x): (B, C, R, R) -> (B, C0), ReLU then global sum pooling."""
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.attention_after:
                h = self.attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return projection_logits(self.features(x), self.out, self.embed, labels)
