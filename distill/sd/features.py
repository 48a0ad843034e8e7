"""Discriminator backbones for latent students.

  SDTeacherFeatures  LADD (Sauer et al. 2024): the frozen teacher UNet2DConditionModel itself, on the
                     latent noised to a sampled level t_D, text-conditioned; features are the outputs
                     of the down blocks and the mid block, taken with forward hooks, and the forward
                     pass stops after the mid block (the decoder half never runs). The UNet is SHARED
                     with the teacher (not copied); with LoRA the adapters are disabled inside.
  DecodedFeatures    ADD: a pixel-space backbone (timm) on images decoded from the latents by the
                     VAE decoder (or a tiny autoencoder), gradients flowing through the decoder.

Both map (latents (B, 4, h, w), TextCond, t, noise) to a list of (B, C_k, H_k, W_k) feature maps
and expose `channels`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .lora import as_teacher
from .teacher import TextCond


class _Stop(Exception):
    pass


class SDTeacherFeatures(nn.Module):
    def __init__(self, unet, noising):
        super().__init__()
        self._unet = [unet]  # a list: not registered as a submodule (not trained, not saved, not copied)
        self.noising = noising  # the teacher's Denoiser (anything with add_noise(x0, eps, t))
        boc = list(unet.config.block_out_channels)
        self.channels = boc + [boc[-1]]

    @property
    def unet(self):
        return self._unet[0]

    def forward(self, z0: torch.Tensor, cond: TextCond, t: torch.Tensor, noise: torch.Tensor):
        u = self.unet
        z_t = self.noising.add_noise(z0, noise.to(z0.dtype), t)
        feats = []

        def grab(_m, _inp, out):
            feats.append(out[0] if isinstance(out, tuple) else out)

        def stop(_m, _inp, out):
            feats.append(out)
            raise _Stop

        hooks = [b.register_forward_hook(grab) for b in u.down_blocks] + [u.mid_block.register_forward_hook(stop)]
        try:
            with as_teacher(u):
                u(z_t, t, **cond.unet_kwargs())
        except _Stop:
            pass
        finally:
            for h in hooks:
                h.remove()
        return feats


class DecodedFeatures(nn.Module):
    def __init__(self, pixel_backbone: nn.Module, decode):
        super().__init__()
        self.pixel = pixel_backbone
        self._decode = [decode]
        self.channels = pixel_backbone.channels

    def forward(self, z0, cond=None, t=None, noise=None):
        return self.pixel(self._decode[0](z0).clamp(-1, 1))
