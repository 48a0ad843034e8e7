"""Samplers as pure functions with one signature.

`sample(unet, scheduler, noise, class_labels, num_steps, guidance_scale)` runs any diffusers
scheduler over any denoiser: the 50-step teacher (DDIM) and the 1-step student (LCM-style
x0-then-renoise sampling at the student timesteps) are timed and evaluated through it alike.
"""

from __future__ import annotations

from typing import Optional

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
)

from ..errors import DistillError

SCHEDULERS = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "lcm": LCMScheduler,
}


def make_scheduler(name: str, config, **overrides):
    """A scheduler of kind `name` sharing the noise schedule in `config`; `trailing` spacing so
    that 1 step starts from pure noise at t = T - 1 (the 'leading' default starts at t = 0)."""
    if name not in SCHEDULERS:
        raise DistillError(f"unknown scheduler '{name}' (choose from {', '.join(SCHEDULERS)})")
    overrides.setdefault("timestep_spacing", "trailing")
    return SCHEDULERS[name].from_config(config, **overrides)


def null_label(unet) -> Optional[int]:
    n = getattr(unet.config, "num_class_embeds", None)
    return n - 1 if n else None


def model_output(unet, x_t: torch.Tensor, t, class_labels: Optional[torch.Tensor], guidance_scale: float = 1.0):
    """Denoiser output at (x_t, t); classifier-free guidance when `guidance_scale != 1`:
    out = out_uncond + w * (out_cond - out_uncond)  (Ho & Salimans 2022, Eq. 6)."""
    if class_labels is None or guidance_scale == 1.0:
        return unet(x_t, t, class_labels=class_labels).sample
    null = torch.full_like(class_labels, null_label(unet))
    t2 = torch.cat([t, t]) if torch.is_tensor(t) and t.ndim == 1 else t
    out = unet(torch.cat([x_t, x_t]), t2, class_labels=torch.cat([class_labels, null])).sample
    cond, uncond = out.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


@torch.no_grad()
def sample(
    unet,
    scheduler,
    noise: torch.Tensor,  # (B, C, H, W) standard normal
    class_labels: Optional[torch.Tensor] = None,  # (B,)
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Run `scheduler` for `num_steps` from `noise`; returns x_0 estimates in [-1, 1] scale."""
    scheduler.set_timesteps(num_steps, device=noise.device)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = model_output(unet, x_in, t, class_labels, guidance_scale)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x
