"""Export the latent student as a pipeline of the teacher's own class (StableDiffusionPipeline or
StableDiffusionXLPipeline): the teacher's VAE, text encoders and tokenizers, the student UNet (LoRA
fused in) and an LCMScheduler set for 1-4 steps, used as SD-Turbo is:

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    image = pipe(prompt, num_inference_steps=1, guidance_scale=0.0).images[0]

The scheduler samples x0-then-renoise at the student timesteps (trailing spacing: 1 step starts at
t = T - 1; original_inference_steps = len(student_timesteps) gives 999, 749, 499, 249 for 4 steps).
LoRA runs also write the adapter alone (`lora/pytorch_lora_weights.safetensors`), loadable on the
teacher with `pipe.load_lora_weights(folder / "lora")`.
"""

from __future__ import annotations

from pathlib import Path

from diffusers import LCMScheduler

from .lora import fused_copy, has_lora, save_lora


def student_scheduler(teacher_scheduler_config, student_timesteps) -> LCMScheduler:
    return LCMScheduler.from_config(teacher_scheduler_config, original_inference_steps=len(student_timesteps),
                                    timestep_spacing="trailing")


def student_pipeline(teacher_pipe, student_unet, student_timesteps):
    """A pipeline of the teacher's class with the (fused) student UNet and the student scheduler."""
    unet = fused_copy(student_unet).to(teacher_pipe.vae.dtype)
    comps = {**teacher_pipe.components, "unet": unet,
             "scheduler": student_scheduler(teacher_pipe.scheduler.config, student_timesteps)}
    if "safety_checker" in comps:  # SD 1.x/2.x: no checker, and say so in model_index.json
        comps["requires_safety_checker"] = False
    pipe = type(teacher_pipe)(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def export_student(folder, teacher_pipe, student_unet, student_timesteps) -> Path:
    folder = Path(folder)
    student_pipeline(teacher_pipe, student_unet, student_timesteps).save_pretrained(str(folder))
    if has_lora(student_unet):
        save_lora(folder / "lora", student_unet, type(teacher_pipe))
    return folder
