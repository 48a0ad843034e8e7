"""A class-conditional StyleGAN3-T generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks",
configuration T: translation equivariance), exported and loaded like the StyleGAN2 kind (`save_pretrained` /
`StyleGAN3Generator.from_pretrained(folder)`).

    z, y --mapping (StyleGAN2's, per-class w_avg)--> ws (B, num_layers + 2, w_dim)
    ws[:, 0]  -> Fourier-feature input: sin(2 pi (f . (x - t) + phi)) for C0 frequencies f drawn uniformly in
                 the disc |f| <= first_cutoff, fixed phases phi, a translation t = A(w) (an affine map initialised
                 to 0; T has no rotation), mixed by a learned C0 x C0 matrix
    ws[:, i]  -> layer i: modulated conv (3x3, 'full' padding; the input normalised by a running mean of its
                 magnitude), then the filtered leaky ReLU (distill.gan.alias_free) at 2x the layer's sampling rate
    ws[:, -1] -> toRGB: modulated 1x1 conv without demodulation; times output_scale (0.25)

The per-layer schedule (Sec. 3.2 and App. F): cutoffs f_c grow geometrically from `first_cutoff` to the output's
Nyquist frequency R / 2, reached `num_critical` (2) layers before the end; stopbands f_t from `first_stopband` to
R / 2 * `last_stopband_rel`; sampling rates s = the smallest R / 2^k >= min(2 f_t, R) (R = 28: 7, 14, 28); the
transition half-width max(f_t, s / 2) - f_c; each canvas s + 2 `margin_size` pixels, the last two R (the margin
is cropped). Channels: `width` at f_c = R / 2, doubling as the cutoff halves, at most `max_width`.

No noise inputs, no skip connections, no style mixing by default (the paper's T configuration). The input
magnitudes' running means are buffers, updated in the training forward (`update_stats`), checkpointed and
exported with the weights (the trainer's EMA covers parameters only: the exported EMA generator uses the raw
generator's magnitudes).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import DistillError
from .alias_free import filtered_lrelu, fir_matrix, lowpass_filter
from .architectures import Draws
from .generator import MappingNetwork, StyleMapping
from .layers import EqualizedLinear, ModulatedConv2d

NUM_CRITICAL = 2  # critically sampled layers at the end (cutoff = Nyquist), the paper's choice
FILTER_SIZE = 6  # low-pass taps per sample of the lower rate when up/downsampling
CONV_CLAMP = 256.0


def layer_schedule(resolution: int, num_layers: int, first_cutoff: float, first_stopband: float,
                   last_stopband_rel: float, margin_size: int) -> list[dict]:
    """Cutoff, stopband, sampling rate, transition half-width and canvas size of the Fourier input (entry 0's
    rates) and layers 0..num_layers (the last is toRGB). -> num_layers + 1 dicts"""
    n = num_layers
    last_cutoff = resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    rows = []
    for i in range(n + 1):
        e = min(i / max(n - NUM_CRITICAL, 1), 1.0)
        cutoff = first_cutoff * (last_cutoff / first_cutoff) ** e
        stopband = first_stopband * (last_stopband / first_stopband) ** e
        k = math.floor(math.log2(resolution / min(2 * stopband, resolution)) + 1e-9)
        rate = resolution / 2 ** k
        if rate != int(rate) or cutoff >= max(stopband, rate / 2):
            raise DistillError(f"stylegan3: layer {i} gets sampling rate {rate:g}, cutoff {cutoff:g}, stopband "
                               f"{stopband:g} at resolution {resolution}: raise generator.stylegan3.first_stopband "
                               "or lower first_cutoff")
        size = resolution if i >= n - 1 else int(rate) + 2 * margin_size
        rows.append({"cutoff": cutoff, "stopband": stopband, "sampling_rate": int(rate),
                     "half_width": max(stopband, rate / 2) - cutoff, "size": size})
    return rows


class FourierInput(nn.Module):
    """The Fourier-feature input (Sec. 3.1 of the paper): w (B, w_dim), translate (B, 2) in units -> (B, C, S, S)."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: int, bandwidth: float):
        super().__init__()
        radius = bandwidth * torch.rand(channels).sqrt()  # uniform in the disc |f| <= bandwidth
        angle = 2 * math.pi * torch.rand(channels)
        self.register_buffer("freqs", torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1))  # (C, 2): fx, fy
        self.register_buffer("phases", torch.rand(channels) - 0.5)  # (C,) cycles
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = EqualizedLinear(w_dim, 2)  # w -> translation (tx, ty), initially none
        with torch.no_grad():
            self.affine.weight.zero_()
        coords = (torch.arange(size, dtype=torch.float32) + 0.5 - size / 2) / sampling_rate  # sample centres
        self.register_buffer("coords", coords, persistent=False)

    def forward(self, w: torch.Tensor, translate: Optional[torch.Tensor] = None) -> torch.Tensor:
        t = self.affine(w)  # (B, 2)
        if translate is not None:
            t = t + translate.to(t)
        phases = self.phases[None] - t @ self.freqs.t()  # (B, C): the content moves by +t
        c = self.coords
        arg = (self.freqs[None, :, 0, None, None] * c[None, None, None, :]
               + self.freqs[None, :, 1, None, None] * c[None, None, :, None] + phases[:, :, None, None])
        x = torch.sin(2 * math.pi * arg)  # (B, C, S, S)
        return torch.einsum("oc,bchw->bohw", self.weight / math.sqrt(self.weight.shape[0]), x)


