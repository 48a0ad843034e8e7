"""Layers of the StyleGAN2-class generator and discriminator (Karras et al. 2020, "Analyzing and
Improving the Image Quality of StyleGAN"): equalized learning rate, the 2nd-moment normalisation
of latents, and the modulated + demodulated convolution.

Equalized learning rate (Karras et al. 2018, Sec. 4.1): weights are stored as N(0, 1) / lr_mul and
scaled at run time by lr_mul / sqrt(fan_in), so Adam's per-parameter step size is the same for
every layer whatever its fan-in; `lr_mul` < 1 slows a layer down (the mapping network, 0.01).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky ReLU (He et al. 2015)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (0.2) times sqrt(2), StyleGAN's `bias_act` without the bias."""
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2)) over the feature dim: z and the class embedding enter the mapping
    network on the unit sphere times sqrt(dim). (B, F) -> (B, F)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W), bilinear (StyleGAN2 uses a transposed conv with a [1, 3, 3, 1]
    FIR filter; bilinear is the same low-pass idea at these sizes)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class EqualizedLinear(nn.Module):
    """y = (lr_mul / sqrt(in)) W x + lr_mul b, optionally followed by `lrelu`. (B, in) -> (B, out)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(y) if self.activation else y


class EqualizedConv2d(nn.Module):
    """k x k convolution ('same' padding) with weight gain 1 / sqrt(in * k * k), optional bias and
    `lrelu`. (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(y) if self.activation else y


def demodulation(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """sigma_j = sqrt(sum_{i,k} (s_i w_ijk)^2 + eps) per sample and output channel; returns
    1 / sigma_j (Karras et al. 2020, Eq. 3). weight (O, I, k, k), styles (B, I) -> (B, O)."""
    w2 = weight.square().sum(dim=(2, 3))  # (O, I)
    return (styles.square() @ w2.t() + eps).rsqrt()


class ModulatedConv2d(nn.Module):
    """The modulated convolution of StyleGAN2 (Karras et al. 2020, Sec. 2.2):

        w'_ijk  = s_i * w_ijk                                      (Eq. 1, modulation)
        w''_ijk = w'_ijk / sqrt(sum_{i,k} w'_ijk^2 + eps)          (Eq. 3, demodulation)

    with the per-sample styles s = A(w) from a learned affine map of w (bias initialised to 1). The
    per-sample weights are never built: scaling the input by s, convolving with the shared w and
    scaling the output by 1 / sigma_j (Eq. 3) is the same linear map ("fused_modconv = False" in
    the reference code). Without demodulation (the toRGB layers) the styles carry the equalized
    weight gain instead. `up`: the input is upsampled 2x before the convolution.
    (B, in, H, W), w (B, w_dim) -> (B, out, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)  # w -> s (B, in)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2
        self.demodulate, self.up = demodulate, up

    def modulated(self, x: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """The convolution for given styles (B, in), without the affine map."""
        s = styles if self.demodulate else styles * self.weight_gain
        x = x * s[:, :, None, None]  # Eq. 1, applied to the input
        if self.up:
            x = upsample2x(x)
        x = F.conv2d(x, self.weight, padding=self.padding)
        if self.demodulate:
            x = x * demodulation(self.weight, s)[:, :, None, None]  # Eq. 3, applied to the output
        return x

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.modulated(x, self.affine(w))


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv -> + per-pixel noise x learned strength (initialised 0) -> + bias ->
    lrelu (Karras et al. 2020, Fig. 2c). Holds a fixed noise image for deterministic sampling
    (`noise="const"`)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool,
                 noise_seed: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, demodulate=True, up=up)
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.resolution = resolution
        g = torch.Generator().manual_seed(noise_seed)
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution, generator=g))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
        """noise: (B, 1, R, R), or None for none."""
        x = self.conv(x, w)
        if noise is not None:
            x = x + noise.to(x.dtype) * self.noise_strength
        return lrelu(x + self.bias[None, :, None, None])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation, plus bias (the skip generator's
    output branch, Karras et al. 2020, Fig. 7). (B, in, R, R), w (B, w_dim) -> (B, C, R, R)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias[None, :, None, None]


def resolution_pyramid(resolution: int) -> list[int]:
    """The resolutions of the networks' levels, lowest first: [r0, 2 r0, ..., resolution] with a
    base r0 in 4..7 (16 -> [4, 8, 16], 28 -> [7, 14, 28], 32 -> [4, 8, 16, 32]). A resolution that is
    not r0 x 2^k with k >= 1 raises ValueError."""
    levels = [resolution]
    while levels[0] > 7 and levels[0] % 2 == 0:
        levels.insert(0, levels[0] // 2)
    if not 4 <= levels[0] <= 7 or len(levels) < 2:
        raise ValueError(f"resolution {resolution} is not r0 x 2^k with r0 in 4..7 and k >= 1 "
                         "(e.g. 8, 16, 24, 28, 32, 48, 56, 64)")
    return levels


def level_width(resolution: int, level_resolution: int, width: int, max_width: int) -> int:
    """Channels at a level: `width` at the output resolution, doubling at each halving, at most
    `max_width` (StyleGAN's channel_base / resolution, capped by channel_max)."""
    return min(width * (resolution // level_resolution), max_width)
