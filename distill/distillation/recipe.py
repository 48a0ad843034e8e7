"""`task: distill`: a pixel teacher -> a 1-4 step student. Sections:

  distill:        the teacher, the student's timesteps and the weight of each objective term
  discriminator:  the adversarial term's discriminator (backbone, heads, loss, R1, its optimizer)
  dmd:            the distribution-matching term's fake score network
  consistency:    the consistency-distillation term's solver grid, distance and target network (LCM)
  experimental:   knobs kept for ablations whose results are in docs/results/
  train / data / eval / report: shared sections (distillation defaults differ where noted)

The objective, per student sample x = G(x_s, s) (Sauer et al. 2023, Eq. 3-5; Yin et al. 2024):
  L_G = lambda_adv L_adv(D(x)) + lambda_distill c(t) ||x - sg(teacher_x0(x_t, t))||^2 + lambda_dmd L_dmd
        + lambda_consistency L_CD   (distill.distillation.consistency; Luo et al. 2023, Eq. 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import DataConfig, EvalConfig, RecipeBase, TrainConfig, ranged
from ..errors import RecipeError


@dataclass
class DistillConfig:
    teacher: str = ""  # exported teacher pipeline: folder, Hub id, or shipped:<name>
    # decreasing, within the teacher's schedule (its units); [999]: a 1-step student. A flow teacher's: the grid its
    # FlowMatchEulerDiscreteScheduler visits, rounded: [1000] for 1 step, [1000, 667, 334, 1] for 4 at shift 1
    student_timesteps: list[int] = ranged(factory=lambda: [999, 749, 499, 249], ge=0, nonempty=True)
    # how often each student timestep is drawn (normalised; empty: uniform, as ADD)
    timestep_weights: list[float] = ranged(factory=list, ge=0)
    # multi-step students: the input at student timestep s_i is the student's own i-step sample renoised to s_i, not
    # noised data (DMD2 Sec. 4.5, backward simulation)
    backward_simulation: bool = False
    # the student phase first; the discriminator / fake score phase then trains on its outputs (DMD2's order), which
    # saves the critics' own student pass: false draws fresh student outputs for the critics before the student phase
    student_first: bool = False
    lambda_adv: float = ranged(1.0, ge=0)  # adversarial term
    lambda_distill: float = ranged(2.5, ge=0)  # ADD regression term (Eq. 4-5, ADD)
    lambda_dmd: float = ranged(0.0, ge=0)  # distribution matching (DMD2); > 0 builds the fake score network
    lambda_consistency: float = ranged(0.0, ge=0)  # consistency distillation (LCM); the consistency: section
    distill_weighting: Literal["exponential", "sds", "nfsd"] = "exponential"  # c(t) of the regression term
    # classifier-free guidance of the teacher's x0 (both terms); a guidance-distilled teacher (FLUX.1-dev) takes it
    # as the value of its guidance embedding instead
    teacher_guidance: float = ranged(2.0, ge=0)
    t_min: int = ranged(20, ge=0)  # timesteps at which the teacher judges the student's samples (scheduler units)
    t_max: int = ranged(980, ge=0)
    coverage_classifier: Optional[str] = None  # "digits" | "mnist" | path: coverage check every train.sample_every


@dataclass
class DiscriminatorConfig:
    # "teacher" (LADD) | "fake_score" (DMD2: the fake score's encoder, trained) | "timm:<name>" (ADD, e.g.
    # timm:vit_small_patch14_dinov2)
    backbone: str = "teacher"
    backbone_pretrained: str = "hub"  # "hub" | "none" | path to a weights file (timm backbones)
    # timm blocks (empty: spread over depth), or the SD3 / Flux teacher's transformer blocks (empty: every block)
    backbone_layers: list[int] = ranged(factory=list, ge=0)
    backbone_img_size: int = ranged(224, ge=8)  # timm input size
    loss: str = "hinge"  # registry key in distill.gan.losses.ADV_LOSSES
    learning_rate: float = ranged(1e-4, gt=0)
    steps: int = ranged(1, ge=1)  # discriminator updates per student update
    heads_per_timestep: bool = False  # one set of heads per student timestep, each judging that step's outputs
    head_channels: int = ranged(64, ge=1)
    head_norm: Literal["group", "none"] = "group"  # normalisation after the heads' first conv
    spectral_norm: bool = True
    r1_gamma: float = ranged(1e-5, ge=0)  # R1 on the heads' inputs (real), weight gamma / 2
    r1_every: int = ranged(1, ge=1)  # lazy R1 (StyleGAN2): every r1_every-th step, weighted gamma x r1_every
    t_min: int = ranged(0, ge=0)  # noise levels at which the (teacher / fake score) backbone sees its input
    t_max: int = ranged(500, ge=0)
    augment: str = "color,translation,cutout"  # DiffAugment policy; "" for none


@dataclass
class DMDConfig:
    learning_rate: float = ranged(1e-4, gt=0)  # the fake score network's Adam lr (one update per D update)


@dataclass
class ConsistencyConfig:
    # lcm: the student as a consistency function (Luo et al. 2023); ctm: a trajectory student told its target time
    # (Kim et al. 2024: soft consistency + denoising term; distill.distillation.trajectory), pixel UNet teachers
    kind: Literal["lcm", "ctm"] = "lcm"
    # N: the teacher solver's grid (Denoiser.solver_grid); an exported LCMScheduler samples 1 .. N steps on it
    solver_steps: int = ranged(50, ge=1)
    skip: int = ranged(1, ge=1)  # k: grid intervals per teacher solver step
    distance: Literal["huber", "l2"] = "huber"
    huber_c: float = ranged(1e-3, gt=0)  # the pseudo-Huber c (LCM's training script)
    # mu of the target network theta- (EMA of the student after each update; LCM 0.95); 0: the student itself
    target_decay: float = ranged(0.95, ge=0, lt=1)
    lambda_dsm: float = ranged(1.0, ge=0)  # ctm: weight of the denoising term on the student told s = t
    gamma: float = ranged(0.0, ge=0, le=1)  # ctm: the exported sampler's gamma (0 deterministic jumps, 1 as LCM)
    # lcm: [w_min, w_max] of LCM's w-conditioning (distill.diffusion.guided): w ~ U[w_min, w_max] per sample guides the
    # teacher's solver step and is an input of the student, which then samples at any w in one call per step
    # (`guidance_scale=`); [] (default): the student is distilled at distill.teacher_guidance and takes no w
    guidance_range: list[float] = ranged(factory=list, ge=0)


@dataclass
class ExperimentalConfig:
    # student timesteps whose outputs the adversarial game covers (empty: all)
    disc_timesteps: list[int] = ranged(factory=list, ge=0)
    # backbone fake_score: weight of the discriminator loss in the fake score's update (the heads take 1)
    fake_score_disc_weight: float = ranged(1.0, ge=0)
    # student timesteps whose samples get the ADD regression term (empty: all); the others' samples get none
    distill_timesteps: list[int] = ranged(factory=list, ge=0)
    # the teacher / DMD timestep t of a sample from student timestep s drawn in [t_min, min(t_max, s)] (the same
    # draw rescaled), not [t_min, t_max]: a step that starts at s is judged at noise levels it can change
    teacher_t_below_s: bool = False


@dataclass
class DistillData(DataConfig):
    resolution: Optional[int] = ranged(None, ge=1)  # None: the teacher's; another value is an error
    channels: Optional[int] = ranged(None, ge=1, le=4)


@dataclass
class DistillTrain(TrainConfig):
    adam_beta1: float = ranged(0.0, ge=0, lt=1)  # GAN betas (ADD): every optimizer of the run
    adam_beta2: float = ranged(0.99, ge=0, lt=1)


@dataclass
class ReportConfig:
    """What `distill run` measures after distilling (FID table, latency, grids)."""

    teacher_steps: list[int] = ranged(factory=lambda: [1, 2, 4, 8, 25, 50], ge=1, nonempty=True)
    student_steps: list[int] = ranged(factory=lambda: [1, 2, 4], ge=1, nonempty=True)
    latency_batch: int = ranged(64, ge=1)
    latency_repeats: int = ranged(5, ge=1)


def method_name(r) -> str:
    """The distillation method a recipe's (a DistillationRecipe's) weighted terms make, in words."""
    dc, kind = r.distill, r.consistency.kind
    terms = [(dc.lambda_consistency, {"lcm": "consistency distillation (LCM)", "ctm": "trajectory distillation (CTM)"}[kind]),
             (dc.lambda_dmd, "distribution matching (DMD2)"), (dc.lambda_distill, "score distillation (ADD)"),
             (dc.lambda_adv, "adversarial")]
    return " + ".join(name for weight, name in terms if weight > 0) or "no weighted term"


def check_distill_sections(r, where: str) -> None:
    """Cross-field checks shared by the pixel and latent distillation recipes."""
    dc, disc, ex = r.distill, r.discriminator, r.experimental
    ts = dc.student_timesteps
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise RecipeError(f"{where}: key 'distill.student_timesteps' must be strictly decreasing, got {ts}")
    if dc.timestep_weights and (len(dc.timestep_weights) != len(ts) or sum(dc.timestep_weights) <= 0):
        raise RecipeError(f"{where}: key 'distill.timestep_weights' must hold {len(ts)} non-negative numbers (one per "
                          f"student timestep), not all zero; got {dc.timestep_weights}")
    for sec, lo, hi in (("distill", dc.t_min, dc.t_max), ("discriminator", disc.t_min, disc.t_max)):
        if lo > hi:
            raise RecipeError(f"{where}: key '{sec}.t_min' ({lo}) must be <= '{sec}.t_max' ({hi})")
    for key in ("disc_timesteps", "distill_timesteps"):
        if bad := [s for s in getattr(ex, key) if s not in ts]:
            raise RecipeError(f"{where}: key 'experimental.{key}': {bad} not among distill.student_timesteps {ts}")
    if disc.backbone == "fake_score" and dc.lambda_dmd <= 0:
        raise RecipeError(f"{where}: key 'discriminator.backbone': fake_score needs the fake score network: set "
                          "distill.lambda_dmd > 0")
    if dc.lambda_adv == dc.lambda_distill == dc.lambda_dmd == dc.lambda_consistency == 0:
        raise RecipeError(f"{where}: keys 'distill.lambda_*': every objective term has weight 0; set lambda_adv, "
                          "lambda_distill, lambda_dmd or lambda_consistency > 0")
    if dc.lambda_consistency > 0 and r.consistency.kind == "ctm" and r.consistency.target_decay <= 0:
        raise RecipeError(f"{where}: key 'consistency.target_decay': kind ctm carries both sides to data through the "
                          "target network, which must be an EMA copy: set it > 0 (CTM: 0.999)")
    gr = r.consistency.guidance_range
    if gr and (len(gr) != 2 or gr[0] > gr[1]):
        raise RecipeError(f"{where}: key 'consistency.guidance_range' must be [w_min, w_max] with w_min <= w_max, got {gr}")
    if gr and (dc.lambda_consistency <= 0 or r.consistency.kind != "lcm"):
        raise RecipeError(f"{where}: key 'consistency.guidance_range': the w-conditioned student is trained by the lcm "
                          "consistency term: set distill.lambda_consistency > 0 and consistency.kind lcm")
    if gr and (dc.lambda_adv > 0 or dc.lambda_distill > 0 or dc.lambda_dmd > 0):
        raise RecipeError(f"{where}: key 'consistency.guidance_range': the adversarial, regression and DMD terms judge "
                          "the student at one guidance scale; set lambda_adv, lambda_distill and lambda_dmd to 0")
    if r.consistency.skip > r.consistency.solver_steps:
        raise RecipeError(f"{where}: key 'consistency.skip' ({r.consistency.skip}) must be <= consistency.solver_steps "
                          f"({r.consistency.solver_steps})")
    if dc.lambda_dmd > 0 and dc.distill_weighting == "nfsd":
        raise RecipeError(f"{where}: key 'distill.distill_weighting': the DMD term needs the teacher's x0 estimate; "
                          "use exponential or sds with lambda_dmd > 0")


def sampler_grid_steps(r) -> int:
    """original_inference_steps of the exported student's LCMScheduler: the consistency solver's grid N when the
    consistency term trains the student (1 .. N steps on it), else the number of student timesteps."""
    return r.consistency.solver_steps if r.distill.lambda_consistency > 0 else len(r.distill.student_timesteps)


def check_noise_ranges(r, teacher) -> None:
    """Checks against the loaded teacher (a Denoiser): the noise levels drawn for the teacher and the discriminator
    lie within its schedule ([0, T - 1] discrete, [0, T] flow), and the regression weighting c(t) (and NFSD's
    division by alpha_t) stays finite over [distill.t_min, distill.t_max]."""
    import torch

    from .objectives import DISTILL_WEIGHTINGS

    dc, disc, hi = r.distill, r.discriminator, teacher.t_max
    for sec, top in (("distill", dc.t_max), ("discriminator", disc.t_max)):
        if top > hi:
            raise RecipeError(f"key '{sec}.t_max' ({top}) lies beyond the teacher's schedule [0, {hi}]")
    alpha, sigma = teacher.alpha_sigma(torch.tensor([dc.t_min, dc.t_max]), "cpu")
    c = DISTILL_WEIGHTINGS[dc.distill_weighting](alpha, sigma)
    if not torch.isfinite(c).all() or (dc.distill_weighting == "nfsd" and (alpha == 0).any()):
        raise RecipeError(f"keys 'distill.t_min'/'distill.t_max' ({dc.t_min}, {dc.t_max}): the {dc.distill_weighting} "
                          f"weighting divides by zero at the ends of the teacher's schedule; keep 0 < t < {hi}")


@dataclass
class DistillationRecipe(RecipeBase):
    """The sections of every distillation task; a task adds its data (and its own) sections."""

    distill: DistillConfig = field(default_factory=DistillConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    experimental: ExperimentalConfig = field(default_factory=ExperimentalConfig)
    train: DistillTrain = field(default_factory=DistillTrain)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, where: str) -> None:
        check_distill_sections(self, where)


@dataclass
class DistillRecipe(DistillationRecipe):
    data: DistillData = field(default_factory=DistillData)
    report: ReportConfig = field(default_factory=ReportConfig)
