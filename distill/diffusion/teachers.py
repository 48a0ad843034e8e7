"""Teachers: registries of constructors.

  TEACHERS         `teacher.kind` -> (config, resolution, channels, num_classes) -> denoiser network
                   (diffusers `UNet2DModel`, `DiTTransformer2DModel`)
  NOISE_SCHEDULES  `teacher.prediction_type` -> the noise scheduler that fixes the schedule and, through
                   distill.diffusion.denoiser.parameterisation_for, the parameterisation (DDPMScheduler for
                   epsilon / v / sample, FlowMatchEulerDiscreteScheduler(shift) for flow)

Training, sampling and distillation use the network only through the Denoiser, whose conditioning adapter
(LabelCond, DiTLabelCond) says how labels reach it; a new architecture is one TEACHERS entry and, when its
conditioning call differs, one adapter in denoiser.CONDITIONINGS.
"""

from __future__ import annotations

from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from ..errors import DistillError
from .dit import build_dit, without_label_dropout
from .recipe import TeacherConfig
from .unet2d import build_unet2d

TEACHERS = {"unet2d": build_unet2d, "dit": build_dit}


def _ddpm(cfg: TeacherConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False, timestep_spacing="trailing")


def _flow(cfg: TeacherConfig) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg.num_train_timesteps, shift=cfg.flow_shift)


NOISE_SCHEDULES = {"flow": _flow}  # any other prediction_type: _ddpm


def build_noise_scheduler(cfg: TeacherConfig):
    return NOISE_SCHEDULES.get(cfg.prediction_type, _ddpm)(cfg)


def load_teacher(path: str):
    """Load an exported teacher pipeline (folder, run folder or Hub id) -> DistillPipeline (a DiT without its own
    label dropout)."""
    from .pipelines import DistillPipeline, exported_pipeline

    try:
        pipe = DistillPipeline.from_pretrained(str(exported_pipeline(path)))
    except (OSError, ValueError) as e:
        raise DistillError(f"{path}: cannot load a pipeline ({str(e).splitlines()[0]})") from None
    without_label_dropout(pipe.unet)
    return pipe


def resolve_teacher_path(spec: str) -> str:
    """`shipped:<name>` -> the teacher folder shipped in distill/assets/teachers; anything else as is."""
    if spec.startswith("shipped:"):
        from pathlib import Path

        return str(Path(__file__).resolve().parent.parent / "assets" / "teachers" / spec.split(":", 1)[1])
    return spec


__all__ = ["resolve_teacher_path", "TEACHERS", "NOISE_SCHEDULES", "build_unet2d", "build_dit", "build_noise_scheduler",
           "load_teacher"]
