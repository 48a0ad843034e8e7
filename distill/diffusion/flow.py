"""Flow-matching timesteps: the shift of SD3/Flux, the training-time density of sigma, and the schedule a
diffusers FlowMatchEulerDiscreteScheduler visits.

With x_t = (1 - sigma) x0 + sigma eps (distill.diffusion.denoiser.FlowPrediction), timesteps are t = sigma T
(T = num_train_timesteps). The shift (SD3, Esser et al. 2024, Sec. 5.3.2) moves every sigma towards noise,

    sigma' = shift sigma / (1 + (shift - 1) sigma),

and is applied alike when training (to the drawn sigma), sampling (to the scheduler's grid) and distilling
(to the student's timesteps). Flux's resolution-dependent shift is the same map with shift = exp(mu), mu linear
in the image's token count (`dynamic_shift`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


def shift_sigma(sigma, shift: float):
    """sigma' = shift sigma / (1 + (shift - 1) sigma) (SD3, Sec. 5.3.2); a tensor, array or float; 0 and 1 stay."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def flow_shift_of(config) -> float:
    """The shift of a flow scheduler or its config: FlowMatch* schedulers call it `shift`, DPM-Solver with flow
    sigmas `flow_shift`; 1.0 when neither is set."""
    cfg = dict(getattr(config, "config", config))
    return float(cfg.get("shift") or cfg.get("flow_shift") or 1.0)


def dynamic_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                  max_shift: float = 1.15) -> float:
    """Flux's shift for an image of `image_seq_len` tokens: exp(mu), mu linear between (base_seq_len, base_shift)
    and (max_seq_len, max_shift). diffusers' exponential time shift e^mu / (e^mu + (1/sigma - 1)) (the scheduler's
    `use_dynamic_shifting` with `mu`) is shift_sigma(sigma, exp(mu))."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    mu = base_shift + slope * (image_seq_len - base_seq_len)
    return math.exp(mu)


def euler_sigmas(num_steps: int, shift: float, num_train_timesteps: int) -> np.ndarray:
    """The `num_steps` sigmas FlowMatchEulerDiscreteScheduler(shift).set_timesteps(num_steps) visits (before the
    appended 0): a linear grid from 1 to the scheduler's smallest training sigma shift_sigma(1/T), shifted again
    (diffusers shifts that end of the grid twice). float64, (num_steps,)."""
    sigma_min = shift_sigma(1.0 / num_train_timesteps, shift)
    return shift_sigma(np.linspace(1.0, sigma_min, num_steps), shift)


# ----------------------------------------------------------------------------------------------
# Training-time sigma densities: name -> (n, generator, teacher config) -> sigma (n,) in (0, 1), before the shift


def _uniform(n: int, g: torch.Generator, cfg) -> torch.Tensor:
    return torch.rand(n, generator=g)


def _logit_normal(n: int, g: torch.Generator, cfg) -> torch.Tensor:
    """sigma = sigmoid(m + s n), n ~ N(0, 1) (SD3, Esser et al. 2024, Sec. 3.1, Eq. 19): weight on middle noise."""
    return torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(n, generator=g))


SIGMA_DENSITIES: dict[str, Callable[[int, torch.Generator, object], torch.Tensor]] = {
    "uniform": _uniform,
    "logit_normal": _logit_normal,
}


def training_timesteps(n: int, g: torch.Generator, cfg, shift: float, num_train_timesteps: int) -> torch.Tensor:
    """(n,) float timesteps t = T shift(sigma), sigma from `cfg.timestep_sampling`'s density (cfg: TeacherConfig;
    `shift`: the noise scheduler's, which is cfg.flow_shift unless the teacher starts from a pretrained one)."""
    sigma = SIGMA_DENSITIES[cfg.timestep_sampling](n, g, cfg)
    return shift_sigma(sigma, shift) * num_train_timesteps
