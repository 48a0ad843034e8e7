"""Pixel-space diffusion transformer teacher: diffusers `DiTTransformer2DModel` (Peebles & Xie 2023),
class-conditional through adaLN-Zero, patch size `teacher.dit_patch_size`, out_channels = in_channels (no
learned variance: the Denoiser's parameterisation fixes what the output is).

The null label of classifier-free guidance is the extra embedding DiT's LabelEmbedding keeps for dropped
labels, index num_classes (distill.diffusion.denoiser.DiTLabelCond). DiT drops labels itself in training mode,
with the global RNG and independently in every block; `without_label_dropout` switches that off, so labels are
dropped only by the trainer's seeded draws (`teacher.cond_drop_prob`) and a resumed run repeats an
uninterrupted one exactly. It is applied when a DiT is built and when one is loaded (distill.diffusion.teachers).
"""

from __future__ import annotations

from typing import Optional

import torch
from diffusers import DiTTransformer2DModel

from ..errors import DistillError
from .recipe import TeacherConfig


def without_label_dropout(net: torch.nn.Module) -> torch.nn.Module:
    """Set every LabelEmbedding's dropout_prob to 0 (its null embedding stays): no label dropout in train mode."""
    from diffusers.models.embeddings import LabelEmbedding

    for m in net.modules():
        if isinstance(m, LabelEmbedding):
            m.dropout_prob = 0.0
    return net


def build_dit(cfg: TeacherConfig, resolution: int, channels: int, num_classes: Optional[int]) -> DiTTransformer2DModel:
    if not (cfg.class_conditional and num_classes):
        raise DistillError("teacher.kind=dit needs class labels (DiT's adaLN-Zero takes a class): use labelled data "
                           "and teacher.class_conditional=true, or teacher.kind=unet2d")
    net = DiTTransformer2DModel(
        num_attention_heads=cfg.dit_heads,
        attention_head_dim=cfg.dit_width // cfg.dit_heads,
        in_channels=channels,
        out_channels=channels,
        num_layers=cfg.dit_depth,
        sample_size=resolution,
        patch_size=cfg.dit_patch_size,
        num_embeds_ada_norm=num_classes,  # + the null embedding at index num_classes
    )
    return without_label_dropout(net)
