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


# ----------------------------------------------------------------------------------------------
# Distribution matching (DMD, Yin et al. 2024; DMD2, Yin et al. 2024)


def dmd_loss(
    student_x0: torch.Tensor,  # (B, C, H, W) x = G(z), with grad
    real_x0: torch.Tensor,  # (B, C, H, W) teacher's denoised estimate of x_t = alpha_t sg(x) + sigma_t eps
    fake_x0: torch.Tensor,  # (B, C, H, W) fake score network's estimate of the same x_t
) -> torch.Tensor:
    """Distribution-matching loss, (B,). The KL gradient s_fake - s_real (DMD Eq. 7) in x0-space is
    grad = (fake_x0 - real_x0) / mean|x - real_x0| (per-sample normalisation, DMD Eq. 8); the loss
    0.5 || x - sg(x - grad) ||^2 (mean over pixels) has exactly that gradient w.r.t. x. Unlike the
    ADD distillation loss, which pulls x to the teacher's estimate (mode-seeking, as SDS), the fake
    term pushes the student away from where its own samples already are."""
    x = student_x0.float()
    w = 1.0 / (x.detach() - real_x0.float()).abs().flatten(1).mean(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    grad = torch.nan_to_num((fake_x0.float() - real_x0.float()) * w).detach()
    return 0.5 * (x - (x.detach() - grad)).pow(2).flatten(1).mean(1)
