"""The Denoiser: the only code that knows a diffusion model's parameterisation.

A Denoiser wraps a network, its noise schedule and its conditioning (k-diffusion's `Denoiser`, EDM2's
`Precond` play this part). With x_t = alpha_t x0 + sigma_t eps:

  add_noise(x0, eps, t)       x_t
  out(x_t, t, cond, w)        the network's raw output, classifier-free guided when w != 1:
                              out_u + w (out_c - out_u)  (Ho & Salimans 2022, Eq. 6)
  x0(x_t, t, cond, w)         the clean-sample estimate
  eps(x_t, t, cond, w)        the noise estimate
  target(x0, eps, t)          what the network regresses onto in training
  loss(x0, eps, t, cond)      the denoising loss, (B,)  (Ho et al. 2020, Eq. 14, simple weighting)
  consistency(x_t, t, cond)   f(x_t, t) = c_skip(t) x_t + c_out(t) x0(x_t, t), c_skip(0) = 1, c_out(0) = 0: the
                              consistency function a consistency student is (Song et al. 2023, Eq. 5; LCM Eq. 9)
  solver_grid(N)              t_0 = 0 < t_1 < ... < t_N, the grid a consistency student is distilled on
  jump(x_t, t, s, cond)       G(x_t, t, s): a trajectory student's jump from t to s (distill.diffusion.trajectory)
  t_max                       the largest timestep (T - 1 for the discrete DDPM schedule, T for flow)
  student_timesteps(ts)       a distilled student's timesteps as a tensor, checked against the schedule

A parameterisation is a small object in PARAMETERISATIONS (epsilon, v, sample): alpha/sigma at t,
and the maps between (out, x_t) and (x0, eps); flow matching (x_t = (1 - sigma) x0 + sigma eps, velocity
v = eps - x0) is one more entry, and every sampler, loss and trainer follows.

Conditioning is a small adapter too: `LabelCond` (class labels with a null label, UNet2DModel) and
`DiTLabelCond` (DiTTransformer2DModel) here, the text conditioning of Stable Diffusion in distill.sd.teacher.
It says how a condition reaches the network, how two are batched, and what the unconditional input is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

from ..errors import RecipeError
from .flow import euler_sigmas, flow_shift_of, shift_sigma
from .guided import takes_guidance
from .time_embedding import unwrapped


# ----------------------------------------------------------------------------------------------
# Parameterisations


LCM_SIGMA_DATA, LCM_TIMESTEP_SCALING = 0.5, 10.0  # LCMScheduler's defaults (diffusers)


class DDPMParameterisation:
    """Discrete variance-preserving schedule of a diffusers DDPMScheduler: alpha_t = sqrt(abar_t),
    sigma_t = sqrt(1 - abar_t), t an integer in [0, T)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler  # holds alphas_cumprod and does the noising (diffusers' own arithmetic)
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    def alpha_sigma(self, t: torch.Tensor, device, dtype=torch.float32):
        """(alpha_t, sigma_t), each (B, 1, 1, 1)."""
        abar = self.scheduler.alphas_cumprod.to(device)[t].view(-1, 1, 1, 1).to(dtype)
        return abar.sqrt(), (1 - abar).sqrt()

    def add_noise(self, x0, eps, t):
        return self.scheduler.add_noise(x0, eps, t)  # sqrt(abar_t) x0 + sqrt(1 - abar_t) eps

    @property
    def t_max(self) -> int:
        """The largest timestep of the schedule (the integer timesteps are 0 .. T - 1)."""
        return self.num_train_timesteps - 1

    def boundary(self, t: torch.Tensor, device, dtype=torch.float32):
        """(c_skip, c_out), each (B, 1, 1, 1): LCM's scalings (Luo et al. 2023, Eq. 9, sigma_data 0.5, timesteps scaled
        by 10), which diffusers' LCMScheduler applies when it samples: c_skip(0) = 1, c_out(0) = 0, and from t = 19 on
        c_skip < 1e-5, so the consistency function is the x0 estimate everywhere but at the boundary."""
        u = torch.as_tensor(t, device=device, dtype=torch.float32).reshape(-1, 1, 1, 1) * LCM_TIMESTEP_SCALING
        c_skip = LCM_SIGMA_DATA ** 2 / (u ** 2 + LCM_SIGMA_DATA ** 2)
        return c_skip.to(dtype), (u / (u ** 2 + LCM_SIGMA_DATA ** 2).sqrt()).to(dtype)

    def solver_grid(self, n: int) -> torch.Tensor:
        """(N + 1,) long: 0, then LCMScheduler's origin timesteps for original_inference_steps = N
        (k T / N - 1 for k = 1 .. N: 19, 39, ..., 999 for N = 50), so an exported LCMScheduler samples on this grid."""
        T = self.num_train_timesteps
        if not 1 <= n <= T:
            raise RecipeError(f"consistency.solver_steps must be in [1, {T}] (the teacher's schedule), got {n}")
        return torch.tensor([0] + [k * (T // n) - 1 for k in range(1, n + 1)], dtype=torch.long)

    def student_timesteps(self, ts: list) -> torch.Tensor:
        """The student's timesteps as the loop uses them: (K,) long, each within the schedule."""
        if any(not 0 <= s <= self.t_max for s in ts):
            raise RecipeError(f"distill.student_timesteps must lie in [0, {self.t_max}] (the teacher's schedule)")
        return torch.tensor(ts, dtype=torch.long)


class EpsilonPrediction(DDPMParameterisation):
    name = "epsilon"

    def x0(self, out, x_t, alpha, sigma):
        return (x_t - sigma * out) / alpha

    def eps(self, out, x_t, alpha, sigma):
        return out

    def target(self, x0, eps, t):
        return eps


class VPrediction(DDPMParameterisation):
    """v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, Sec. 4)."""

    name = "v_prediction"

    def x0(self, out, x_t, alpha, sigma):
        return alpha * x_t - sigma * out

    def eps(self, out, x_t, alpha, sigma):
        return alpha * out + sigma * x_t

    def target(self, x0, eps, t):
        return self.scheduler.get_velocity(x0, eps, t)


class SamplePrediction(DDPMParameterisation):
    name = "sample"

    def x0(self, out, x_t, alpha, sigma):
        return out

    def eps(self, out, x_t, alpha, sigma):
        return (x_t - alpha * out) / sigma

    def target(self, x0, eps, t):
        return x0


class FlowPrediction:
    """Rectified flow / flow matching (Liu et al. 2022; Lipman et al. 2023; SD3, Esser et al. 2024, Eq. 2-3):
    x_t = (1 - sigma) x0 + sigma eps, the network predicts the velocity v = eps - x0, so
    x0 = x_t - sigma v and eps = x_t + (1 - sigma) v. Timesteps are diffusers' FlowMatchEulerDiscreteScheduler
    units, t = sigma T (T = num_train_timesteps, a float in [0, T]); the shift of SD3/Flux (distill.diffusion.flow)
    moves which t a sampler or trainer picks, not this map."""

    name = "flow"

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        self.shift = flow_shift_of(scheduler)

    @property
    def t_max(self) -> int:
        """t = T is sigma = 1, pure noise."""
        return self.num_train_timesteps

    def student_timesteps(self, ts: list) -> torch.Tensor:
        """The student's K timesteps, (K,) float: exactly those FlowMatchEulerDiscreteScheduler(shift)'s
        set_timesteps(K) visits, t_i = T shift(sigma_i), sigma a linear grid from 1 (flow.euler_sigmas), so the
        exported plain scheduler samples where the student was trained; a k-step call visits a subset of them
        when k - 1 divides K - 1 (K = 4: 1, 2 and 4 steps). The recipe gives them rounded to integers."""
        K, T = len(ts), self.num_train_timesteps
        exact = torch.tensor(euler_sigmas(K, self.shift, T) * T, dtype=torch.float32)
        if any(abs(float(a) - float(b)) > 0.5 for a, b in zip(ts, exact)):
            want = [round(float(v)) for v in exact]
            raise RecipeError(f"distill.student_timesteps {list(ts)}: a {K}-step flow student samples with "
                              f"FlowMatchEulerDiscreteScheduler(shift={self.shift:g}) at t = {want} (rounded); use those")
        return exact

    def boundary(self, t, device, dtype=torch.float32):
        """(c_skip, c_out) = (0, 1): x0 = x_t - sigma v is x_t at sigma = 0 already, and the exported
        FlowMatchEulerDiscreteScheduler applies no scalings."""
        n = torch.as_tensor(t).reshape(-1).shape[0]
        return torch.zeros(n, 1, 1, 1, device=device, dtype=dtype), torch.ones(n, 1, 1, 1, device=device, dtype=dtype)

    def solver_grid(self, n: int) -> torch.Tensor:
        """(N + 1,) float: t_k = T shift(k / N), k = 0 .. N, Euler steps uniform in the shifted sigma."""
        if n < 1:
            raise RecipeError(f"consistency.solver_steps must be >= 1, got {n}")
        sigma = shift_sigma(torch.linspace(0, 1, n + 1, dtype=torch.float64), self.shift)
        return (sigma * self.num_train_timesteps).float()

    def alpha_sigma(self, t, device, dtype=torch.float32):
        """(alpha_t, sigma_t) = (1 - t / T, t / T), each (B, 1, 1, 1) (a scalar t broadcasts)."""
        sigma = torch.as_tensor(t, device=device, dtype=torch.float32).reshape(-1, 1, 1, 1) / self.num_train_timesteps
        return (1 - sigma).to(dtype), sigma.to(dtype)

    def add_noise(self, x0, eps, t):
        alpha, sigma = self.alpha_sigma(t, x0.device, x0.dtype)
        return alpha * x0 + sigma * eps

    def x0(self, out, x_t, alpha, sigma):
        return x_t - sigma * out

    def eps(self, out, x_t, alpha, sigma):
        return x_t + alpha * out

    def target(self, x0, eps, t):
        return eps - x0


# prediction type -> constructor taking the noise scheduler
PARAMETERISATIONS: dict[str, Callable[[Any], Any]] = {
    "epsilon": EpsilonPrediction,
    "v_prediction": VPrediction,
    "sample": SamplePrediction,
    "flow": FlowPrediction,
}


def prediction_type_of(scheduler) -> str:
    """The prediction type a scheduler (or its config) integrates: its `prediction_type` on a DDPM-family
    schedule; "flow" on diffusers' flow-matching schedules (FlowMatch* schedulers, which have a `shift` and no
    prediction_type, and DPM-Solver with use_flow_sigmas, which says flow_prediction)."""
    cfg = dict(getattr(scheduler, "config", scheduler))
    name = type(scheduler).__name__ if hasattr(scheduler, "config") else str(cfg.get("_class_name", ""))
    kind = cfg.get("prediction_type")
    if kind == "flow_prediction" or cfg.get("use_flow_sigmas") or (kind is None and ("FlowMatch" in name or "shift" in cfg)):
        return "flow"
    return kind


def parameterisation_for(scheduler):
    kind = prediction_type_of(scheduler)
    if kind not in PARAMETERISATIONS:
        raise ValueError(f"unknown prediction_type {kind!r} (known: {', '.join(PARAMETERISATIONS)})")
    return PARAMETERISATIONS[kind](scheduler)


# ----------------------------------------------------------------------------------------------
# Conditioning


def _config_of(net):
    return getattr(net, "config", None) or net.module.config  # a bare network or a DDP wrapper


@dataclass
class LabelCond:
    """Class labels for a diffusers UNet2DModel; `null_label` (the last class embedding) is the
    unconditional input of classifier-free guidance; None: an unconditional network.
    `LabelCond.of(net)` picks the adapter for the network's class (CONDITIONINGS)."""

    null_label: Optional[int]

    @staticmethod
    def of(net) -> "LabelCond":
        inner = unwrapped(net)  # the network under DDP / torch.compile
        return CONDITIONINGS.get(type(inner).__name__, LabelCond.of_unet)(inner)

    @staticmethod
    def of_unet(net) -> "LabelCond":
        n = getattr(_config_of(net), "num_class_embeds", None)
        return LabelCond(n - 1 if n else None)

    def call(self, net, x_t, t, y, **kw):  # kw: target_timestep of a trajectory network
        return net(x_t, t, class_labels=y, **kw).sample

    def cat(self, a, b):
        return torch.cat([a, b])

    def null(self, y):
        return torch.full_like(y, self.null_label)

    def guidable(self, y) -> bool:
        return y is not None and self.null_label is not None


@dataclass
class DiTLabelCond(LabelCond):
    """Class labels for a diffusers DiTTransformer2DModel: `num_embeds_ada_norm` real classes and the extra
    embedding of its LabelEmbedding, index num_classes, as the null label (Peebles & Xie 2023). The network's own
    label dropout is switched off when it is built or loaded (distill.diffusion.dit): labels are dropped by the
    trainer's seeded draws only. A DiT always takes a label; unconditional calls pass the null label."""

    @staticmethod
    def of_dit(net) -> "DiTLabelCond":
        return DiTLabelCond(_config_of(net).num_embeds_ada_norm)

    def call(self, net, x_t, t, y):
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(x_t.shape[0]) if t.ndim == 0 else t  # the DiT's timestep embedding takes (B,)
        if y is None:
            y = torch.full((x_t.shape[0],), self.null_label, device=x_t.device, dtype=torch.long)
        return net(x_t, timestep=t, class_labels=y).sample


# network class name -> its conditioning adapter (default: LabelCond.of_unet)
CONDITIONINGS: dict[str, Callable[[Any], LabelCond]] = {"DiTTransformer2DModel": DiTLabelCond.of_dit}


# ----------------------------------------------------------------------------------------------
# The Denoiser


class Denoiser:
    def __init__(self, net, param, cond=None):
        self.net, self.param = net, param
        self.cond = cond if cond is not None else LabelCond.of(net)
        self.embeds_guidance = takes_guidance(net)  # w is the network's input, not a combination of two calls

    @classmethod
    def from_scheduler(cls, net, scheduler, cond=None) -> "Denoiser":
        return cls(net, parameterisation_for(scheduler), cond)

    def with_net(self, net) -> "Denoiser":
        """The same parameterisation and conditioning around another network (student, fake score)."""
        return Denoiser(net, self.param, self.cond)

    @property
    def num_train_timesteps(self) -> int:
        return self.param.num_train_timesteps

    @property
    def t_max(self):
        return self.param.t_max

    def student_timesteps(self, ts: list) -> torch.Tensor:
        return self.param.student_timesteps(ts)

    def alpha_sigma(self, t, device, dtype=torch.float32):
        return self.param.alpha_sigma(t, device, dtype)

    def add_noise(self, x0, eps, t):
        return self.param.add_noise(x0, eps, t)

    def out(self, x_t, t, cond=None, guidance: Union[float, torch.Tensor] = 1.0, **net_kw):
        """Raw network output at (x_t, t), guided with weight `guidance` (a number or (B,)) in one batched call:
        out_u + w (out_c - out_u); a network that embeds the guidance scale (distill.diffusion.guided) is given w
        instead. `net_kw` reach the network (a trajectory network's target_timestep)."""
        if self.embeds_guidance:
            return self.cond.call(self.net, x_t, t, cond, guidance_scale=guidance, **net_kw)
        unguided = not torch.is_tensor(guidance) and guidance == 1.0
        if unguided or not self.cond.guidable(cond):
            return self.cond.call(self.net, x_t, t, cond, **net_kw)
        c, u = self.out_cond_uncond(x_t, t, cond, **net_kw)
        w = guidance.view(-1, *[1] * (c.ndim - 1)).to(c.dtype) if torch.is_tensor(guidance) else guidance
        return u + w * (c - u)  # (B, C, H, W)

    def out_cond_uncond(self, x_t, t, cond, **net_kw):
        """(out_c, out_u), both from one batched call (guidance, and targets that use the two apart, as NFSD)."""
        def twice(v):  # a sampler's scalar t stays one
            return torch.cat([v, v]) if torch.is_tensor(v) and v.ndim == 1 else v

        out = self.cond.call(self.net, torch.cat([x_t, x_t]), twice(t), self.cond.cat(cond, self.cond.null(cond)),
                             **{k: twice(v) for k, v in net_kw.items()})
        return out.chunk(2)

    def x0_from(self, x_t, t, out):
        alpha, sigma = self.alpha_sigma(t, x_t.device, x_t.dtype)
        return self.param.x0(out, x_t, alpha, sigma)

    def eps_from(self, x_t, t, out):
        alpha, sigma = self.alpha_sigma(t, x_t.device, x_t.dtype)
        return self.param.eps(out, x_t, alpha, sigma)

    def x0(self, x_t, t, cond=None, guidance: float = 1.0):
        """Clean-sample estimate (B, C, H, W), in the precision the arithmetic with x_t promotes to."""
        return self.x0_from(x_t, t, self.out(x_t, t, cond, guidance))

    def eps(self, x_t, t, cond=None, guidance: float = 1.0):
        return self.eps_from(x_t, t, self.out(x_t, t, cond, guidance))

    def consistency(self, x_t, t, cond=None, guidance: float = 1.0):
        """f(x_t, t) = c_skip(t) x_t + c_out(t) x0(x_t, t) (B, C, H, W): the student as a consistency function."""
        c_skip, c_out = self.param.boundary(t, x_t.device, x_t.dtype)
        return c_skip * x_t + c_out * self.x0(x_t, t, cond, guidance)

    def solver_grid(self, n: int) -> torch.Tensor:
        return self.param.solver_grid(n)

    def jump(self, x_t, t, s, cond=None, guidance: float = 1.0):
        """G(x_t, t, s) = alpha_s x0 + sigma_s eps (B, C, H, W), (x0, eps) read from a trajectory network told its
        target time s (distill.diffusion.trajectory): the DDIM jump from t to s, so G(x_t, t, t) = x_t."""
        out = self.out(x_t, t, cond, guidance, target_timestep=s)
        alpha, sigma = self.alpha_sigma(s, x_t.device, x_t.dtype)
        return alpha * self.x0_from(x_t, t, out) + sigma * self.eps_from(x_t, t, out)

    def target(self, x0, eps, t):
        return self.param.target(x0, eps, t)

    def loss(self, x0, eps, t, cond=None) -> torch.Tensor:
        """Denoising loss ||out(x_t, t) - target||^2, mean over pixels: (B,)."""
        x_t = self.add_noise(x0, eps, t)
        pred = self.cond.call(self.net, x_t, t, cond)
        return (pred.float() - self.target(x0, eps, t).float()).pow(2).flatten(1).mean(1)
