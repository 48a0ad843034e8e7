"""`task: gan`: a class-conditional GAN trained from scratch, its architecture by name. Sections:

  data:           the shared image section (source, split, resolution, channels, ...)
  generator:      `kind` (distill.gan.architectures.GENERATORS), width, z; the style-based kinds' mapping
                  network and style mixing; one sub-section per kind for what only it reads
  discriminator:  `kind` (distill.gan.architectures.DISCRIMINATORS), width; `projected`: its frozen backbone
  gan:            the adversarial loss, R1 / R2 / WGAN-GP / drift penalties, BigGAN's orthogonal
                  regulariser, WGAN's weight clipping, DiffAugment
  train:          the engine's loop keys, Adam for G and D, the generator's EMA
  eval:           FID/KID/class metrics at each truncation, and the monitor during training

Each paper's loss set-up is its kind's preset (recipes/gan-<kind>-<data>.yaml): DCGAN the non-saturating
loss without penalties; Progressive GAN WGAN-GP (lambda 10) with the drift term (0.001); BigGAN hinge with
orthogonal regularisation (1e-4); StyleGAN2/3 the non-saturating loss with lazy R1, or R3GAN's relativistic
pairing loss with R1 and R2 (`gan.loss: rpgan`, `r1_gamma = r2_gamma`, Huang et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import DataConfig, RecipeBase, ScoringConfig, TrainConfig, ranged
from ..errors import RecipeError


@dataclass
class ProgressiveConfig:
    """Progressive growing (Karras et al. 2018, Sec. 2): read by both progan networks."""

    phase_steps: int = ranged(1000, ge=1)  # steps of each fade-in and of each stabilisation phase (paper: 800k images)


@dataclass
class BigGANConfig:
    shared_dim: int = ranged(128, ge=1)  # the shared class embedding, concatenated to each z chunk (BigGAN: 128)
    attention_resolution: int = ranged(16, ge=0)  # the resolution of the one self-attention block in G and D; 0: none


@dataclass
class StyleGAN3Config:
    """The alias-free synthesis network (Karras et al. 2021), configuration T; the mapping keys are generator's."""

    num_layers: int = ranged(8, ge=2)  # synthesis layers between the Fourier input and toRGB (paper: 14)
    margin_size: int = ranged(10, ge=0)  # pixels of extra margin around each layer's canvas (paper: 10)
    first_cutoff: float = ranged(2.0, gt=0)  # cutoff of the first layer's filter (paper: 2)
    first_stopband: float = ranged(2 ** 2.1, gt=0)  # stopband of the first layer (paper: 2^2.1)
    last_stopband_rel: float = ranged(2 ** 0.3, gt=0)  # last layer's stopband relative to its cutoff (paper: 2^0.3)


@dataclass
class GeneratorConfig:
    kind: str = "stylegan2"  # dcgan | progan | biggan | stylegan2 | stylegan3-t (distill.gan.architectures)
    z_dim: int = ranged(128, ge=1)  # latent z
    w_dim: int = ranged(128, ge=1)  # intermediate latent w (and the class embedding)
    mapping_layers: int = ranged(2, ge=1)  # MLP layers of the mapping network
    mapping_lr_mul: float = ranged(0.01, gt=0)  # learning-rate multiplier of the mapping network (StyleGAN: 0.01)
    width: int = ranged(64, ge=1)  # channels at the output resolution; doubled at each halving
    max_width: int = ranged(256, ge=1)  # channel cap at the low resolutions
    class_conditional: bool = True  # class embedding in the mapping network (and projection in D), when the data has labels
    style_mixing_prob: float = ranged(0.9, ge=0, le=1)  # probability that a sample mixes the styles of two z at a random layer
    w_avg_beta: float = ranged(0.995, ge=0, lt=1)  # EMA decay of the per-class mean w used for truncation
    progan: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    biggan: BigGANConfig = field(default_factory=BigGANConfig)
    stylegan3: StyleGAN3Config = field(default_factory=StyleGAN3Config)


@dataclass
class ProjectedConfig:
    """Projected GAN (Sauer et al. 2021): small heads on a frozen pretrained network's features at several scales."""

    # "teacher:<diffusion teacher folder or shipped:<name>>" (its UNet encoder at timestep `timestep`, LADD's
    # idea) or "timm:<model name>" with local weights; never the evaluation classifier of the scored data
    backbone: str = "teacher:shipped:mnist"
    timestep: int = ranged(10, ge=0, le=999)  # the teacher's timestep of the features: a small noise level


@dataclass
class GANDiscriminatorConfig:
    kind: str = "stylegan2"  # dcgan | progan | biggan | stylegan2 | projected (distill.gan.architectures)
    width: int = ranged(64, ge=1)  # channels at the input resolution; doubled at each halving
    max_width: int = ranged(256, ge=1)  # channel cap at the low resolutions
    mbstd_group: int = ranged(4, ge=0)  # minibatch standard deviation group size; 0: no mbstd layer
    projected: ProjectedConfig = field(default_factory=ProjectedConfig)


