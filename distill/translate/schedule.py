"""Optimisers and LR policies. Papers: Adam(2e-4, betas (0.5, 0.999)); LR constant for the
first half of training, then linearly decayed to zero (pix2pix / CycleGAN, Sec. 4 / 7).
Step and cosine are the reference code's alternatives. Policies step once per iteration."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import RecipeError


def _linear(cfg, total: int) -> Callable[[int], float]:
    decay = max(1, int(round(total * cfg.lr_decay_fraction)))
    start = total - decay
    # reference: lr_l = 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1), per iteration here
    return lambda s: 1.0 - max(0, s - start) / float(decay + 1)


def _step(cfg, total: int) -> Callable[[int], float]:
    return lambda s: 0.1 ** (s // max(1, cfg.lr_step_size))


def _cosine(cfg, total: int) -> Callable[[int], float]:
    return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / max(1, total)))


LR_POLICIES = {
    "linear": _linear,
    "step": _step,
    "cosine": _cosine,
    "constant": lambda cfg, total: (lambda s: 1.0),
}


def make_optimizer(params, lr: float, cfg) -> torch.optim.Adam:
    params = [p for p in params if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


def make_lr_scheduler(opt, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    if cfg.lr_policy not in LR_POLICIES:
        raise RecipeError(f"translate.lr_policy: unknown policy '{cfg.lr_policy}' (choose from {', '.join(LR_POLICIES)})")
    return torch.optim.lr_scheduler.LambdaLR(opt, LR_POLICIES[cfg.lr_policy](cfg, total_steps))
