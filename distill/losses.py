"""Diffusion losses as small functions returning per-sample values (B,).

Randomness (noise, timesteps, label dropout) is drawn by the caller for the global batch, so the
loss is a pure function of its inputs and a multi-process run sees the same numbers as a
single-process one.
"""

from __future__ import annotations

from typing import Optional

import torch


def diffusion_target(noise_scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Regression target for the scheduler's prediction type (epsilon, v or x0)."""
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":  # v = alpha_t * eps - sigma_t * x0  (Salimans & Ho 2022, Sec. 4)
        return noise_scheduler.get_velocity(x0, noise, t)
    if kind == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {kind}")


def diffusion_loss(
    unet,
    noise_scheduler,
    x0: torch.Tensor,  # (B, C, H, W) clean images in [-1, 1]
    noise: torch.Tensor,  # (B, C, H, W) standard normal
    t: torch.Tensor,  # (B,) integer timesteps
    class_labels: Optional[torch.Tensor] = None,  # (B,) with the null label where dropped
) -> torch.Tensor:
    """Denoising score-matching loss, Eq. 14 of Ho et al. 2020 (simple weighting): (B,)."""
    x_t = noise_scheduler.add_noise(x0, noise, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
    pred = unet(x_t, t, class_labels=class_labels).sample
    target = diffusion_target(noise_scheduler, x0, noise, t)
    return (pred.float() - target.float()).pow(2).flatten(1).mean(1)


def pred_x0(noise_scheduler, x_t: torch.Tensor, t: torch.Tensor, model_out: torch.Tensor) -> torch.Tensor:
    """Clean-image estimate from the denoiser output at (x_t, t), for any prediction type."""
    abar = noise_scheduler.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1).to(x_t.dtype)
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return (x_t - sigma * model_out) / alpha
    if kind == "v_prediction":
        return alpha * x_t - sigma * model_out
    return model_out


# ----------------------------------------------------------------------------------------------
# Adversarial Diffusion Distillation (Sauer et al. 2023), distillation term


def alpha_sigma(noise_scheduler, t: torch.Tensor, device, dtype=torch.float32):
    """alpha_t = sqrt(abar_t), sigma_t = sqrt(1 - abar_t), each (B, 1, 1, 1)."""
    abar = noise_scheduler.alphas_cumprod.to(device)[t].view(-1, 1, 1, 1).to(dtype)
    return abar.sqrt(), (1 - abar).sqrt()


def _exponential(alpha, sigma):  # c(t) = alpha_t, ADD Sec. 3.2
    return alpha


def _sds(alpha, sigma):  # SDS gradient w(t)(eps_hat - eps) written in x0-space: c(t) = alpha_t / sigma_t
    return alpha / sigma


DISTILL_WEIGHTINGS = {"exponential": _exponential, "sds": _sds, "nfsd": _exponential}


def distillation_loss(
    student_x0: torch.Tensor,  # (B, C, H, W), with grad
    target_x0: torch.Tensor,  # (B, C, H, W), the teacher's denoised estimate (no grad)
    c_t: torch.Tensor,  # (B, 1, 1, 1) weighting c(t)
) -> torch.Tensor:
    """c(t) * || x_theta - sg(x_psi(x_theta,t)) ||^2, mean over pixels: (B,)  (Eq. 5, ADD)."""
    return (c_t * (student_x0.float() - target_x0.detach().float()).pow(2)).flatten(1).mean(1)


def nfsd_target(student_x0, x_t, alpha, sigma, eps_cond, eps_uncond, guidance, t, t_switch: int = 200):
    """Noise-free score distillation (Katzir et al. 2023) as an x0-space target. Its gradient
    direction is delta = delta_D + s * delta_C, delta_C = eps_c - eps_u; delta_D = eps_u for
    t < 200 and 0 otherwise (no negative prompt: eps_u - eps_neg = 0). In x0-space the target is
    x_theta - (sigma / alpha) * delta."""
    delta = guidance * (eps_cond - eps_uncond)
    small = (t < t_switch).view(-1, 1, 1, 1).to(delta.dtype)
    delta = delta + small * eps_uncond
    return student_x0.detach() - (sigma / alpha) * delta
