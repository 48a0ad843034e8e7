"""Optimisers and LR policies (`train.learning_rate`, `adam_beta1/2`, `lr_scheduler`). Papers:
Adam(2e-4, betas (0.5, 0.999)); LR constant for the first half of training, then linearly decayed
(pix2pix / CycleGAN, Sec. 4 / 7), with the reference code's end point 1 / (decay + 1). Step and
cosine are the reference code's alternatives. Policies step once per iteration."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..engine.optim import constant_then_linear
from ..errors import RecipeError


def _linear(tc, total: int) -> Callable[[int], float]:
    decay = max(1, int(round(total * tc.lr_decay_fraction)))
    # reference: lr_l = 1 - max(0, epoch - n_epochs) / (n_epochs_decay + 1), per iteration here
    return constant_then_linear(total, total - decay, end="reference")


def _step(tc, total: int) -> Callable[[int], float]:
    return lambda s: 0.1 ** (s // max(1, tc.lr_step_size))


def _cosine(tc, total: int) -> Callable[[int], float]:
    return lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / max(1, total)))


LR_POLICIES = {
    "linear": _linear,
    "step": _step,
    "cosine": _cosine,
    "constant": lambda tc, total: (lambda s: 1.0),
}


def make_optimizer(params, lr: float, tc) -> torch.optim.Adam:
    params = [p for p in params if p.requires_grad]
    return torch.optim.Adam(params, lr=lr, betas=(tc.adam_beta1, tc.adam_beta2))


def make_lr_scheduler(opt, tc) -> torch.optim.lr_scheduler.LambdaLR:
    """`tc`: the recipe's `train:` section (lr_scheduler, lr_decay_fraction, lr_step_size, max_steps)."""
    if tc.lr_scheduler not in LR_POLICIES:
        raise RecipeError(f"train.lr_scheduler: unknown policy '{tc.lr_scheduler}' (choose from {', '.join(LR_POLICIES)})")
    return torch.optim.lr_scheduler.LambdaLR(opt, LR_POLICIES[tc.lr_scheduler](tc, tc.max_steps))
