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

import torch
from diffusers import LCMScheduler

from ..diffusion.sampling import student_scheduler
from .lora import fused_copy, has_lora, save_lora


def student_pipeline(teacher_pipe, student_unet, student_timesteps, dtype=torch.float32):
    """A pipeline of the teacher's class with the (fused) student UNet and the student scheduler,
    every module in one dtype. The teacher's frozen modules are cast IN PLACE (call this last):
    a bf16 run keeps text encoders and VAE in bf16, and a pipeline saved with mixed dtypes does
    not load cleanly (diffusers loads its models in fp32, transformers 5 keeps the saved dtype)."""
    unet = fused_copy(student_unet).to(dtype)
    comps = {**teacher_pipe.components, "unet": unet,
             "scheduler": student_scheduler(teacher_pipe.scheduler.config, student_timesteps)}
    for m in comps.values():
        if isinstance(m, torch.nn.Module):
            m.to(dtype)
    if "safety_checker" in comps:  # SD 1.x/2.x: no checker, and say so in model_index.json
        comps["requires_safety_checker"] = False
    pipe = type(teacher_pipe)(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def export_student(folder, teacher_pipe, student_unet, student_timesteps, dtype: str = "float32") -> Path:
    """Save the student pipeline (and `lora/` for LoRA runs) in `folder`, all modules in `dtype`
    (load a non-fp32 export with `from_pretrained(folder, torch_dtype=...)` of the same dtype)."""
    folder = Path(folder)
    student_pipeline(teacher_pipe, student_unet, student_timesteps, getattr(torch, dtype)).save_pretrained(str(folder))
    if has_lora(student_unet):
        save_lora(folder / "lora", student_unet, type(teacher_pipe))
    return folder
