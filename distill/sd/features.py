"""Discriminator backbones for latent students.

  SDTeacherFeatures  LADD (Sauer et al. 2024): the frozen teacher UNet2DConditionModel itself, on the
                     latent noised to a sampled level t_D, text-conditioned; features are the outputs
                     of the down blocks and the mid block, taken with forward hooks, and the forward
                     pass stops after the mid block (the decoder half never runs). The UNet is SHARED
                     with the teacher (not copied); with LoRA the adapters are disabled inside.
  TokenFeatures      LADD for MMDiT teachers (SD3, Flux): the frozen teacher transformer on the noised
                     latent, text-conditioned through the Denoiser's own conditioning (Flux's packing
                     included); the image-token hidden states (B, L, D) of chosen blocks are reshaped
                     to the patch grid (B, D, h, w), and the pass stops after the last chosen block.
  DecodedFeatures    ADD: a pixel-space backbone (timm) on images decoded from the latents by the
                     VAE decoder (or a tiny autoencoder), gradients flowing through the decoder.

All map (latents (B, C, h, w), TextCond, t, noise) to a list of (B, C_k, H_k, W_k) feature maps
and expose `channels`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import RecipeError
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


def transformer_blocks(net) -> list[nn.Module]:
    """The blocks whose outputs are token features, in order: SD3's joint blocks; Flux's double-stream
    then single-stream blocks."""
    return list(net.transformer_blocks) + list(getattr(net, "single_transformer_blocks", []))


class TokenFeatures(nn.Module):
    def __init__(self, teacher, blocks: list[int], patch: int):
        """`teacher`: the teacher's Denoiser (its net is shared, not copied); `blocks`: indices into
        `transformer_blocks(net)` (empty: every block, as LADD); `patch`: latent pixels per token side
        (SD3: its patch size; Flux: 2, the packing)."""
        super().__init__()
        self._teacher = [teacher]  # a list: not registered as a submodule (not trained, not saved, not copied)
        n = len(transformer_blocks(teacher.net))
        self.blocks = sorted(set(blocks)) if blocks else list(range(n))
        if self.blocks[0] < 0 or self.blocks[-1] >= n:
            raise RecipeError(f"discriminator.backbone_layers: {blocks} out of range; the teacher transformer has "
                              f"{n} blocks (0..{n - 1})")
        self.patch = patch
        self.channels = [teacher.net.config.num_attention_heads * teacher.net.config.attention_head_dim] * len(self.blocks)

    @property
    def teacher(self):
        return self._teacher[0]

    def forward(self, z0: torch.Tensor, cond: TextCond, t: torch.Tensor, noise: torch.Tensor):
        den, net = self.teacher, self.teacher.net
        B, _, H, W = z0.shape
        h, w = H // self.patch, W // self.patch
        z_t = den.add_noise(z0, noise.to(z0.dtype), t)
        feats = {}

        def grab(i, last):
            def hook(_m, _inp, out):
                tokens = out[-1] if isinstance(out, tuple) else out[:, -h * w:]  # image tokens (B, h w, D)
                feats[i] = tokens.transpose(1, 2).reshape(B, -1, h, w)  # (B, D, h, w), row-major as the patches
                if last:
                    raise _Stop
            return hook

        chosen = transformer_blocks(net)
        hooks = [chosen[i].register_forward_hook(grab(i, i == self.blocks[-1])) for i in self.blocks]
        try:
            with as_teacher(net):
                den.cond.call(net, z_t, t, cond)
        except _Stop:
            pass
        finally:
            for hk in hooks:
                hk.remove()
        return [feats[i] for i in self.blocks]


class DecodedFeatures(nn.Module):
    def __init__(self, pixel_backbone: nn.Module, decode):
        super().__init__()
        self.pixel = pixel_backbone
        self._decode = [decode]
        self.channels = pixel_backbone.channels

    def forward(self, z0, cond=None, t=None, noise=None):
        return self.pixel(self._decode[0](z0).clamp(-1, 1))
