"""One-step image-to-image with a latent student (SDEdit with a one-step denoiser, as SD-Turbo's
image-to-image), for every teacher family (UNet or flow transformer, distill.sd.families).

The diffusers trap: `StableDiffusionImg2ImgPipeline` keeps int(num_inference_steps * strength)
timesteps, so num_inference_steps=1 with strength < 1 keeps none (no denoising, or an error).
Two ways around it:
  * `img2img_one_step` below picks the timestep directly from the strength,
    t = round(strength * (T - 1)), noises the encoded image to t and takes one student step;
    any strength in (0, 1] gives exactly one UNet call.
  * through diffusers: `img2img_pipeline(pipe)` and num_inference_steps = ceil(1 / strength)
    (`diffusers_steps_for`), so that steps * strength >= 1 keeps exactly one timestep.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import DistillError
from ..diffusion.denoiser import Denoiser
from .families import family_of, network


def strength_timestep(strength: float, num_train_timesteps: int = 1000) -> int:
    if not 0.0 < strength <= 1.0:
        raise DistillError(f"img2img strength must lie in (0, 1], got {strength}")
    return int(round(strength * (num_train_timesteps - 1)))


def diffusers_steps_for(strength: float) -> int:
    """num_inference_steps for StableDiffusionImg2ImgPipeline so that one timestep remains."""
    strength_timestep(strength)
    return max(1, math.ceil(1.0 / strength - 1e-9))


@torch.no_grad()
def img2img_one_step(pipe, image: torch.Tensor, prompts: list[str], strength: float,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """image: (B, 3, H, W) in [-1, 1] -> (B, 3, H, W) in [-1, 1], one student network call."""
    fam = family_of(pipe)
    ns = fam.noise_scheduler(pipe)
    t = strength_timestep(strength, ns.config.num_train_timesteps)
    vae, unet = pipe.vae, network(pipe)
    sf, shift = vae.config.scaling_factor, getattr(vae.config, "shift_factor", None) or 0.0
    z0 = (vae.encode(image.to(vae.device, vae.dtype)).latent_dist.mean - shift) * sf
    noise = torch.randn(z0.shape, generator=generator).to(z0.device, z0.dtype)
    tt = torch.full((z0.shape[0],), t, dtype=torch.long, device=z0.device)
    cond = fam.encode(pipe, prompts, image.shape[-1], unet.device).map(lambda x: x.to(unet.dtype))
    den = Denoiser.from_scheduler(unet, ns, fam.conditioning(cond, pipe, None))
    z_t = den.add_noise(z0, noise, tt)
    z0_hat = den.x0_from(z_t, tt, den.out(z_t.to(unet.dtype), tt, cond))
    return vae.decode(z0_hat.to(vae.dtype) / sf + shift).sample.clamp(-1, 1)


def img2img_pipeline(pipe):
    """The matching diffusers image-to-image pipeline over the same modules."""
    import diffusers

    name = type(pipe).__name__.replace("Pipeline", "Img2ImgPipeline")
    return getattr(diffusers, name)(**pipe.components)
