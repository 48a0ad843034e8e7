"""Recipe sections of pix2pix (Isola et al. 2017), CycleGAN (Zhu et al. 2017) and SPADE (Park et al.
2019): `data:` (the two image domains), `translate:` (networks, losses, fine-tuning, evaluation) and
`train:` (the engine's loop keys plus Adam and the LR policy). No key appears twice, and a key these tasks do not use
(`train.ema_decay`, `train.max_grad_norm`, ...) is an error.

Defaults are the papers' (and the reference code junyanz/pytorch-CycleGAN-and-pix2pix):
Adam 2e-4 with betas (0.5, 0.999), constant LR then linear decay over the second half,
lambda_L1 = 100, lambda_cycle = 10 each way, lambda_identity = 0.5, a 50-image history pool,
70x70 PatchGAN, normal(0, 0.02) initialisation, load 286 -> random crop 256 + horizontal flip.
SPADE's (hinge loss, TTUR: G 1e-4, D 4e-4, betas (0, 0.999)) are set in its recipe.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import EvalConfig, LoopConfig, RecipeBase, ranged
from ..errors import DistillError, RecipeError
from .labels import LabelsConfig


@dataclass
class TranslateDataConfig:
    """`data:` (distill.translate.data)."""

    source: str = ""  # aligned AB folder | A/B or trainA/trainB folder | .npz | Hub dataset name
    dataset_mode: Literal["auto", "aligned", "paired", "unaligned", "npz", "hub"] = "auto"
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    input_nc: int = ranged(3, ge=1, le=3)  # 1: grayscale, 3: colour (grey images in a colour set are converted)
    output_nc: int = ranged(3, ge=1, le=3)
    load_size: int = ranged(286, ge=1)  # resize to this, then random crop `crop_size` (papers: 286 -> 256)
    crop_size: int = ranged(256, ge=1)
    preprocess: Literal["resize_and_crop", "resize"] = "resize_and_crop"  # resize: straight to crop_size
    flip: bool = True  # random horizontal flip (same flip for both halves of a pair)
    max_images: Optional[int] = ranged(None, ge=1)  # keep the first N images of each domain (quick runs)
    hub_columns: list[str] = field(default_factory=lambda: ["imageA", "imageB"])  # Hub datasets


@dataclass
class TranslateConfig:
    """`translate:` networks, losses, fine-tuning and evaluation."""

    # --- networks (distill.translate.networks)
    netG: str = "unet_256"  # unet_<size> | unet_<n>down | resnet_6blocks | resnet_9blocks
    netD: str = "basic"  # basic (70x70 PatchGAN) | n_layers | pixel (1x1)
    n_layers_D: int = ranged(3, ge=1)  # for netD=n_layers
    ngf: int = ranged(64, ge=1)
    ndf: int = ranged(64, ge=1)
    norm: Literal["batch", "instance", "none"] = "batch"
    dropout: bool = True  # pix2pix: on (the noise z); CycleGAN: off
    init_gain: float = ranged(0.02, ge=0)

    # --- losses (distill.translate.losses)
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | wgangp
    lambda_L1: float = ranged(100.0, ge=0)  # Eq. 4, pix2pix
    lambda_A: float = ranged(10.0, ge=0)  # cycle A -> B -> A (Eq. 2-3, CycleGAN)
    lambda_B: float = ranged(10.0, ge=0)  # cycle B -> A -> B
    lambda_identity: float = ranged(0.5, ge=0)  # identity loss weight, relative to lambda_A / lambda_B
    pool_size: int = ranged(50, ge=0)  # history of generated images for CycleGAN's discriminators

    # --- SPADE (Park et al. 2019; distill.translate.spade, multiscale, semantic); ngf / ndf / n_layers_D apply
    labels: LabelsConfig = field(default_factory=LabelsConfig)  # the label maps (input domain)
    spade_norm: Literal["batch", "instance"] = "batch"  # the parameter-free norm before each SPADE (paper: sync BN)
    spade_hidden: int = ranged(128, ge=1)  # channels of the shared conv on the label map (paper: 128)
    num_D: int = ranged(2, ge=1)  # multi-scale discriminator: PatchGANs at 1, 1/2, ... resolution
    lambda_feat: float = ranged(10.0, ge=0)  # discriminator feature matching (pix2pixHD Eq. 4; SPADE)
    lambda_vgg: float = ranged(0.0, ge=0)  # VGG19 perceptual loss (paper 10); needs local torchvision weights
    style_encoder: bool = False  # VAE style encoder: multi-modal outputs and style transfer (Sec. 3, App. B)
    z_dim: int = ranged(256, ge=1)  # the style code's size
    lambda_kld: float = ranged(0.05, ge=0)  # KL(q(z|x) || N(0, I)) weight (App. B)

    # --- fine-tuning (distill.translate.weights)
    init_from: Optional[str] = None  # our checkpoint folder | reference .pth / .safetensors generator | ref folder
    init_d_from: Optional[str] = None  # discriminator weights (.pth / .safetensors)
    freeze: list[str] = field(default_factory=list)  # generator parameter-name prefixes, e.g. model.model.1

    # --- evaluation (distill.translate.evaluate)
    eval_split: str = "test"
    eval_max_images: Optional[int] = ranged(None, ge=1)
    domain_classifier: Optional[str] = None  # e.g. "horse2zebra" (shipped) or a .safetensors path
    sample_count: int = ranged(4, ge=1)  # images in the periodic sample grids
    eval_mode: bool = True  # inference with running BN stats, no dropout (reference --eval); False:
    # the paper's test-time behaviour (batch statistics of each single image, dropout on)


@dataclass
class TranslateTrainConfig(LoopConfig):
    """`train:` the engine's loop keys plus the optimisation (distill.translate.schedule). No
    gradient accumulation (the reference code has none), no EMA, no gradient clipping."""

    learning_rate: float = ranged(2e-4, gt=0)  # both Adams (the discriminators': lr_d when set)
    lr_d: Optional[float] = ranged(None, gt=0)  # None: same as learning_rate
    adam_beta1: float = ranged(0.5, ge=0, lt=1)
    adam_beta2: float = ranged(0.999, ge=0, lt=1)
    # linear: constant, then the reference code's linear decay over the last lr_decay_fraction of max_steps;
    # step: x0.1 every lr_step_size steps; cosine; constant
    lr_scheduler: Literal["linear", "step", "cosine", "constant"] = "linear"
    lr_decay_fraction: float = ranged(0.5, gt=0, le=1)
    lr_step_size: int = ranged(50_000, ge=1)


@dataclass
class TranslateRecipe(RecipeBase):
    data: TranslateDataConfig = field(default_factory=TranslateDataConfig)
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    train: TranslateTrainConfig = field(default_factory=TranslateTrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, where: str) -> None:
        if self.train.gradient_accumulation_steps != 1:
            raise RecipeError(f"{where}: key 'train.gradient_accumulation_steps': pix2pix / CycleGAN train "
                              "without accumulation (use 1)")
        if len(self.data.hub_columns) != 2:
            raise RecipeError(f"{where}: key 'data.hub_columns' must name two columns (A, B), "
                              f"got {self.data.hub_columns}")


# Keys of the former flat `translate:` section that moved to `train:` (lr -> train.learning_rate, ...):
# checkpoints written before the split keep them in state.json's "translate"; rebuilding the networks
# does not need them.
MOVED_TO_TRAIN = {"lr": "learning_rate", "lr_d": "lr_d", "beta1": "adam_beta1", "beta2": "adam_beta2",
                  "lr_policy": "lr_scheduler", "lr_decay_fraction": "lr_decay_fraction",
                  "lr_step_size": "lr_step_size"}


def configs_from_state(state: dict, where: str = "state.json") -> tuple[TranslateConfig, TranslateDataConfig]:
    """(translate, data) sections from a checkpoint's state.json: "translate" and "data" as saved
    now, or a former flat "translate" holding the data and optimisation keys as well."""
    t, d = dict(state["translate"]), dict(state.get("data") or {})
    data_keys = {f.name for f in dataclasses.fields(TranslateDataConfig)}
    for k in list(t):
        if k in data_keys:
            d.setdefault(k, t.pop(k))
        elif k in MOVED_TO_TRAIN:
            t.pop(k)
    known = {f.name for f in dataclasses.fields(TranslateConfig)}
    unknown = sorted(set(t) - known) + sorted(set(d) - data_keys)
    if unknown:
        raise DistillError(f"{where}: unknown translate config keys {', '.join(unknown)} (written by a newer version?)")
    if isinstance(t.get("labels"), dict):
        t["labels"] = LabelsConfig(**t["labels"])
    return TranslateConfig(**t), TranslateDataConfig(**d)
