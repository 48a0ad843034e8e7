"""The student's objective terms, each a small function returning per-sample values (B,).

  regression (ADD, Sauer et al. 2023, Eq. 4-5): pull the student's x0 towards the teacher's
      guided denoising of it, re-noised to a timestep t:  c(t) || x - sg(teacher_x0(x_t, t)) ||^2
  distribution matching (DMD, Yin et al. 2024, Eq. 7-8): push it along the difference of the fake
      and the real score at the same x_t
  adversarial: the discriminator's generator loss (distill.gan.losses), in the loop

Randomness (noise, timesteps) is drawn by the caller for the global batch, so every term is a pure
function of its inputs and a multi-process run sees the numbers a single-process run sees.
"""

from __future__ import annotations

import torch


def _exponential(alpha, sigma):  # c(t) = alpha_t, ADD Sec. 3.2
    return alpha


def _sds(alpha, sigma):  # SDS gradient w(t)(eps_hat - eps) written in x0-space: c(t) = alpha_t / sigma_t
    return alpha / sigma


# distill.distill_weighting -> c(t) from (alpha_t, sigma_t), each (B, 1, 1, 1)
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


@torch.no_grad()
def teacher_target(teacher, fake, cond, t, eps, guidance: float, weighting: str):
    """The teacher's view of the student's samples: (target x0 (B, C, H, W), c(t) (B, 1, 1, 1),
    x_t (B, C, H, W)), x_t = alpha_t sg(fake) + sigma_t eps being where the teacher looked (the DMD
    term queries the fake score there). `teacher` is a Denoiser."""
    x_t = teacher.add_noise(fake, eps, t)
    alpha, sigma = teacher.alpha_sigma(t, fake.device, fake.dtype)
    c_t = DISTILL_WEIGHTINGS[weighting](alpha, sigma)
    if weighting == "nfsd" and cond is not None:
        out_c, out_u = teacher.out_cond_uncond(x_t, t, cond)
        e_c, e_u = teacher.eps_from(x_t, t, out_c.float()), teacher.eps_from(x_t, t, out_u.float())
        return nfsd_target(fake, x_t, alpha, sigma, e_c, e_u, guidance, t), c_t, x_t
    return teacher.x0_from(x_t, t, teacher.out(x_t, t, cond, guidance).float()), c_t, x_t


def dmd_loss(
    student_x0: torch.Tensor,  # (B, C, H, W) x = G(z), with grad
    real_x0: torch.Tensor,  # (B, C, H, W) teacher's denoised estimate of x_t = alpha_t sg(x) + sigma_t eps
    fake_x0: torch.Tensor,  # (B, C, H, W) fake score network's estimate of the same x_t
) -> torch.Tensor:
    """Distribution-matching loss, (B,). The KL gradient s_fake - s_real (DMD Eq. 7) in x0-space is
    grad = (fake_x0 - real_x0) / mean|x - real_x0| (per-sample normalisation, DMD Eq. 8); the loss
    0.5 || x - sg(x - grad) ||^2 (mean over pixels) has exactly that gradient w.r.t. x. Unlike the
    ADD regression term, which pulls x to the teacher's estimate (mode-seeking, as SDS), the fake
    term pushes the student away from where its own samples already are."""
    x = student_x0.float()
    w = 1.0 / (x.detach() - real_x0.float()).abs().flatten(1).mean(1).clamp_min(1e-8).view(-1, 1, 1, 1)
    grad = torch.nan_to_num((fake_x0.float() - real_x0.float()) * w).detach()
    return 0.5 * (x - (x.detach() - grad)).pow(2).flatten(1).mean(1)
