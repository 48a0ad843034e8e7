"""Adversarial losses and discriminator regularisers shared by the GAN lab and the trainers, and the
StyleGAN2-class GAN of `task: gan` (generator.py, discriminator.py, train.py; docs/gan.md)."""

from .losses import ADV_LOSSES, AdvLoss, get_adv_loss, gradient_penalty, lazy_weight, r1_penalty, r2_penalty

__all__ = ["ADV_LOSSES", "AdvLoss", "get_adv_loss", "gradient_penalty", "lazy_weight", "r1_penalty", "r2_penalty"]
