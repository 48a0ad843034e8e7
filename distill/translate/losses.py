"""Objectives of pix2pix and CycleGAN on top of `distill.gan.losses.ADV_LOSSES`.

The GAN modes scale the shared per-sample losses to the reference code's conventions so the
lambdas (100 for L1, 10 for cycles) keep the papers' balance:
  * D's objective is halved ("we divide the objective by 2 while optimizing D", pix2pix Sec. 3.3);
    ADV_LOSSES["lsgan"] already carries the 1/2.
  * LSGAN's generator term is E[(D(G(x)) - 1)^2] (CycleGAN Sec. 4), twice ADV_LOSSES' 1/2 form.
  * wgangp adds the gradient penalty with weight 10 (Gulrajani et al. 2017, Eq. 3).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..errors import RecipeError
from ..gan.losses import ADV_LOSSES, AdvLoss, gradient_penalty


class GanMode(NamedTuple):
    adv: AdvLoss
    d_scale: float
    g_scale: float
    gp_weight: float = 0.0


GAN_MODES: dict[str, GanMode] = {
    "vanilla": GanMode(ADV_LOSSES["ns"], 0.5, 1.0),  # BCE with logits, Eq. 1 pix2pix
    "lsgan": GanMode(ADV_LOSSES["lsgan"], 1.0, 2.0),  # least squares, CycleGAN Sec. 4
    "hinge": GanMode(ADV_LOSSES["hinge"], 0.5, 1.0),
    "wgangp": GanMode(ADV_LOSSES["wgan"], 0.5, 1.0, gp_weight=10.0),
}


def get_gan_mode(name: str) -> GanMode:
    if name not in GAN_MODES:
        raise RecipeError(f"translate.gan_mode: unknown GAN mode '{name}' (choose from {', '.join(GAN_MODES)})")
    return GAN_MODES[name]


def d_loss(mode: GanMode, D, real: torch.Tensor, fake: torch.Tensor, generator=None):
    """Discriminator loss on (B, C, H, W) real / fake inputs (fake detached by the caller).
    Returns (scalar loss, d_acc_real, d_acc_fake) with accuracies over all patches."""
    real_logits, fake_logits = D(real), D(fake)  # (B, 1, H', W') each
    loss = mode.d_scale * mode.adv.d_loss(real_logits, fake_logits).mean()
    if mode.gp_weight > 0:
        loss = loss + mode.gp_weight * gradient_penalty(D, real, fake, generator=generator).mean()
    thr = mode.adv.threshold
    acc_r = (real_logits.detach().float() > thr).float().mean()
    acc_f = (fake_logits.detach().float() <= thr).float().mean()
    return loss, acc_r, acc_f


def g_adv_loss(mode: GanMode, D, fake: torch.Tensor) -> torch.Tensor:
    """Generator's adversarial term: make D call `fake` real. -> scalar"""
    return mode.g_scale * mode.adv.g_loss(D(fake)).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (reference: nn.L1Loss), scalar."""
    return (a - b).abs().mean()
