"""Consistency distillation: the student as a consistency function of the teacher's probability-flow ODE
(Song et al. 2023, Alg. 2; LCM, Luo et al. 2023, Alg. 1), a term of the one loop.

  grid      t_0 = 0 < t_1 < ... < t_N, the teacher solver's timesteps (Denoiser.solver_grid; LCM: N = 50 of
            T = 1000, so 19, 39, ..., 999, LCMScheduler's grid)
  f_theta   f(x, t) = c_skip(t) x + c_out(t) x0_theta(x, t), f(x, 0) = x        (Denoiser.consistency; Eq. 9, LCM)
  solver    x_{t_{n-k}} = alpha_{t_{n-k}} x0_psi + sigma_{t_{n-k}} eps_psi, (x0_psi, eps_psi) the teacher's guided
            estimates at (x_{t_n}, t_n): one DDIM step (Song et al. 2021, Eq. 12), which for a flow teacher is the
            Euler step x_t + (sigma_{n-k} - sigma_n) v (both write x_t in (x0, eps))
  L_CD      d(f_theta(x_{t_n}, t_n), sg(f_theta-(x_{t_{n-k}}, t_{n-k})))         (Eq. 10, LCM; skip k, LCM's k = 20 of T)
            theta- = mu theta- + (1 - mu) theta after each student update (the target network; mu = 0: theta itself,
            as LCM-LoRA), d = pseudo-Huber sqrt((a - b)^2 + c^2) - c per pixel (LCM's training script) or L2.

The randomness (grid index n, noise) is drawn by the loop for the global batch; every function here is pure.
"""

from __future__ import annotations

import copy

import torch


@torch.no_grad()
def ddim_step(teacher, x_t, t, t_prev, cond, guidance: float):
    """The teacher's solver step from t to t_prev (B,) with classifier-free guidance: (B, C, H, W)."""
    out = teacher.out(x_t, t, cond, guidance).float()
    x0, eps = teacher.x0_from(x_t.float(), t, out), teacher.eps_from(x_t.float(), t, out)
    alpha, sigma = teacher.alpha_sigma(t_prev, x_t.device)
    return alpha * x0 + sigma * eps


def consistency_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "huber", c: float = 1e-3) -> torch.Tensor:
    """(B,): the pseudo-Huber distance mean(sqrt((a - b)^2 + c^2) - c) over pixels (LCM) or the mean squared one."""
    d2 = (a.float() - b.float()).pow(2)
    return ((d2 + c * c).sqrt() - c if kind == "huber" else d2).flatten(1).mean(1)


class TargetNetwork:
    """theta-, the network the consistency target is computed with: an EMA copy of the student's network
    (decay mu > 0, saved with the checkpoints) or the student itself under no_grad (mu = 0: no copy, LCM-LoRA)."""

    def __init__(self, student_net: torch.nn.Module, decay: float):
        self.decay = decay
        self.net = copy.deepcopy(student_net).requires_grad_(False).eval() if decay > 0 else None

    def denoiser(self, student):
        """The target as a Denoiser around theta- (the online student's parameterisation and conditioning)."""
        return student if self.net is None else student.with_net(self.net)

    @torch.no_grad()
    def update(self, online: torch.nn.Module) -> None:
        """theta- <- mu theta- + (1 - mu) theta, for the parameters the online network trains."""
        if self.net is None:
            return
        for p_t, p in zip(self.net.parameters(), online.parameters()):
            if p.requires_grad:
                p_t.lerp_(p.detach().to(p_t.dtype), 1.0 - self.decay)


def consistency_loss(student, target, x_t, t, x_prev, t_prev, cond, kind: str = "huber", c: float = 1e-3,
                     guidance=1.0):
    """L_CD (B,) of the module docstring: the student's f_theta(x_t, t) (with grad) against the target network's
    f_theta-(x_prev, t_prev), x_prev the teacher solver's step from x_t (ddim_step); both Denoisers. `guidance`:
    the scale w (B,) a w-conditioned student and its target are told (distill.diffusion.guided)."""
    with torch.no_grad():
        f_target = target.consistency(x_prev.to(x_t.dtype), t_prev, cond, guidance).float()
    return consistency_distance(student.consistency(x_t, t, cond, guidance), f_target, kind, c)
