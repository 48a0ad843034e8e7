"""Pixel-space teacher: diffusers `UNet2DModel`, class-conditional through `num_class_embeds`.

Class-conditional teachers reserve one extra embedding, index `num_classes`, for the null label
of classifier-free guidance (Ho & Salimans 2022): labels are dropped to it with probability
`cond_drop_prob` in training.
"""

from __future__ import annotations

from typing import Optional

from diffusers import UNet2DModel

from .recipe import TeacherConfig
from ..errors import DistillError


def build_unet2d(cfg: TeacherConfig, resolution: int, channels: int, num_classes: Optional[int]) -> UNet2DModel:
    n = len(cfg.block_out_channels)
    attn_last = ["AttnDownBlock2D"] if cfg.attention else ["DownBlock2D"]
    attn_first = ["AttnUpBlock2D"] if cfg.attention else ["UpBlock2D"]
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise DistillError(f"teacher.block_out_channels {cfg.block_out_channels} must be multiples of teacher.norm_num_groups={cfg.norm_num_groups}")
    conditional = cfg.class_conditional and num_classes is not None
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=tuple(["DownBlock2D"] * (n - 1) + attn_last),
        up_block_types=tuple(attn_first + ["UpBlock2D"] * (n - 1)),
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=8,
        num_class_embeds=(num_classes + 1) if conditional else None,  # + the null label
    )
