"""Adversarial losses and discriminator regularisers shared by the GAN lab and the trainers."""

from .losses import ADV_LOSSES, AdvLoss, get_adv_loss, gradient_penalty, r1_penalty

__all__ = ["ADV_LOSSES", "AdvLoss", "get_adv_loss", "gradient_penalty", "r1_penalty"]