class AliasFreeLayer(nn.Module):
    """Modulated conv + filtered leaky ReLU between two canvases (or the toRGB layer). (B, in, S, S) -> (B, out, S', S')."""

    def __init__(self, w_dim: int, in_channels: int, out_channels: int, inp: dict, out: dict, is_torgb: bool,
                 magnitude_ema_beta: float):
        super().__init__()
        k = 1 if is_torgb else 3
        self.conv = ModulatedConv2d(in_channels, out_channels, k, w_dim, demodulate=not is_torgb)
        self.conv.padding = k - 1  # 'full': the canvas grows by k - 1, the filters' padding below trims it
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.is_torgb, self.beta = is_torgb, magnitude_ema_beta
        tmp = max(inp["sampling_rate"], out["sampling_rate"]) * (1 if is_torgb else 2)
        self.up, self.down = tmp // inp["sampling_rate"], tmp // out["sampling_rate"]
        up_taps = FILTER_SIZE * self.up if self.up > 1 else 1
        down_taps = FILTER_SIZE * self.down if self.down > 1 else 1
        fu = lowpass_filter(up_taps, inp["cutoff"], 2 * inp["half_width"], tmp)
        fd = lowpass_filter(down_taps, out["cutoff"], 2 * out["half_width"], tmp)
        self.register_buffer("up_filter", fu, persistent=False)  # (taps,) or None, at the rate `sampling_rate`
        self.register_buffer("down_filter", fd, persistent=False)
        self.sampling_rate = tmp
        # pad so that `down`-th samples of the filtered signal land on the output canvas (App. C.3's symmetric layout)
        n = inp["size"] + k - 1
        total = (out["size"] - 1) * self.down + 1 - n * self.up + up_taps + down_taps - 2
        lo = (total + self.up) // 2
        um = fir_matrix(n, fu, self.up, 1, (lo, total - lo), self.up)
        dm = fir_matrix(um.shape[0], fd, 1, self.down)
        assert dm.shape[0] == out["size"], (dm.shape, out["size"])
        self.register_buffer("up_matrix", um, persistent=False)
        self.register_buffer("down_matrix", dm, persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_stats: bool = False) -> torch.Tensor:
        if update_stats:
            with torch.no_grad():
                self.magnitude_ema.copy_(x.detach().float().square().mean().lerp(self.magnitude_ema, self.beta))
        x = self.conv(x * self.magnitude_ema.rsqrt(), w)
        if self.is_torgb:
            return (x + self.bias[None, :, None, None]).clamp(-CONV_CLAMP, CONV_CLAMP)
        return filtered_lrelu(x, self.bias, self.up_matrix, self.down_matrix, clamp=CONV_CLAMP)


