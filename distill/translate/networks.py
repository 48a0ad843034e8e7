"""Generators and discriminators of pix2pix / CycleGAN with the reference code's module nesting
(junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py), so a reference state dict
(`model.model.1.model.1.weight`, `model.10.conv_block.1.weight`, `model.0.weight`, `net.0.weight`)
loads into the same architecture here and vice versa.

Shapes: generators (B, input_nc, H, W) in [-1, 1] -> (B, output_nc, H, W) in [-1, 1] (tanh);
PatchGAN (B, C, H, W) -> (B, 1, H', W') logits, one per overlapping 70x70 patch for 3 layers;
pixel discriminator (B, C, H, W) -> (B, 1, H, W).
"""

from __future__ import annotations

import functools
import re
from typing import Callable

import torch
import torch.nn as nn
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from ..errors import RecipeError


# ---------------------------------------------------------------------------------------------
# Normalisation and initialisation


class Identity(nn.Module):
    def forward(self, x):
        return x


NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "none": lambda c: Identity(),
}


def conv_bias(norm: str) -> bool:
    """The reference gives convs a bias only with instance norm (batch norm has its own shift;
    with norm 'none' the reference also has none, which we keep for key compatibility)."""
    return norm == "instance"


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Papers' init: conv / linear weights ~ N(0, gain), biases 0; batch-norm weight ~ N(1, gain)."""

    def fn(m):
        name = m.__class__.__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    return net.apply(fn)


# ---------------------------------------------------------------------------------------------
# U-Net generator (pix2pix, Sec. 3.2.1): skip connections between mirrored layers i and n - i


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: x -> [down, submodule, up] -> cat(x, up) (outermost: no cat).
    Halves H, W going down, restores them going up."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm="batch", use_dropout=False):
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = NORMS[norm](inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = NORMS[norm](outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model += [nn.Dropout(0.5)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)  # (B, outer_nc * 2, H, W): the skip connection


class UnetGenerator(ModelMixin, ConfigMixin):
    """U-Net with `num_downs` halvings: 7 for 128 px (1x1 bottleneck), 8 for 256 px. A diffusers model:
    `UnetGenerator.from_pretrained(run_folder)` loads a finished pix2pix run's export."""

    @register_to_config
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=False):
        super().__init__()
        if num_downs < 5:
            raise RecipeError(f"translate.netG: a U-Net needs at least 5 downsamplings, got {num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):  # extra 8*ngf levels (with dropout in pix2pix)
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True,
                                             norm=norm)
        self.divisor = 2 ** num_downs  # H and W must be multiples of this

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------------------------------------
# ResNet generator (CycleGAN, Appendix 7.2; Johnson et al. 2016): c7s1-64, d128, d256, R256 x n,
# u128, u64, c7s1-3


class ResnetBlock(nn.Module):
    def __init__(self, dim, padding_type="reflect", norm="instance", use_dropout=False, bias=True):
        super().__init__()
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}
        block = []
        for i in range(2):
            p = 0
            if padding_type in pads:
                block.append(pads[padding_type](1))
            else:
                p = 1
            block += [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=bias), NORMS[norm](dim)]
            if i == 0:
                block.append(nn.ReLU(True))
                if use_dropout:
                    block.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)  # residual, (B, dim, H, W)


