"""Export the latent student as a pipeline of the teacher's own class (StableDiffusionPipeline,
StableDiffusionXLPipeline, StableDiffusion3Pipeline or FluxPipeline): the teacher's VAE, text
encoders and tokenizers, the student network (LoRA fused in) and a scheduler set for 1-4 steps,
used as SD-Turbo is:

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    image = pipe(prompt, num_inference_steps=1, guidance_scale=0.0).images[0]

UNet students get an LCMScheduler sampling x0-then-renoise at the student timesteps (trailing
spacing: 1 step starts at t = T - 1; original_inference_steps = len(student_timesteps) gives 999,
749, 499, 249 for 4 steps). Flow students (SD3, Flux) get the family's flow scheduler
(distill.sd.families); a Flux student trained at a guidance embedding g is exported with g folded
into its weights and no guidance input (distill.sd.mmdit.fold_guidance).
LoRA runs also write the adapter alone (`lora/pytorch_lora_weights.safetensors`), loadable on the
teacher with `pipe.load_lora_weights(folder / "lora")` (a Flux-dev LoRA then runs at guidance_scale=g).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .families import family_of
from .lora import fused_copy, has_lora, save_lora


def student_pipeline(teacher_pipe, student_net, student_timesteps, dtype=torch.float32, cond=None, grid_steps=None):
    """A pipeline of the teacher's class with the (fused) student network and the student scheduler,
    every module in one dtype. `cond`: the Denoiser's conditioning adapter the student was trained with.
    The teacher's frozen modules are cast IN PLACE (call this last): a bf16 run keeps text encoders and
    VAE in bf16, and a pipeline saved with mixed dtypes does not load cleanly (diffusers loads its models
    in fp32, transformers 5 keeps the saved dtype)."""
    fam = family_of(teacher_pipe)
    net = fam.export_net(fused_copy(student_net), cond).to(dtype)
    comps = {**teacher_pipe.components, fam.net_name: net,
             "scheduler": fam.student_scheduler(teacher_pipe.scheduler.config, student_timesteps, grid_steps)}
    for m in comps.values():
        if isinstance(m, torch.nn.Module):
            m.to(dtype)
    if "safety_checker" in comps:  # SD 1.x/2.x: no checker, and say so in model_index.json
        comps["requires_safety_checker"] = False
    pipe = type(teacher_pipe)(**comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def export_student(folder, teacher_pipe, student_net, student_timesteps, dtype: str = "float32", cond=None,
                   grid_steps=None) -> Path:
    """Save the student pipeline (and `lora/` for LoRA runs) in `folder`, all modules in `dtype`
    (load a non-fp32 export with `from_pretrained(folder, torch_dtype=...)` of the same dtype). `grid_steps`: a
    consistency student's solver grid N, the LCMScheduler's original_inference_steps (LCM-LoRA samples 1 .. N)."""
    folder = Path(folder)
    student_pipeline(teacher_pipe, student_net, student_timesteps, getattr(torch, dtype), cond,
                     grid_steps).save_pretrained(str(folder))
    if has_lora(student_net):
        save_lora(folder / "lora", student_net, type(teacher_pipe), family_of(teacher_pipe).net_name)
    return folder
