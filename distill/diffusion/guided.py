"""A student told the guidance scale: LCM's w-conditioning (Luo et al. 2023, Sec. 4.2 and Alg. 1), so one consistency
student serves a range of classifier-free guidance scales in one network evaluation per step.

  GuidanceUNet2DModel   a UNet2DModel whose time embedding also receives w:
                        emb = time_embedding(t) + W_2 silu(W_1 proj(1000 w)), W_2 zero-initialised, so the student
                        starts as the teacher for every w (LCM embeds w with the same Fourier features, scale 1000)
  Denoiser.out          passes the guidance scale to such a network instead of combining a conditional and an
                        unconditional call (distill.diffusion.denoiser)

Training draws w ~ U[w_min, w_max] per sample (`consistency.guidance_range`), guides the teacher's solver step with
it and gives it to the student and its target network. The network is a diffusers ModelMixin: a student exports as
a DistillPipeline that `DiffusionPipeline.from_pretrained` loads once `distill` is imported; `guidance_scale=` of
the pipeline call reaches the network.
"""

from __future__ import annotations

import torch
from diffusers import ModelMixin, UNet2DModel  # noqa: F401

# model_index.json names this module as the network's library; diffusers' loader finds its base class (ModelMixin)
# among the module's names, hence the import above

from .time_embedding import ExtraEmbeddingUNet, unwrapped

W_SCALE = 1000.0  # LCM's guidance-scale embedding: sinusoidal features of 1000 w


class GuidanceUNet2DModel(ExtraEmbeddingUNet):
    """UNet2DModel(..., same config) + `guidance_embedding`; forward(sample, t, class_labels, guidance_scale) with
    guidance_scale w (B,) or a number (default 1: unguided)."""

    extra_name = "guidance_embedding"

    def forward(self, sample, timestep, class_labels=None, guidance_scale=None, return_dict: bool = True):
        w = torch.as_tensor(1.0 if guidance_scale is None else guidance_scale, device=sample.device).float()
        w = w.reshape(-1).expand(sample.shape[0])  # (B,)
        extra = self.extra_mlp(self.time_proj(w * W_SCALE).to(self.dtype))  # (B, D)
        return self.forward_with(extra, sample, timestep, class_labels, return_dict)


def takes_guidance(net) -> bool:
    """Whether `net` (possibly wrapped by DDP or torch.compile) takes the guidance scale as an input."""
    return isinstance(unwrapped(net), GuidanceUNet2DModel)