@dataclass
class GANConfig:
    # registry key in distill.gan.losses.ADV_LOSSES: ns (StyleGAN2), rpgan (R3GAN's relativistic pairing), hinge, ...
    loss: str = "ns"
    r1_gamma: float = ranged(0.05, ge=0)  # R1 on real images, weight gamma / 2 (Mescheder et al. 2018)
    r2_gamma: float = ranged(0.0, ge=0)  # R2 on generated images, weight gamma / 2 (R3GAN: equal to r1_gamma)
    reg_every: int = ranged(16, ge=1)  # lazy R1/R2: every N-th step with gamma x N (StyleGAN2); 1: every step
    gp_lambda: float = ranged(0.0, ge=0)  # WGAN-GP weight, every step (Gulrajani et al. 2017: 10; Progressive GAN)
    drift: float = ranged(0.0, ge=0)  # drift term eps D(x)^2 on real logits (Progressive GAN: 0.001)
    ortho: float = ranged(0.0, ge=0)  # BigGAN's orthogonal regulariser on G's weights (Brock et al. 2019: 1e-4)
    clip: Optional[float] = ranged(None, gt=0)  # WGAN weight clipping of D into [-c, c] after each D step (0.01)
    augment: str = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"; "": none
    # batch-norm generators (dcgan, biggan): batches of train.batch_size over which the EMA generator's running
    # statistics are re-estimated before the monitor and the export (BigGAN's standing statistics); 0: keep the raw
    # generator's
    standing_stats: int = ranged(16, ge=0)


@dataclass
class GANTrainConfig(TrainConfig):
    learning_rate: float = ranged(2e-3, gt=0)  # the generator's Adam learning rate
    lr_d: Optional[float] = ranged(None, gt=0)  # the discriminator's; None: learning_rate
    adam_beta1: float = ranged(0.0, ge=0, lt=1)  # Adam's beta1 for both players (StyleGAN2 / R3GAN: 0)
    adam_beta2: float = ranged(0.99, ge=0, lt=1)  # Adam's beta2 for both players (StyleGAN2 / R3GAN: 0.99)
    weight_decay: float = ranged(0.0, ge=0)  # AdamW weight decay of both players
    sample_every: int = ranged(500, ge=1)  # class grid of the EMA generator and the monitor (eval.monitor_samples)
    lr_scheduler: str = "constant"  # as train.lr_scheduler of the other tasks (both players)
    lr_warmup_steps: int = ranged(0, ge=0)  # linear warm-up steps
    max_grad_norm: Optional[float] = ranged(None, gt=0)  # gradient clipping of both players; None: none (StyleGAN2)
    ema_decay: float = ranged(0.999, ge=0, lt=1)  # EMA of the generator's weights, sampled, evaluated and exported
    batch_size: int = ranged(64, ge=1)  # global batch of real and of generated images per step


@dataclass
class GANEvalConfig(ScoringConfig):
    num_samples: int = ranged(10000, ge=0)  # class-balanced samples scored at the end; 0: no evaluation
    truncation: list[float] = ranged(factory=lambda: [1.0, 0.7], ge=0, nonempty=True)  # psi values to score
    # EMA samples scored against training images at every train.sample_every (FID, class coverage, diversity
    # for the log and `distill doctor`); 0: none
    monitor_samples: int = ranged(1000, ge=0)


@dataclass
class GANRecipe(RecipeBase):
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: GANDiscriminatorConfig = field(default_factory=GANDiscriminatorConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    train: GANTrainConfig = field(default_factory=GANTrainConfig)
    eval: GANEvalConfig = field(default_factory=GANEvalConfig)

    def validate(self, where: str) -> None:
        from ..discriminator.augment import AUGMENTS
        from .layers import resolution_pyramid
        from .losses import ADV_LOSSES

        try:
            resolution_pyramid(self.data.resolution)
        except ValueError as e:
            raise RecipeError(f"{where}: key 'data.resolution': {e}") from None
        from .architectures import DISCRIMINATORS, GENERATORS

        for sec, table in (("generator", GENERATORS), ("discriminator", DISCRIMINATORS)):
            kind = getattr(self, sec).kind
            if kind not in table:
                raise RecipeError(f"{where}: key '{sec}.kind': unknown kind '{kind}' (choose from {', '.join(table)})")
        if (self.generator.kind == "progan") != (self.discriminator.kind == "progan"):
            raise RecipeError(f"{where}: keys 'generator.kind' / 'discriminator.kind': progressive growing needs "
                              f"both to be progan (got {self.generator.kind} / {self.discriminator.kind})")
        if self.gan.loss not in ADV_LOSSES:
            raise RecipeError(f"{where}: key 'gan.loss': unknown loss '{self.gan.loss}' "
                              f"(choose from {', '.join(ADV_LOSSES)})")
        bad = [p for p in self.gan.augment.split(",") if p and p not in AUGMENTS]
        if bad:
            raise RecipeError(f"{where}: key 'gan.augment': unknown policy {', '.join(bad)} "
                              f"(choose from {', '.join(AUGMENTS)})")
        if self.train.gradient_accumulation_steps != 1:
            raise RecipeError(f"{where}: key 'train.gradient_accumulation_steps': the GAN trainer takes the "
                              "whole batch in one step (use 1)")
        for sec in ("generator", "discriminator"):
            c = getattr(self, sec)
            if c.max_width < c.width:
                raise RecipeError(f"{where}: key '{sec}.max_width' ({c.max_width}) must be >= "
                                  f"'{sec}.width' ({c.width})")

