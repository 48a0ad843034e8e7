"""Trajectory students (Consistency Trajectory Models, Kim et al. 2024): a network told its target time s.

  TrajectoryUNet2DModel   a UNet2DModel whose time embedding also receives the jump t - s:
                          emb = time_embedding(t) + ((t - s) / 1000) W_2 silu(W_1 proj(t - s)), W_2 zero-initialised,
                          so the student starts as the teacher for every s, and at s = t it is the plain denoiser
                          whatever its weights (CTM's g_theta(x_t, t, t), trained by the denoising term)
  Denoiser.jump           G(x_t, t, s) = alpha_s x0_theta(x_t, t, s) + sigma_s eps(x_t, x0_theta): the DDIM jump with
                          the s-conditioned x0 (CTM Eq. 5 written for any schedule), G(x_t, t, t) = x_t
  TrajectoryScheduler     CTM's gamma-sampling (Alg. 2): jump from t_n to s with lambda_s = sqrt(1 - gamma^2)
                          lambda_{n+1} (lambda = sigma / alpha, EDM's sigma), then fresh noise up to t_{n+1};
                          gamma = 0: deterministic jumps, gamma = 1: jump to data and renoise (LCM's sampler)

The network is a diffusers ModelMixin and the scheduler a SchedulerMixin: a student exports as a DistillPipeline
(unet + scheduler) that `DiffusionPipeline.from_pretrained` loads once `distill` is imported; `sample()` hands the
loop to a scheduler that drives the network itself (`JumpSampler`).
"""

from __future__ import annotations

from typing import Optional

import torch
from diffusers import ConfigMixin, ModelMixin, SchedulerMixin, UNet2DModel  # noqa: F401
from diffusers.configuration_utils import register_to_config

from .time_embedding import ExtraEmbeddingUNet, unwrapped

# model_index.json names this module as the classes' library; diffusers' loader finds their base classes
# (ModelMixin, SchedulerMixin) among its names, hence the import above
JUMP_SCALE = 1000.0  # the gate (t - s) / 1000: diffusers' timestep units (T = 1000 for DDPM and flow schedules)


class TrajectoryUNet2DModel(ExtraEmbeddingUNet):
    """UNet2DModel(..., same config) + `jump_embedding`; forward(sample, t, class_labels, target_timestep) with
    target_timestep s (B,) or a number (default 0: the jump to data, so it samples as an x0 model)."""

    extra_name = "jump_embedding"

    def forward(self, sample, timestep, class_labels=None, target_timestep=None, return_dict: bool = True):
        t = torch.as_tensor(timestep, device=sample.device).float().reshape(-1).expand(sample.shape[0])
        s = torch.as_tensor(0.0 if target_timestep is None else target_timestep, device=sample.device).float()
        gap = t - s.reshape(-1).expand(sample.shape[0])  # (B,)
        jump = self.extra_mlp(self.time_proj(gap).to(self.dtype)) * (gap / JUMP_SCALE).view(-1, 1).to(self.dtype)
        return self.forward_with(jump, sample, timestep, class_labels, return_dict)  # jump (B, D)


def takes_target_time(net) -> bool:
    """Whether `net` (possibly wrapped by DDP or torch.compile) takes a target time as an input."""
    return isinstance(unwrapped(net), TrajectoryUNet2DModel)


class TrajectoryScheduler(SchedulerMixin, ConfigMixin):
    """CTM's gamma-sampling over a trajectory student (a `JumpSampler`: `sample()` hands it the loop).
    `schedule`: the teacher's noise-scheduler config (its family and parameterisation); `timesteps`: the
    student's decreasing timesteps, of which a k-step call visits k (evenly spaced, the first one always)."""

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, schedule: Optional[dict] = None, timesteps: Optional[list] = None, gamma: float = 0.0):
        self.timesteps = torch.tensor(timesteps or [999], dtype=torch.float32)

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        ts = self.config.timesteps
        if not 1 <= num_inference_steps <= len(ts):
            raise ValueError(f"num_inference_steps={num_inference_steps}: this student samples 1 to {len(ts)} steps")
        idx = torch.linspace(0, len(ts), num_inference_steps + 1)[:-1].floor().long()
        self.timesteps = torch.tensor(ts, dtype=torch.float32)[idx].to(device)

    def denoiser(self, net, cond=None):
        from .denoiser import Denoiser
        from .sampling import noise_scheduler_from

        return Denoiser.from_scheduler(net, noise_scheduler_from(self.config.schedule), cond)

    def jump_target(self, den, t_next: torch.Tensor) -> torch.Tensor:
        """s with lambda_s = sqrt(1 - gamma^2) lambda(t_next) (0-d), the nearest integer timestep."""
        g = float(self.config.gamma)
        if g >= 1 or float(t_next) <= 0:
            return torch.zeros((), device=t_next.device, dtype=t_next.dtype)
        grid = torch.arange(0, int(den.t_max) + 1, device=t_next.device).to(t_next.dtype)
        a, s = den.alpha_sigma(grid, t_next.device, torch.float64)
        a_n, s_n = den.alpha_sigma(t_next.reshape(1), t_next.device, torch.float64)
        lam, want = (s / a.clamp_min(1e-12)).flatten(), (1 - g * g) ** 0.5 * float(s_n / a_n.clamp_min(1e-12))
        return grid[torch.searchsorted(lam.contiguous(), torch.tensor([want], dtype=lam.dtype, device=lam.device))
                    .clamp(max=len(grid) - 1)].reshape(())

    @torch.no_grad()
    def jump_sample(self, net, noise, cond, num_steps: int, guidance_scale: float = 1.0, generator=None):
        """(B, C, H, W): noise at t_0 -> jumps along the k visited timesteps -> data. Guidance is not distilled
        into the jump (a guided student is distilled with the teacher's guidance): guidance_scale != 1 guides
        each jump's x0 as any network's output."""
        from .denoiser import LabelCond

        den = self.denoiser(net, LabelCond.of(net))
        self.set_timesteps(num_steps, noise.device)
        kind = torch.float32 if den.param.name == "flow" else torch.long  # the schedule's timestep type
        ts = list(self.timesteps.to(kind)) + [torch.zeros((), device=noise.device, dtype=kind)]
        x = noise
        for t, t_next in zip(ts[:-1], ts[1:]):
            s = self.jump_target(den, t_next)
            x = den.jump(x, t.expand(len(x)), s.expand(len(x)), cond, guidance_scale)
            if float(t_next) > 0 and float(s) < float(t_next):  # renoise from s up to t_next (gamma > 0)
                x = renoise(den, x, s, t_next, torch.randn(x.shape, generator=generator, device="cpu").to(x.device, x.dtype))
        return x


def renoise(den, x_s, s, t, z):
    """x_t from x_s, t > s, along the forward process: (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t sigma_s /
    alpha_s)^2) z (VP; for flow the same with alpha = 1 - sigma)."""
    a_s, s_s = den.alpha_sigma(s.reshape(1), x_s.device, torch.float32)
    a_t, s_t = den.alpha_sigma(t.reshape(1), x_s.device, torch.float32)
    r = a_t / a_s
    return (r * x_s.float() + (s_t ** 2 - (r * s_s) ** 2).clamp_min(0).sqrt() * z.float()).to(x_s.dtype)
