"""Teacher families of the latent space, keyed by the teacher pipeline's class: what differs between
a UNet teacher (SD 1.x/2.x, SDXL; DDPM schedule, epsilon / v prediction) and an MMDiT flow teacher
(SD3, Flux; flow matching, x_t = (1 - sigma) x0 + sigma eps). Everything else in the latent space
(data, LoRA, the loop, the heads, checkpoints) is shared.

A family says
  net_name                  the pipeline attribute holding the network ("unet" | "transformer")
  patch                     latent pixels per token side (the resolution must be a multiple of VAE factor x patch)
  lora_targets              default `sd.lora_target_modules`
  text_encoders             the pipeline attributes holding frozen text encoders
  noise_scheduler(pipe)     the scheduler the Denoiser's parameterisation is read from (DDPM or flow matching)
  encode(pipe, prompts, R, device) -> TextCond;   uncond(pipe, R, device) -> TextCond (batch 1)
  conditioning(uncond1, pipe, guidance)   the Denoiser's conditioning adapter (`guidance`: the teacher's
                            guidance, used by guidance-distilled teachers as an input of the network)
  features(teacher, layers) the LADD discriminator backbone on the teacher network
  grid(latents, R, pipe)    a pipeline's output_type="latent" result as (B, C, h, w)
  student_timesteps(ts, pipe, R, teacher)   the student's timesteps as the loop uses them: those the
                            exported pipeline visits, checked
  student_scheduler(config, student_timesteps, grid_steps)   the exported student's scheduler
  export_net(net, cond)     the network to export (Flux: guidance folded in)
"""

from __future__ import annotations

import numpy as np
import torch

from ..diffusion.flow import dynamic_shift, shift_sigma
from ..diffusion.sampling import noise_scheduler_from, student_scheduler
from ..errors import RecipeError
from .config import DEFAULT_LORA_TARGETS
from .features import SDTeacherFeatures, TokenFeatures
from .mmdit import FluxConditioning, SD3Conditioning, encode_flux, encode_sd3, fold_guidance, unpack
from .teacher import PIPELINE_CLASSES, TextConditioning, encode_prompts, null_cond

# attention projections of the MMDiT blocks: image stream (to_q/k/v, to_out.0) and text stream
# (the context projections add_q/k/v_proj, to_add_out); Flux's single-stream blocks have to_q/k/v
TRANSFORMER_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


class Family:
    """What every family shares: the noise schedule and the exported scheduler follow the teacher's scheduler
    config (distill.diffusion.sampling), the student timesteps the parameterisation's check."""

    def noise_scheduler(self, pipe):
        return noise_scheduler_from(pipe.scheduler.config)

    def student_timesteps(self, ts, pipe, resolution, teacher) -> torch.Tensor:
        return teacher.student_timesteps(ts)

    def student_scheduler(self, config, student_timesteps, grid_steps=None):
        return student_scheduler(config, student_timesteps, grid_steps)

    def grid(self, latents, resolution, pipe):
        return latents

    def export_net(self, net, cond):
        return net


class UNetFamily(Family):
    net_name = "unet"
    patch = 1
    lora_targets = DEFAULT_LORA_TARGETS
    text_encoders = ("text_encoder", "text_encoder_2")

    def encode(self, pipe, prompts, resolution, device):
        return encode_prompts(pipe, prompts, resolution, device)

    def uncond(self, pipe, resolution, device):
        return null_cond(pipe, 1, resolution, device)

    def conditioning(self, uncond1, pipe, guidance):
        return TextConditioning(uncond1)

    def features(self, teacher, layers):
        return SDTeacherFeatures(teacher.net, teacher)


class MMDiTFamily(Family):
    """Shared by SD3 and Flux: flow matching, a transformer, three (SD3) or two (Flux) text encoders."""

    net_name = "transformer"
    lora_targets = TRANSFORMER_LORA_TARGETS
    text_encoders = ("text_encoder", "text_encoder_2", "text_encoder_3")
    patch = 2  # latent pixels per token side (SD3: patch_size 2; Flux: the 2x2 packing)

    def uncond(self, pipe, resolution, device):
        return self.encode(pipe, [""], resolution, device)

    def features(self, teacher, layers):
        return TokenFeatures(teacher, list(layers), self.patch)


class SD3Family(MMDiTFamily):
    def encode(self, pipe, prompts, resolution, device):
        return encode_sd3(pipe, prompts, device)

    def conditioning(self, uncond1, pipe, guidance):
        return SD3Conditioning(uncond1)


class FluxFamily(MMDiTFamily):
    def encode(self, pipe, prompts, resolution, device):
        return encode_flux(pipe, prompts, device)

    def conditioning(self, uncond1, pipe, guidance):
        """FLUX.1-dev: `guidance` (distill.teacher_guidance) is the value of the guidance embedding (no CFG
        batch); a model without the embedding (FLUX.1-schnell, an exported student) ignores it."""
        g = guidance if pipe.transformer.config.guidance_embeds else None
        return FluxConditioning(uncond1, g, pipe.scheduler.config.num_train_timesteps)

    def student_timesteps(self, ts, pipe, resolution, teacher) -> torch.Tensor:
        """FluxPipeline does not let its scheduler pick the sigmas: k steps pass sigma = linspace(1, 1/k, k), shifted
        by exp(mu) with mu from the image's token count (use_dynamic_shifting, FLUX.1-dev) or by the static shift.
        The student's K timesteps are T shift(sigma) at the training resolution (a k-step call visits a subset
        when k divides K: 1, 2, 4 for K = 4); the recipe gives them rounded to integers."""
        cfg, K = pipe.scheduler.config, len(ts)
        T = cfg.num_train_timesteps
        tokens = (resolution // pipe.vae_scale_factor // 2) ** 2
        shift = (dynamic_shift(tokens, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
                 if cfg.use_dynamic_shifting else cfg.shift)
        exact = torch.tensor(shift_sigma(np.linspace(1.0, 1.0 / K, K), shift) * T, dtype=torch.float32)
        if any(abs(float(a) - float(b)) > 0.5 for a, b in zip(ts, exact)):
            raise RecipeError(f"distill.student_timesteps {list(ts)}: a {K}-step Flux student at {resolution} px samples "
                              f"with FluxPipeline at t = {[round(float(v)) for v in exact]} (rounded); use those")
        return exact

    def grid(self, latents, resolution, pipe):
        """FluxPipeline returns packed latents (B, h/2 * w/2, 4C)."""
        if latents.ndim == 4:
            return latents
        h = resolution // pipe.vae_scale_factor
        return unpack(latents, h, h)

    def export_net(self, net, cond):
        return fold_guidance(net, cond.guidance) if cond.guidance is not None else net


FAMILIES = {
    "StableDiffusionPipeline": UNetFamily(),
    "StableDiffusionXLPipeline": UNetFamily(),
    "StableDiffusion3Pipeline": SD3Family(),
    "FluxPipeline": FluxFamily(),
}
assert set(FAMILIES) == set(PIPELINE_CLASSES)


def family_of(pipe):
    return FAMILIES[type(pipe).__name__]


def network(pipe):
    """The teacher pipeline's denoising network (UNet or transformer)."""
    return getattr(pipe, family_of(pipe).net_name)