class StyleGAN3Generator(StyleMapping, ModelMixin, ConfigMixin):
    """See the module docstring. `num_classes` 0: unconditional."""

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 128,
                 w_dim: int = 128, mapping_layers: int = 2, mapping_lr_mul: float = 0.01, width: int = 16,
                 max_width: int = 128, w_avg_beta: float = 0.998, num_layers: int = 8, margin_size: int = 10,
                 first_cutoff: float = 2.0, first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                 magnitude_ema_beta: float = 0.999, output_scale: float = 0.25):
        super().__init__()
        rows = layer_schedule(resolution, num_layers, first_cutoff, first_stopband, last_stopband_rel, margin_size)
        widths = [min(int(round(width * (resolution / 2) / r["cutoff"])), max_width) for r in rows[:-1]] + [channels]
        self.schedule = rows
        self.mapping_network = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers, mapping_lr_mul)
        first = rows[0]
        self.input = FourierInput(w_dim, widths[0], first["size"], first["sampling_rate"], first["cutoff"])
        self.layers = nn.ModuleList(
            AliasFreeLayer(w_dim, widths[max(i - 1, 0)], widths[i], rows[max(i - 1, 0)], rows[i],
                           is_torgb=i == num_layers, magnitude_ema_beta=magnitude_ema_beta)
            for i in range(num_layers + 1))
        self.num_ws = num_layers + 2
        self.register_buffer("w_avg", torch.zeros(max(num_classes, 1), w_dim))  # per-class mean w
        self.style_mixing_prob = 0.0  # a training setting (generator.style_mixing_prob), not exported

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "StyleGAN3Generator":
        g, s3, data = recipe.generator, recipe.generator.stylegan3, recipe.data
        G = cls(resolution=data.resolution, channels=data.channels, num_classes=num_classes, z_dim=g.z_dim,
                w_dim=g.w_dim, mapping_layers=g.mapping_layers, mapping_lr_mul=g.mapping_lr_mul, width=g.width,
                max_width=g.max_width, w_avg_beta=g.w_avg_beta, num_layers=s3.num_layers,
                margin_size=s3.margin_size, first_cutoff=s3.first_cutoff, first_stopband=s3.first_stopband,
                last_stopband_rel=s3.last_stopband_rel,
                # the paper's magnitude EMA: half-life of 20k images
                magnitude_ema_beta=0.5 ** (recipe.train.batch_size / 20000))
        G.style_mixing_prob = g.style_mixing_prob
        return G

    def synthesis(self, ws: torch.Tensor, noise: Union[str, Sequence, None] = "const",
                  translate: Optional[torch.Tensor] = None, update_stats: bool = False) -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, C, R, R). `noise` is accepted for the StyleBased protocol and
        ignored (no noise inputs). `translate` (2,) or (B, 2): move the image content by (tx, ty) output pixels
        (x right, y down), through the Fourier features' phases (the EQ-T metric's input transform)."""
        if ws.shape[1] != self.num_ws:
            raise DistillError(f"synthesis expects {self.num_ws} styles per sample, got {ws.shape[1]}")
        t = None if translate is None else torch.as_tensor(translate, dtype=ws.dtype, device=ws.device).expand(
            ws.shape[0], 2) / self.config.resolution
        x = self.input(ws[:, 0], t)
        for i, layer in enumerate(self.layers):
            x = layer(x, ws[:, i + 1], update_stats)
        return x * self.config.output_scale

    def forward(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False, mix_z: Optional[torch.Tensor] = None,
                mix_cutoff: Optional[torch.Tensor] = None) -> torch.Tensor:
        """z (B, z_dim) -> images (B, C, R, R); `update_stats`: w_avg and the input magnitudes' running means."""
        if draws is not None:
            mix_z, mix_cutoff = draws["mix_z"], draws["mix_cutoff"]
        ws = self.mixed_mapping(z, class_labels, truncation, update_stats, mix_z, mix_cutoff)
        return self.synthesis(ws, update_stats=update_stats)

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """Style mixing's second latent and crossover (probability `style_mixing_prob`; 0 in the T recipes). -> CPU"""
        return self.mixing_draws(batch, generator)
