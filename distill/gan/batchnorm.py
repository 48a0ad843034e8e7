"""Batch normalisation in a GAN generator whose statistics are chosen per call, not by train()/eval().

A generator with batch norm (DCGAN, BigGAN) normalises a training forward with the batch's own
statistics, and draws samples with the running statistics, so that an image is a function of its z and
label alone (the `GANGenerator` protocol: deterministic without `draws`). The trainer keeps its generator
in train mode and also samples from it (class grids, the monitor), so the choice follows the call:

    training forward  (module in train mode and `draws` given)   batch statistics; the running
                      statistics are updated only when `update_stats` (the generator step, once per step)
    any other call    (sampling, evaluation, export in eval mode) the running statistics

The trainer's EMA averages parameters only: the running statistics an exported generator uses are the
raw generator's (those of the training weights, not of the EMA weights).
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
            return F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
