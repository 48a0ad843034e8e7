"""Samplers as pure functions with one signature.

`sample(denoiser, scheduler, noise, cond, num_steps, guidance_scale)` runs any diffusers
scheduler over any Denoiser (distill.diffusion.denoiser): the 50-step teacher (DDIM, or flow-matching
Euler) and the 1-step student (x0-then-renoise sampling at the student timesteps) are timed and
evaluated through it alike.

Every sampler in SCHEDULERS belongs to one noise-schedule family: "ddpm" (the discrete variance-preserving
schedule of a DDPMScheduler) or "flow" (x_t = (1 - sigma) x0 + sigma eps, FlowMatchEulerDiscreteScheduler);
a sampler of the other family than the teacher's is a one-line error, never silent noise.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, runtime_checkable

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    LCMScheduler,
    TCDScheduler,
)

from ..errors import DistillError
from .denoiser import Denoiser, LabelCond, prediction_type_of
from .flow import flow_shift_of


@dataclass(frozen=True)
class Sampler:
    cls: type  # the diffusers scheduler class
    family: str  # "ddpm" | "flow": the noise schedule it integrates
    overrides: dict = field(default_factory=dict)  # set on top of the teacher's schedule


TRAILING = {"timestep_spacing": "trailing"}  # 1 step starts from pure noise at t = T - 1 ('leading' starts at 0)

SCHEDULERS: dict[str, Sampler] = {
    "ddpm": Sampler(DDPMScheduler, "ddpm", TRAILING),
    "ddim": Sampler(DDIMScheduler, "ddpm", TRAILING),
    "dpm++": Sampler(DPMSolverMultistepScheduler, "ddpm", TRAILING),
    "euler": Sampler(EulerDiscreteScheduler, "ddpm", TRAILING),
    "lcm": Sampler(LCMScheduler, "ddpm", TRAILING),
    # trajectory consistency sampling (Zheng et al. 2024) of a consistency student: its gamma (eta, 0.3) re-noises
    # part of each step's x0 estimate; on the student's LCM grid (original_inference_steps of its config)
    "tcd": Sampler(TCDScheduler, "ddpm", TRAILING),
    "flow-euler": Sampler(FlowMatchEulerDiscreteScheduler, "flow", {"stochastic_sampling": False}),
    "flow-heun": Sampler(FlowMatchHeunDiscreteScheduler, "flow"),
    # DPM-Solver++ (2nd order) on flow sigmas: the velocity as diffusers' flow_prediction
    "flow-dpm++": Sampler(DPMSolverMultistepScheduler, "flow", {"use_flow_sigmas": True,
                                                                "prediction_type": "flow_prediction"}),
}

FAMILY_NAMES = {"ddpm": "DDPM-schedule (epsilon / v / sample)", "flow": "flow-matching"}
DEFAULT_SAMPLER = {"ddpm": "ddim", "flow": "flow-euler"}  # what a teacher of each family is sampled with


def family_of(config) -> str:
    """"flow" for a flow-matching scheduler or its config (`prediction_type_of` decides), else "ddpm"."""
    return "flow" if prediction_type_of(config) == "flow" else "ddpm"


def default_sampler(config) -> str:
    return DEFAULT_SAMPLER[family_of(config)]


def resolve_sampler(name: str, config) -> str:
    """"auto" -> the default sampler of the schedule's family; any other name as is."""
    return default_sampler(config) if name == "auto" else name


def flow_scheduler(cls, config, **overrides):
    """A flow scheduler of class `cls` on the flow schedule in `config`, whichever flow scheduler wrote it: the
    shift under the name `cls` takes (shift / flow_shift), and of the config only the keys `cls` accepts. An
    override `cls` does not accept (an older diffusers) is a DistillError naming it, never dropped."""
    cfg = dict(getattr(config, "config", config))
    shift = flow_shift_of(cfg)
    cfg.pop("flow_shift" if "flow_shift" in cfg else "shift", None)
    accepted = inspect.signature(cls.__init__).parameters
    missing = [k for k in overrides if k not in accepted]
    if missing:
        import diffusers

        since = {"stochastic_sampling": "0.34.0", "use_flow_sigmas": "0.32.0"}  # the release that added the key
        k = missing[0]
        raise DistillError(f"{cls.__name__} of diffusers {diffusers.__version__} does not accept '{k}': "
                           f"needs diffusers>={since.get(k, 'a newer release')}")
    cfg["flow_shift" if "flow_shift" in accepted else "shift"] = shift
    return cls(**{k: v for k, v in {**cfg, **overrides}.items() if k in accepted})