class ResnetGenerator(ModelMixin, ConfigMixin):
    """A diffusers model: `ResnetGenerator.from_pretrained(run_folder)` loads a finished run's export (CycleGAN: G_A,
    A -> B; `from_pretrained(run_folder / "G_B")` the reverse)."""

    @register_to_config
    def __init__(self, input_nc, output_nc, ngf=64, norm="instance", use_dropout=False, n_blocks=9,
                 padding_type="reflect"):
        super().__init__()
        bias = conv_bias(norm)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=bias),
                 NORMS[norm](ngf), nn.ReLU(True)]
        for i in range(2):  # two stride-2 downsamplings: (B, 4 ngf, H/4, W/4)
            m = 2 ** i
            model += [nn.Conv2d(ngf * m, ngf * m * 2, kernel_size=3, stride=2, padding=1, bias=bias),
                      NORMS[norm](ngf * m * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            model += [ResnetBlock(ngf * 4, padding_type, norm, use_dropout, bias)]
        for i in range(2):  # two fractionally strided convolutions back to (B, ngf, H, W)
            m = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=bias),
                      NORMS[norm](ngf * m // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)
        self.divisor = 4

    def forward(self, x):
        return self.model(x)


# ---------------------------------------------------------------------------------------------
# Discriminators


class NLayerDiscriminator(nn.Module):
    """PatchGAN (pix2pix, Sec. 3.2.2): C64-C128-C256-C512 (4x4 convs, the last two stride 1),
    then a 1-channel conv. n_layers=3 gives 70x70 receptive fields."""

    def __init__(self, input_nc, ndf=64, n_layers=3, norm="batch"):
        super().__init__()
        bias = conv_bias(norm)
        kw, padw = 4, 1
        seq = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=2, padding=padw, bias=bias),
                    NORMS[norm](ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=kw, stride=1, padding=padw, bias=bias),
                NORMS[norm](ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN ("PixelGAN", pix2pix Sec. 4.4): every pixel judged on its own."""

    def __init__(self, input_nc, ndf=64, norm="batch"):
        super().__init__()
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, kernel_size=1, stride=1, padding=0), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, kernel_size=1, stride=1, padding=0, bias=bias), NORMS[norm](ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, kernel_size=1, stride=1, padding=0, bias=bias))

    def forward(self, x):
        return self.net(x)


def receptive_field(net: nn.Module) -> int:
    """Receptive field (pixels) of one output of a feed-forward conv stack, from its layers:
    r_0 = 1; r_{l} = r_{l-1} + (k_l - 1) * j_{l-1}, j_l = j_{l-1} * s_l (j: input pixels per step)."""
    r, j = 1, 1
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            r += (m.kernel_size[0] - 1) * j
            j *= m.stride[0]
    return r


# ---------------------------------------------------------------------------------------------
# Registries: name -> builder(input_nc, output_nc, cfg)


def _unet(num_downs):
    return lambda i, o, c: UnetGenerator(i, o, num_downs, c.ngf, c.norm, c.dropout)


def _resnet(n_blocks):
    return lambda i, o, c: ResnetGenerator(i, o, c.ngf, c.norm, c.dropout, n_blocks)


GENERATORS: dict[str, Callable] = {
    "unet_32": _unet(5), "unet_64": _unet(6), "unet_128": _unet(7), "unet_256": _unet(8),
    "resnet_6blocks": _resnet(6), "resnet_9blocks": _resnet(9),
}
DISCRIMINATORS: dict[str, Callable] = {
    "basic": lambda i, c: NLayerDiscriminator(i, c.ndf, 3, c.norm),
    "n_layers": lambda i, c: NLayerDiscriminator(i, c.ndf, c.n_layers_D, c.norm),
    "pixel": lambda i, c: PixelDiscriminator(i, c.ndf, c.norm),
}


def build_generator(cfg, input_nc: int, output_nc: int) -> nn.Module:
    name = cfg.netG
    m = re.fullmatch(r"unet_(\d+)down", name)  # any depth: unet_<n>down
    if m:
        builder = _unet(int(m.group(1)))
    elif name in GENERATORS:
        builder = GENERATORS[name]
    else:
        raise RecipeError(f"translate.netG: unknown generator '{name}' (choose from {', '.join(GENERATORS)}, unet_<n>down)")
    return init_weights(builder(input_nc, output_nc, cfg), cfg.init_gain)


def build_discriminator(cfg, input_nc: int) -> nn.Module:
    if cfg.netD not in DISCRIMINATORS:
        raise RecipeError(f"translate.netD: unknown discriminator '{cfg.netD}' (choose from {', '.join(DISCRIMINATORS)})")
    return init_weights(DISCRIMINATORS[cfg.netD](input_nc, cfg), cfg.init_gain)
