"""Trajectory distillation (Consistency Trajectory Models, Kim et al. 2024, Sec. 4), a term of the one loop: a
student G_theta(x_t, t, s) (distill.diffusion.trajectory) that jumps from any t to any s <= t.

With t = t_n on the teacher solver's grid, u = t_{n-k} (one teacher solver step of k grid intervals, as the
consistency term) and s = t_m, m uniform in [0, n - k]:
  soft consistency   d( G_-(G_theta(x_t, t, s), s, 0),  G_-(G_-(x_u, u, s), s, 0) )           (CTM Eq. 9)
                     x_u = the teacher's solver step from x_t, G_- the target network theta- (EMA, no gradient
                     to its weights; the online side's gradient flows through its input): both sides compared as
                     data, where a pixel distance means most (CTM Sec. 4.2)
  denoising          || out_theta(x_t, t, s = t) - target(x0, eps, t) ||^2, the teacher's own training loss on the
                     student told s = t, which keeps g_theta(x_t, t, t) a denoiser (CTM Eq. 10, DSM)
  adversarial        the loop's adversarial term judges the student's jump to data G(x_s, s, 0) (CTM Eq. 11)
"""

from __future__ import annotations

import torch

from .consistency import consistency_distance


def to_data(target, x, s, cond):
    """G_-(x, s, 0): a point at time s carried to data by the target network (gradient to x, none to its weights)."""
    return target.jump(x, s, torch.zeros_like(s), cond)


def soft_consistency_loss(student, target, x_t, t, x_u, u, s, cond, kind: str = "huber", c: float = 1e-3):
    """(B,): CTM's soft consistency between the student's jump t -> s and the target's jump u -> s from the
    teacher's x_u, both carried to data by the target network."""
    with torch.no_grad():
        want = to_data(target, target.jump(x_u.to(x_t.dtype), u, s, cond), s, cond).float()
    got = to_data(target, student.jump(x_t, t, s, cond), s, cond)
    return consistency_distance(got, want, kind, c)


def denoising_loss(student, x0, eps, x_t, t, cond) -> torch.Tensor:
    """(B,): the parameterisation's regression loss on the student told s = t (CTM's DSM term)."""
    out = student.out(x_t, t, cond, target_timestep=t)
    return (out.float() - student.target(x0, eps, t).float()).pow(2).flatten(1).mean(1)
