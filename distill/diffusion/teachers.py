"""Teachers: a registry of constructors, `kind` -> (config, data) -> denoiser network.

A teacher is a diffusers denoiser (`UNet2DModel` here; `UNet2DConditionModel` inside a Stable
Diffusion pipeline in the latent-teacher issue) plus a `DDPMScheduler` that fixes its noise
schedule and prediction type. Training, sampling and distillation only use the denoiser through
`denoise(unet, x_t, t, cond)` (distill.diffusion.sampling), so a new teacher plugs in by adding a
constructor here and, when its conditioning differs, a branch of that one function.
"""

from .unet2d import build_noise_scheduler, build_unet2d, load_teacher

TEACHERS = {"unet2d": build_unet2d}



def resolve_teacher_path(spec: str) -> str:
    """`shipped:<name>` -> the teacher folder shipped in distill/assets/teachers; anything else as is."""
    if spec.startswith("shipped:"):
        from pathlib import Path

        return str(Path(__file__).resolve().parent.parent / "assets" / "teachers" / spec.split(":", 1)[1])
    return spec


__all__ = ["resolve_teacher_path", "TEACHERS", "build_unet2d", "build_noise_scheduler", "load_teacher"]
