"""Optimisation pieces every trainer shares: the EMA, LR schedules and the gradient norm."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..errors import RecipeError


def make_ema(parameters, train_cfg, **kw):
    """diffusers' EMAModel with the recipe's decay and warm-up (`train.ema_decay`, `train.ema_power`)."""
    from diffusers.training_utils import EMAModel

    p = train_cfg.ema_power
    if p is not None and not 0 < p <= 1:
        raise RecipeError(f"train.ema_power: must be in (0, 1], got {p}")
    warm = {} if p is None else {"use_ema_warmup": True, "inv_gamma": 1.0, "power": p}
    return EMAModel(parameters, decay=train_cfg.ema_decay, **warm, **kw)


def constant_then_linear(total: int, decay_start: int, warmup: int = 0, end: str = "zero") -> Callable[[int], float]:
    """The LR factor after s optimizer steps: linear warm-up over `warmup` steps, 1 until `decay_start`,
    then a linear decay. `end="zero"` reaches 0 at `total` ((total - s) / (total - decay_start), floored at
    0; the engine's "wsd"); `end="reference"` is the pix2pix / CycleGAN reference code's
    1 - (s - decay_start) / (total - decay_start + 1), which ends at 1 / (decay + 1) (translate's "linear").
    The two end points keep their own arithmetic so both reproduce their former values bit for bit."""
    if end not in ("zero", "reference"):
        raise ValueError(f"end must be 'zero' or 'reference', got {end!r}")
    T, W, D = total, warmup, decay_start

    def factor(s: int) -> float:
        if s < W:
            return min(1.0, s / W)
        if s < D:
            return 1.0
        if end == "zero":
            return max(0.0, (T - s) / (T - D))
        return 1.0 - max(0, s - D) / float(T - D + 1)

    return factor


def make_lr_scheduler(optimizer, train_cfg):
    """`train.lr_scheduler`: "wsd" here, any other name from diffusers' get_scheduler."""
    from diffusers.optimization import get_scheduler

    tc = train_cfg
    if tc.lr_scheduler != "wsd":
        return get_scheduler(tc.lr_scheduler, optimizer, num_warmup_steps=tc.lr_warmup_steps,
                             num_training_steps=tc.max_steps)
    if not 0 < tc.lr_decay_fraction <= 1:
        raise RecipeError(f"train.lr_decay_fraction: must be in (0, 1], got {tc.lr_decay_fraction}")
    T, W = tc.max_steps, tc.lr_warmup_steps
    D = min(max(W, round(T * (1 - tc.lr_decay_fraction))), T - 1)  # first step of the decay
    return torch.optim.lr_scheduler.LambdaLR(optimizer, constant_then_linear(T, D, W, end="zero"))


def grad_norm(params: Iterable) -> torch.Tensor:
    """Global L2 norm of the gradients of `params` (parameters, or modules whose parameters count),
    for the logs: torch's fused total norm over the float32 gradients. -> 0-d tensor"""
    ps = []
    for p in params:
        ps.extend(p.parameters() if isinstance(p, torch.nn.Module) else [p])
    return torch.nn.utils.get_total_norm([p.grad.detach().float() for p in ps if p.grad is not None])
