"""A class-conditional StyleGAN2-class generator for small images (Karras et al. 2020), exported
and loaded like a diffusers model (`save_pretrained` / `StyleGAN2Generator.from_pretrained(folder)`:
config.json + diffusion_pytorch_model.safetensors, no remote code).

    z (B, z_dim), y (B,) --mapping--> w (B, w_dim) --broadcast/mix--> ws (B, num_ws, w_dim)
    ws --synthesis--> image (B, C, R, R), values ~[-1, 1] (not clamped)

Mapping: normalised z and a normalised class embedding, concatenated, through an MLP with a 0.01
learning-rate multiplier (StyleGAN2-ADA's conditional mapping). Synthesis: a learned constant at
the base resolution r0, then per level a modulated 3x3 conv (upsampling 2x from the second level
on) and a second one, each with per-pixel noise of learned strength; a toRGB branch per level whose
outputs are upsampled and summed (the skip generator). Conv layer j reads ws[:, j]; the toRGB of
level l reads the style of the next level's first conv, so num_ws = number of convs + 1.

Truncation (Karras et al. 2019, Eq. 3 of Sec. 6 in the StyleGAN paper): w' = w_avg + psi (w - w_avg),
with w_avg tracked per class during training (an EMA of the mapping's outputs, beta `w_avg_beta`),
so psi = 0 draws each class's mean image rather than one image for every class.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from ..errors import DistillError
from .architectures import Draws, check_labels
from .layers import (EqualizedLinear, SynthesisLayer, ToRGB, level_width, normalize_2nd_moment,
                     resolution_pyramid, upsample2x)

Noise = Union[str, Sequence[torch.Tensor], None]  # "const" | "random" | "none" | one (B, 1, r, r) per conv


class MappingNetwork(nn.Module):
    """[normalise(z), normalise(embed(y))] -> MLP (leaky ReLU, lr_mul) -> w. (B, z_dim), (B,) -> (B, w_dim)."""

    def __init__(self, z_dim: int, w_dim: int, num_classes: int, layers: int, lr_mul: float):
        super().__init__()
        self.embed = nn.Embedding(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        self.fcs = nn.ModuleList(EqualizedLinear(a, b, lr_mul=lr_mul, activation=True)
                                 for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        x = normalize_2nd_moment(z)
        if self.embed is not None:
            x = torch.cat([x, normalize_2nd_moment(self.embed(y))], dim=1)
        for fc in self.fcs:
            x = fc(x)
        return x


def mix_styles(ws: torch.Tensor, ws2: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
    """Style mixing (Karras et al. 2019, Sec. 3.1): layers l < cutoff keep ws, layers l >= cutoff
    take ws2. ws, ws2 (B, L, w_dim); cutoff (B,) in [0, L] (L: no mixing) -> (B, L, w_dim)."""
    layer = torch.arange(ws.shape[1], device=ws.device)
    take2 = layer[None, :] >= cutoff.to(ws.device)[:, None]  # (B, L)
    return torch.where(take2[..., None], ws2, ws)


class StyleMapping:
    """The mapping half of a style-based generator (StyleGAN2, StyleGAN3): class labels, the per-class w_avg
    and its truncation, style mixing. The host has `mapping_network` (MappingNetwork), a `w_avg` buffer
    (max(num_classes, 1), w_dim), `num_ws`, `style_mixing_prob` and config keys num_classes, z_dim, w_avg_beta."""

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def labels(self, class_labels, batch: int) -> Optional[torch.Tensor]:
        """Class labels as a (B,) long tensor on the model's device (None when unconditional)."""
        return check_labels(class_labels, self.config.num_classes, batch, self.w_avg.device)

    @torch.no_grad()
    def track_w_avg(self, w: torch.Tensor, y: Optional[torch.Tensor]) -> None:
        """w_avg[c] <- lerp(mean of the batch's w of class c, w_avg[c], beta) for each class present."""
        idx = y if y is not None else torch.zeros(w.shape[0], dtype=torch.long, device=w.device)
        k = self.w_avg.shape[0]
        sums = torch.zeros_like(self.w_avg).index_add_(0, idx, w.detach().to(self.w_avg.dtype))  # (K, w_dim)
        counts = torch.bincount(idx, minlength=k)  # (K,)
        seen = counts > 0
        mean = sums[seen] / counts[seen, None].to(sums.dtype)
        self.w_avg[seen] = mean.lerp(self.w_avg[seen], self.config.w_avg_beta)

    def mapping(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0,
                update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> ws (B, num_ws, w_dim), truncated towards the class's w_avg by psi = truncation."""
        y = self.labels(class_labels, z.shape[0])
        w = self.mapping_network(z.to(self.w_avg.dtype), y)  # (B, w_dim)
        if update_w_avg:
            self.track_w_avg(w, y)
        if truncation != 1.0:
            center = self.w_avg[y if y is not None else torch.zeros_like(w[:, 0], dtype=torch.long)].to(w.dtype)
            w = center.lerp(w, truncation)  # w_avg + psi (w - w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def mixed_mapping(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, update_w_avg: bool = False,
                      mix_z: Optional[torch.Tensor] = None, mix_cutoff: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`mapping`, then with `mix_z` and `mix_cutoff` (B,) the layers from the cutoff on take the styles of
        mix_z (same class); w_avg is updated from z's styles only. -> ws (B, num_ws, w_dim)"""
        ws = self.mapping(z, class_labels, truncation, update_w_avg)
        if mix_z is not None:
            ws = mix_styles(ws, self.mapping(mix_z, class_labels, truncation), mix_cutoff)
        return ws

    def mixing_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """A second latent and a crossover layer for style mixing (probability `style_mixing_prob`, set by the
        trainer; num_ws = no mixing). -> CPU tensors"""
        L = self.num_ws
        mix_z = torch.randn(batch, self.config.z_dim, generator=generator)
        mix = torch.rand(batch, generator=generator) < self.style_mixing_prob
        cutoff = torch.where(mix, torch.randint(1, L, (batch,), generator=generator), torch.full((batch,), L))
        return {"mix_z": mix_z, "mix_cutoff": cutoff}


class StyleGAN2Generator(StyleMapping, ModelMixin, ConfigMixin):
    """See the module docstring. `num_classes` 0: unconditional."""

    @register_to_config
    def __init__(self, resolution: int = 32, channels: int = 3, num_classes: int = 10, z_dim: int = 128,
                 w_dim: int = 128, mapping_layers: int = 2, mapping_lr_mul: float = 0.01, width: int = 64,
                 max_width: int = 256, w_avg_beta: float = 0.995):
        super().__init__()
        levels = resolution_pyramid(resolution)
        widths = [level_width(resolution, r, width, max_width) for r in levels]
        self.levels = levels
        self.mapping_network = MappingNetwork(z_dim, w_dim, num_classes, mapping_layers, mapping_lr_mul)
        self.const = nn.Parameter(torch.randn(widths[0], levels[0], levels[0]))  # the learned constant input
        self.layers = nn.ModuleList()
        self.torgbs = nn.ModuleList()
        for i, (r, c) in enumerate(zip(levels, widths)):
            if i > 0:
                self.layers.append(SynthesisLayer(widths[i - 1], c, w_dim, r, up=True, noise_seed=len(self.layers)))
            self.layers.append(SynthesisLayer(c, c, w_dim, r, up=False, noise_seed=len(self.layers)))
            self.torgbs.append(ToRGB(c, channels, w_dim))
        self.num_ws = len(self.layers) + 1
        self.register_buffer("w_avg", torch.zeros(max(num_classes, 1), w_dim))  # per-class mean w
        self.style_mixing_prob = 0.0  # a training setting (generator.style_mixing_prob), not exported

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "StyleGAN2Generator":
        g, data = recipe.generator, recipe.data
        G = cls(resolution=data.resolution, channels=data.channels, num_classes=num_classes, z_dim=g.z_dim,
                w_dim=g.w_dim, mapping_layers=g.mapping_layers, mapping_lr_mul=g.mapping_lr_mul, width=g.width,
                max_width=g.max_width, w_avg_beta=g.w_avg_beta)
        G.style_mixing_prob = g.style_mixing_prob
        return G

    # ------------------------------------------------------------------------------------------
    # synthesis

    def noise_resolutions(self) -> list[int]:
        """The resolution of each conv layer's noise input, in layer order."""
        return [layer.resolution for layer in self.layers]

    def _noise(self, j: int, noise: Noise, batch: int, like: torch.Tensor) -> Optional[torch.Tensor]:
        layer = self.layers[j]
        if noise is None or (isinstance(noise, str) and noise == "none"):
            return None
        if isinstance(noise, str):
            if noise == "const":
                return layer.noise_const.expand(batch, -1, -1, -1)
            if noise == "random":
                r = layer.resolution
                return torch.randn(batch, 1, r, r, device=like.device, dtype=like.dtype)
            raise DistillError(f"noise must be 'const', 'random', 'none' or a list of tensors, got '{noise}'")
        return noise[j].to(like.device)

    def synthesis(self, ws: torch.Tensor, noise: Noise = "const") -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, C, R, R)."""
        if ws.shape[1] != self.num_ws:
            raise DistillError(f"synthesis expects {self.num_ws} styles per sample, got {ws.shape[1]}")
        B = ws.shape[0]
        x = self.const[None].expand(B, -1, -1, -1)  # (B, C0, r0, r0)
        img = None
        for i, torgb in enumerate(self.torgbs):
            for j in ([0] if i == 0 else [2 * i - 1, 2 * i]):
                x = self.layers[j](x, ws[:, j], self._noise(j, noise, B, x))
            y = torgb(x, ws[:, 2 * i + 1])  # (B, C, r, r)
            img = y if img is None else upsample2x(img) + y
        return img

    def forward(self, z: torch.Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False, noise: Noise = "const", mix_z: Optional[torch.Tensor] = None,
                mix_cutoff: Optional[torch.Tensor] = None) -> torch.Tensor:
        """z (B, z_dim) -> images (B, C, R, R). With `mix_z` and `mix_cutoff` (B,), layers from the
        cutoff on take the styles of mix_z (same class); w_avg is updated from z's styles only
        (`update_stats`). A training step's `draws` (training_draws) give noise, mix_z and mix_cutoff."""
        if draws is not None:
            noise, mix_z, mix_cutoff = draws["noise"], draws["mix_z"], draws["mix_cutoff"]
        return self.synthesis(self.mixed_mapping(z, class_labels, truncation, update_stats, mix_z, mix_cutoff), noise)

    # ------------------------------------------------------------------------------------------
    # training (distill.gan.architectures.GANGenerator)

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """A second latent and a crossover layer for style mixing (probability `style_mixing_prob`,
        set by the trainer; L = no mixing) and per-layer noise maps. -> CPU tensors"""
        mixing = self.mixing_draws(batch, generator)
        noise = [torch.randn(batch, 1, r, r, generator=generator) for r in self.noise_resolutions()]
        return {**mixing, "noise": noise}

