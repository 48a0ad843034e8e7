"""The random inputs of one micro step of the distillation loop, drawn for the global batch from
rng(seed, tag, step, phase, k, a) and sharded to this process (DistillTrainer.draw). Optional fields are drawn only
when the recipe uses them, after every other draw, so turning a term on never changes the others' numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class StepDraws:
    x0: torch.Tensor  # (B, C, H, W) real samples (images or latents)
    s: torch.Tensor  # (B,) the student timestep of each sample (teacher scheduler units)
    eps: torch.Tensor  # (B, C, H, W) noise of the student's input x_s
    t_d: torch.Tensor  # (B,) noise level of the discriminator's backbone
    noise_d: torch.Tensor  # (B, 2, C, H, W) its noise, column 0 for the real half, 1 for the fake one
    u: torch.Tensor  # (B, 2, K) the augmentations' uniforms, same columns
    t: torch.Tensor  # (B,) timestep at which the teacher (and the fake score) judge the student's sample
    eps2: torch.Tensor  # (B, C, H, W) the noise of that judgement
    cond: Any = None  # labels (B,), None, or the space's text conditioning
    head: Optional[torch.Tensor] = None  # (B,) head set per sample (discriminator.heads_per_timestep)
    t_f: Optional[torch.Tensor] = None  # (B,) the fake score's denoising timestep (DMD2)
    eps_f: Optional[torch.Tensor] = None  # (B, C, H, W) its noise
    i_s: Optional[torch.Tensor] = None  # (B,) index of s among the student timesteps (backward simulation)
    eps_bs: Optional[torch.Tensor] = None  # (B, K - 1, C, H, W) the renoising of each simulated student step
    n_cd: Optional[torch.Tensor] = None  # (B,) grid index n of the consistency term's t_n
    eps_cd: Optional[torch.Tensor] = None  # (B, C, H, W) its noise
    m_cd: Optional[torch.Tensor] = None  # (B,) grid index of a trajectory student's target time s (CTM)
    w_cd: Optional[torch.Tensor] = None  # (B,) float64 guidance scale of a w-conditioned student (LCM)
