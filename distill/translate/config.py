"""`translate:` recipe section for pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017).

Defaults are the papers' (and the reference code junyanz/pytorch-CycleGAN-and-pix2pix):
Adam 2e-4 with betas (0.5, 0.999), constant LR then linear decay to 0 over the second half,
lambda_L1 = 100, lambda_cycle = 10 each way, lambda_identity = 0.5, a 50-image history pool,
70x70 PatchGAN, normal(0, 0.02) initialisation, load 286 -> random crop 256 + horizontal flip.
The generic loop settings (max_steps, batch_size, mixed_precision, seed, logging and
checkpoint intervals, resume) come from the recipe's `train:` section.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import EvalConfig, RecipeBase, TrainConfig


@dataclass
class TranslateConfig:
    # --- data (distill.translate.data)
    source: str = ""  # aligned AB folder | A/B or trainA/trainB folder | .npz | Hub dataset name
    dataset_mode: Literal["auto", "aligned", "paired", "unaligned", "npz", "hub"] = "auto"
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    input_nc: int = 3  # 1: grayscale, 3: colour (grey images in a colour set are converted)
    output_nc: int = 3
    load_size: int = 286  # resize to this, then random crop `crop_size` (papers: 286 -> 256)
    crop_size: int = 256
    preprocess: Literal["resize_and_crop", "resize"] = "resize_and_crop"  # resize: straight to crop_size
    flip: bool = True  # random horizontal flip (same flip for both halves of a pair)
    max_images: Optional[int] = None  # keep the first N images of each domain (quick runs)
    hub_columns: list[str] = field(default_factory=lambda: ["imageA", "imageB"])  # Hub datasets

    # --- networks (distill.translate.networks)
    netG: str = "unet_256"  # unet_<size> | unet_<n>down | resnet_6blocks | resnet_9blocks
    netD: str = "basic"  # basic (70x70 PatchGAN) | n_layers | pixel (1x1)
    n_layers_D: int = 3  # for netD=n_layers
    ngf: int = 64
    ndf: int = 64
    norm: Literal["batch", "instance", "none"] = "batch"
    dropout: bool = True  # pix2pix: on (the noise z); CycleGAN: off
    init_gain: float = 0.02

    # --- losses (distill.translate.losses)
    gan_mode: str = "vanilla"  # vanilla | lsgan | hinge | wgangp
    lambda_L1: float = 100.0  # Eq. 4, pix2pix
    lambda_A: float = 10.0  # cycle A -> B -> A (Eq. 2-3, CycleGAN)
    lambda_B: float = 10.0  # cycle B -> A -> B
    lambda_identity: float = 0.5  # identity loss weight, relative to lambda_A / lambda_B
    pool_size: int = 50  # history of generated images for CycleGAN's discriminators

    # --- optimisation (distill.translate.schedule)
    lr: float = 2e-4
    lr_d: Optional[float] = None  # None: same as lr
    beta1: float = 0.5
    beta2: float = 0.999
    lr_policy: Literal["linear", "step", "cosine", "constant"] = "linear"
    lr_decay_fraction: float = 0.5  # linear: decay to 0 over this last fraction of max_steps
    lr_step_size: int = 50_000  # step: multiply by 0.1 every this many steps

    # --- fine-tuning (distill.translate.weights)
    init_from: Optional[str] = None  # our checkpoint folder | reference .pth / .safetensors generator | ref folder
    init_d_from: Optional[str] = None  # discriminator weights (.pth / .safetensors)
    freeze: list[str] = field(default_factory=list)  # generator parameter-name prefixes, e.g. model.model.1

    # --- evaluation (distill.translate.evaluate)
    eval_split: str = "test"
    eval_max_images: Optional[int] = None
    domain_classifier: Optional[str] = None  # e.g. "horse2zebra" (shipped) or a .safetensors path
    sample_count: int = 4  # images in the periodic sample grids
    eval_mode: bool = True  # inference with running BN stats, no dropout (reference --eval); False:
    # the paper's test-time behaviour (batch statistics of each single image, dropout on)


@dataclass
class TranslateRecipe(RecipeBase):
    translate: TranslateConfig = field(default_factory=TranslateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