def noise_schedule_of(config) -> dict:
    """The noise schedule a scheduler (or its config) samples: its own keys, or the `schedule` entry of a trajectory
    student's TrajectoryScheduler."""
    cfg = dict(getattr(config, "config", config))
    return dict(cfg["schedule"]) if isinstance(cfg.get("schedule"), dict) else cfg


def make_scheduler(name: str, config, **overrides):
    """A scheduler of kind `name` ("auto": the family's default) sharing the noise schedule in `config`
    (a scheduler or its config); a sampler of another family than the schedule's is a DistillError."""
    config = noise_schedule_of(config)
    name = resolve_sampler(name, config)
    if name not in SCHEDULERS:
        raise DistillError(f"unknown scheduler '{name}' (choose from {', '.join(SCHEDULERS)})")
    spec, family = SCHEDULERS[name], family_of(config)
    if spec.family != family:
        fits = [k for k, v in SCHEDULERS.items() if v.family == family]
        raise DistillError(f"scheduler '{name}' is for {FAMILY_NAMES[spec.family]} models and this one is a "
                           f"{FAMILY_NAMES[family]} model: use {', '.join(fits)}")
    kw = {**spec.overrides, **overrides}
    if family == "flow":
        return flow_scheduler(spec.cls, config, **kw)
    return spec.cls.from_config(dict(getattr(config, "config", config)), **kw)


def noise_scheduler_from(config):
    """The training noise schedule behind a saved pipeline's scheduler (whichever sampler it holds):
    a FlowMatchEulerDiscreteScheduler for a flow model, else a DDPMScheduler."""
    if family_of(config) == "flow":
        return flow_scheduler(FlowMatchEulerDiscreteScheduler, config, stochastic_sampling=False)
    return DDPMScheduler.from_config(dict(getattr(config, "config", config)))


def null_label(unet) -> Optional[int]:
    """The null class of a class-conditional network (= its number of real classes), or None."""
    return LabelCond.of(unet).null_label


@runtime_checkable
class JumpSampler(Protocol):
    """A scheduler that runs its own loop over the network (distill.diffusion.trajectory.TrajectoryScheduler):
    a trajectory student's jumps take its target time, which a diffusers `step(out, t, x)` cannot pass."""

    def jump_sample(self, net, noise: torch.Tensor, cond, num_steps: int, guidance_scale: float = 1.0,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor: ...


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
    if isinstance(scheduler, JumpSampler):  # a trajectory student's sampler drives the network itself
        net = model.net if isinstance(model, Denoiser) else model
        return scheduler.jump_sample(net, noise, cond, num_steps, guidance_scale, generator)
    den = model if isinstance(model, Denoiser) else Denoiser(model, None)
    try:
        scheduler.set_timesteps(num_steps, device=noise.device)
    except ValueError as e:  # e.g. more steps than a 1-step student's LCMScheduler was exported with
        raise DistillError(f"{type(scheduler).__name__}: cannot sample in {num_steps} steps ({str(e).splitlines()[0]})") from None
    x = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # flow schedulers start at sigma = 1
    scale = getattr(scheduler, "scale_model_input", lambda x, t: x)
    for t in scheduler.timesteps:
        out = den.out(scale(x, t), t, cond, guidance_scale)
        x = scheduler.step(out, t, x, generator=generator).prev_sample
    return x


def student_scheduler(schedule, student_timesteps, grid_steps: Optional[int] = None) -> Any:
    """x0-then-renoise sampling at the student timesteps (as ADD samples), a plain diffusers scheduler.
    `schedule`: the teacher's noise scheduler or its config.
      ddpm: LCMScheduler with original_inference_steps = len(student_timesteps): 999, 749, 499, 249 for 4, 999 for 1;
            a consistency student: grid_steps = its solver grid N (LCM's 50: 999, 759, 499, 259 for 4 steps).
      flow: FlowMatchEulerDiscreteScheduler(shift, stochastic_sampling=True): x0 = x_t - sigma v, then fresh noise
            to the next sigma; set_timesteps(k) visits the student's timesteps (FlowPrediction.student_timesteps)."""
    if family_of(schedule) == "flow":
        return flow_scheduler(FlowMatchEulerDiscreteScheduler, schedule, stochastic_sampling=True)
    cfg = dict(getattr(schedule, "config", schedule))
    return LCMScheduler.from_config(cfg, original_inference_steps=grid_steps or len(student_timesteps),
                                    timestep_spacing="trailing")
