"""Samplers as pure functions with one signature.

`sample(denoiser, scheduler, noise, cond, num_steps, guidance_scale)` runs any diffusers
scheduler over any Denoiser (distill.diffusion.denoiser): the 50-step teacher (DDIM) and the 1-step student (LCM-style
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
from .denoiser import Denoiser, LabelCond

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
    """The null class of a class-conditional UNet2DModel (= its number of real classes), or None."""
    return LabelCond.of(unet).null_label


@torch.no_grad()
def sample(
    model,  # a Denoiser, or a bare class-conditional network (wrapped with its label conditioning)
    scheduler,
    noise: torch.Tensor,  # (B, C, H, W) standard normal
    cond=None,  # (B,) class labels, or the Denoiser's conditioning
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Run `scheduler` for `num_steps` from `noise`; returns x_0 estimates in [-1, 1] scale. The
    scheduler reads the denoiser's raw (guided) output in its own prediction type."""
    den = model if isinstance(model, Denoiser) else Denoiser(model, None)
    try:
        scheduler.set_timesteps(num_steps, device=noise.device)
    except ValueError as e:  # e.g. more steps than a 1-step student's LCMScheduler was exported with
        raise DistillError(f"{type(scheduler).__name__}: cannot sample in {num_steps} steps ({str(e).splitlines()[0]})") from None
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = den.out(x_in, t, cond, guidance_scale)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


def student_scheduler(schedule, student_timesteps) -> LCMScheduler:
    """x0-then-renoise sampling at the student timesteps (as ADD samples): diffusers' LCMScheduler
    with original_inference_steps = len(student_timesteps) gives 999, 749, 499, 249 for 4, 999 for 1.
    `schedule`: the teacher's noise scheduler or its config."""
    return LCMScheduler.from_config(getattr(schedule, "config", schedule), original_inference_steps=len(student_timesteps),
                                    timestep_spacing="trailing")
