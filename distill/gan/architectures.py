"""The GAN architectures by name: `generator.kind` and `discriminator.kind` of `task: gan`.

Each kind is a class in its own module, found through a registry of import paths (so a kind's module
is imported only when used). What the trainer, the evaluation, the pictures and the export need of
a generator is the `GANGenerator` protocol; of a discriminator, `GANDiscriminator`. Progressive
growing is the optional `Growing` protocol: the trainer calls `set_step(step)` on both networks
before each step, so the growth stage is a function of the step and resumes exactly.

    generator.kind      dcgan | progan | biggan | stylegan2 | stylegan3-t
    discriminator.kind  dcgan | progan | biggan | stylegan2 | projected

Truncation, for every kind, moves a latent towards its mean by psi (Karras et al. 2019, Eq. 3 of
Sec. 6): the per-class mean w for the style-based generators, the mean z (0) for the others
(`truncate_z`), so psi = 1 is no truncation and psi = 0 the mean sample of each class.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Optional, Protocol, Union, runtime_checkable

import torch

from ..errors import DistillError

Tensor = torch.Tensor
Draws = dict[str, Union[Tensor, list[Tensor]]]  # the random tensors of one training forward besides z

GENERATORS: dict[str, str] = {  # kind -> "module:Class" (relative to distill.gan)
    "dcgan": "dcgan:DCGANGenerator",
    "progan": "progan:ProGANGenerator",
    "biggan": "biggan:BigGANGenerator",
    "stylegan2": "generator:StyleGAN2Generator",
    "stylegan3-t": "stylegan3:StyleGAN3Generator",
}
DISCRIMINATORS: dict[str, str] = {
    "dcgan": "dcgan:DCGANDiscriminator",
    "progan": "progan:ProGANDiscriminator",
    "biggan": "biggan:BigGANDiscriminator",
    "stylegan2": "discriminator:ResidualDiscriminator",
    "projected": "projected:ProjectedDiscriminator",
}


@runtime_checkable
class GANGenerator(Protocol):
    """A class-conditional generator exported with diffusers' `save_pretrained` (config.json naming the class
    + safetensors); `config` holds at least resolution, channels, num_classes and z_dim."""

    config: Any

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "GANGenerator":
        """Built from a `task: gan` recipe (data, generator sections); `num_classes` 0: unconditional."""

    def forward(self, z: Tensor, class_labels=None, truncation: float = 1.0, draws: Optional[Draws] = None,
                update_stats: bool = False) -> Tensor:
        """z (B, z_dim), labels (B,) -> images (B, C, R, R), values ~[-1, 1]. Without `draws`, deterministic
        given z (sampling); a training step passes `draws` (training_draws) and `update_stats` (running
        statistics such as w_avg). Training goes through forward so that DDP's gradient hooks see it."""

    def training_draws(self, batch: int, generator: torch.Generator) -> Draws:
        """Every random tensor of one training forward besides z (noise maps, mixing latents, ...), on CPU."""


@runtime_checkable
class GANDiscriminator(Protocol):
    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "GANDiscriminator":
        """Built from a `task: gan` recipe (data, discriminator sections); frozen parts have requires_grad False."""

    def forward(self, x: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,)."""


@runtime_checkable
class Growing(Protocol):
    """A network whose architecture changes with the training step (Progressive GAN's growth and fade-in)."""

    def set_step(self, step: int) -> None: ...


@runtime_checkable
class StyleBased(Protocol):
    """A generator with a mapping network and a synthesis network (style mixing, w interpolation pictures)."""

    num_ws: int

    def mapping(self, z: Tensor, class_labels=None, truncation: float = 1.0, update_w_avg: bool = False) -> Tensor: ...

    def synthesis(self, ws: Tensor, noise: Any = "const") -> Tensor: ...


def _resolve(table: dict[str, str], kind: str, what: str):
    if kind not in table:
        raise DistillError(f"unknown {what} kind '{kind}' (choose from {', '.join(table)})")
    module, cls = table[kind].split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def generator_class(kind: str):
    return _resolve(GENERATORS, kind, "generator")


def discriminator_class(kind: str):
    return _resolve(DISCRIMINATORS, kind, "discriminator")


def check_labels(class_labels, num_classes: int, batch: int, device) -> Optional[Tensor]:
    """Class labels as a (B,) long tensor on `device` (None for an unconditional generator); one-line errors."""
    if not num_classes:
        return None
    if class_labels is None:
        raise DistillError(f"this generator is class-conditional ({num_classes} classes): give class labels")
    y = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1).to(device)
    if y.numel() != batch:
        raise DistillError(f"{y.numel()} class labels for {batch} latents")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DistillError(f"class labels must lie in [0, {num_classes - 1}], got {int(y.min())}..{int(y.max())}")
    return y


def truncate_z(z: Tensor, psi: float) -> Tensor:
    """Truncation towards the mean latent 0 of a z-input generator: z' = 0 + psi (z - 0). (B, z_dim)"""
    return z if psi == 1.0 else z * psi


def model_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# ----------------------------------------------------------------------------------------------
# Folders


def exported_generator(path) -> Path:
    """The generator folder `path` stands for: `path` itself (an exported generator; a `task: gan` run folder,
    where the export sits), or its `generator/` when only that holds a config.json (a run folder of the
    earlier layout)."""
    p = Path(path)
    return p / "generator" if not (p / "config.json").is_file() and (p / "generator" / "config.json").is_file() else p


def generator_kind_of(path) -> Optional[str]:
    """The kind of the generator exported in folder `path` (its config.json's class name), or None."""
    cfg = exported_generator(path) / "config.json"
    if not cfg.is_file():
        return None
    try:
        name = json.loads(cfg.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return next((k for k, v in GENERATORS.items() if v.split(":")[1] == name), None)


def is_generator_folder(path) -> bool:
    """Whether `path` holds an exported GAN generator of any kind."""
    return generator_kind_of(path) is not None


def load_generator(path):
    """`<Class>.from_pretrained(path)` in eval mode for any kind; a damaged folder is a one-line DistillError."""
    kind = generator_kind_of(path)
    if kind is None:
        names = ", ".join(v.split(":")[1] for v in GENERATORS.values())
        raise DistillError(f"{path}: not a GAN generator folder (no config.json naming one of {names})")
    try:
        return generator_class(kind).from_pretrained(str(exported_generator(path))).eval()
    except DistillError:
        raise
    except Exception as e:  # OSError, safetensors errors, shape mismatches: one line naming the folder
        text = str(e).strip().splitlines()
        raise DistillError(f"{path}: cannot load the generator ({text[0][:200] if text else type(e).__name__})") from None
