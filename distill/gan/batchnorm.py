"""Batch normalisation in a GAN generator whose statistics are chosen per call, not by train()/eval().

A generator with batch norm (DCGAN, BigGAN) normalises a training forward with the batch's own
statistics, and draws samples with the running statistics, so that an image is a function of its z and
label alone (the `GANGenerator` protocol: deterministic without `draws`). The trainer keeps its generator
in train mode and also samples from it (class grids, the monitor), so the choice follows the call:

    training forward  (module in train mode and `draws` given)   batch statistics; the running
                      statistics are updated only when `update_stats` (the generator step, once per step)
    any other call    (sampling, evaluation, export in eval mode) the running statistics

The trainer's EMA averages parameters only, so the raw generator's running statistics belong to the
training weights, not to the EMA weights that are sampled and exported. `standing_statistics` re-estimates
them for the weights at hand (BigGAN's "standing statistics", Brock et al. 2019 Sec. 4 and App. C): reset,
then the cumulative average over several batch-statistics forwards of random z and class-balanced labels.
The trainer applies it to a copy of the EMA generator for the monitor and for the export (`gan.standing_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class NormMode:
    batch_stats: bool = False  # normalise with the batch's mean and variance (a training forward)
    update: bool = False  # fold the batch's statistics into the running ones (momentum)


def norm_mode(module: nn.Module, draws, update_stats: bool) -> NormMode:
    """The statistics of one generator forward (see the module docstring)."""
    batch = module.training and draws is not None
    return NormMode(batch, batch and update_stats)


class ModeBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d told by each call which statistics to use. (B, C, H, W) -> (B, C, H, W)."""

    def forward(self, x: torch.Tensor, mode: NormMode = NormMode()) -> torch.Tensor:
        if mode.batch_stats:
            if mode.update:
                self.num_batches_tracked.add_(1)
                mean, var = self.running_mean, self.running_var
            else:
                mean = var = None  # batch statistics without touching the running ones
            # momentum None: the cumulative average over the batches since the reset (standing statistics)
            factor = self.momentum if self.momentum is not None else 1.0 / max(int(self.num_batches_tracked), 1)
            return F.batch_norm(x, mean, var, self.weight, self.bias, True, factor, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


@torch.no_grad()
def standing_statistics(G: nn.Module, batches: int, batch: int, seed: int = 0) -> nn.Module:
    """G (a DCGAN / BigGAN generator, changed in place and returned) with running statistics re-estimated for
    its current weights: each ModeBatchNorm2d reset, then averaged over `batches` training forwards of `batch`
    random z (N(0, I), psi 1) and class-balanced labels. A generator without such layers is returned as it is."""
    norms = [m for m in G.modules() if isinstance(m, ModeBatchNorm2d)]
    if not norms or batches <= 0:
        return G
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training, k = G.training, G.config.num_classes
    G.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    try:
        for i in range(batches):
            z = torch.randn(batch, G.config.z_dim, generator=gen).to(device)  # (B, z_dim)
            y = (torch.arange(i * batch, (i + 1) * batch) % k).to(device) if k else None  # (B,)
            G(z, y, draws=G.training_draws(batch, gen), update_stats=True)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        G.train(was_training)
    return G
