"""The projected discriminator (Projected GAN, Sauer et al. 2021; StyleGAN-XL, Sauer et al. 2022): small
trainable heads on a frozen pretrained network's features at several scales, passed through fixed random
projections first:

    F_1..F_K = backbone(x)                    frozen features, K scales (14, 7, 7, 7 px for 28 px MNIST)
    C_k = CCM_k(F_k)                           cross-channel mixing: a fixed random 1x1 conv (Sec. 3.2)
    S_K = C_K;  S_k = C_k + CSM_k(up(S_k+1))   cross-scale mixing: deeper scales upsampled through a fixed
                                               random 3x3 conv and added, U-Net-like (Sec. 3.2)
    D(x, y) = mean_k mean_positions head_k(S_k, y)          (B,)

Pretrained ImageNet networks are not reachable offline, so the backbone is
  teacher:<folder | shipped:<name>>   the diffusion teacher's own encoder (distill.discriminator.backbones:
                                      down blocks + mid block) on the image noised to the fixed timestep
                                      `discriminator.projected.timestep` with one fixed noise draw, so D is a
                                      deterministic function of its input (LADD's idea, Sauer et al. 2024)
  timm:<model>:<weights.safetensors>  a timm network with the user's local weights, images resized to 4x
                                      their resolution; never random features
and never the evaluation classifier of the scored data ("classifier:*" or a shipped classifier file is refused:
a generator trained against the scoring network's features can fool the score without matching the data).

The heads are the ADD discriminator's patch heads (distill.discriminator.heads.PatchHead: spectral norm,
GroupNorm, a class projection per head, Miyato & Koyama 2018); the mean over positions of each head's
projection term is the projection of its pooled features. The paper's losses average hinge terms over the
patch logits; the GAN trainer's losses take one logit per image, the mean of the patch logits.

What is frozen: the backbone's parameters (requires_grad False, kept so by `requires_grad_`, which the
trainer calls on the whole discriminator around the G step, and in eval mode by `train`, so a timm
network's BatchNorm statistics never move), and CCM / CSM, which are buffers. The backbone is left out of
the discriminator's state dict (checkpoints hold heads and projections only; it is rebuilt from its
source), with a fingerprint of its weights in their place: a checkpoint resumed against other backbone
weights is refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..discriminator.backbones import TimmFeatures, teacher_encoder
from ..discriminator.heads import PatchHead
from ..errors import DistillError

PROJECTION_SEED = 36  # the fixed random CCM / CSM weights and the teacher's fixed noise draw
TIMM_UPSCALE = 4  # a timm backbone sees the images resized to this multiple of their resolution


def _random_conv(g: torch.Generator, c_out: int, c_in: int, k: int) -> torch.Tensor:
    """A fixed conv weight, Kaiming-normal for a linear layer (unit gain): std 1 / sqrt(c_in k^2)."""
    return torch.randn(c_out, c_in, k, k, generator=g) / math.sqrt(c_in * k * k)


class RandomProjection(nn.Module):
    """CCM + CSM (Sauer et al. 2021, Sec. 3.2) as buffers: list of (B, C_k, H_k, W_k) backbone features, deepest
    last -> list of (B, out_k, H_k, W_k) mixed features. Nothing here is trained."""

    def __init__(self, channels: list[int], out_channels: list[int], seed: int = PROJECTION_SEED):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.out_channels = list(out_channels)
        for k, (c, o) in enumerate(zip(channels, out_channels)):
            self.register_buffer(f"ccm{k}", _random_conv(g, o, c, 1))
        for k in range(len(channels) - 1):  # S_{k+1} (out_{k+1} channels) -> out_k channels
            self.register_buffer(f"csm{k}", _random_conv(g, out_channels[k], out_channels[k + 1], 3))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = [F.conv2d(f, getattr(self, f"ccm{k}").to(f.dtype)) for k, f in enumerate(feats)]
        out = [mixed[-1]]
        for k in range(len(mixed) - 2, -1, -1):
            up = F.interpolate(out[0], size=mixed[k].shape[-2:], mode="bilinear", align_corners=False)
            out.insert(0, mixed[k] + F.conv2d(up, getattr(self, f"csm{k}").to(up.dtype), padding=1))
        return out


# ----------------------------------------------------------------------------------------------
# backbones by spec


def _refuse_classifier(spec: str, eval_features: str = "") -> None:
    """One-line error when the spec names an evaluation classifier (the scoring network of some data set)."""
    from ..eval.classifier import ASSETS, classifier_path

    why = ("the projected discriminator's features must not be the evaluation classifier's: a generator "
           "trained against the scoring network's features fools the score without matching the data")
    if spec.split(":", 1)[0] == "classifier":
        raise DistillError(f"discriminator.projected.backbone: '{spec}' refused ({why})")
    scored = {p.resolve() for p in ASSETS.glob("classifier-*.safetensors")}
    if eval_features.startswith("classifier:"):
        scored.add(classifier_path(eval_features.split(":", 1)[1]).resolve())
    for part in spec.split(":")[1:]:
        if part and Path(part).expanduser().resolve() in scored:
            raise DistillError(f"discriminator.projected.backbone: '{part}' is an evaluation classifier, refused ({why})")


def _teacher_backbone(arg: str, channels: int, resolution: int, num_classes: int) -> nn.Module:
    from ..diffusion.denoiser import Denoiser
    from ..diffusion.sampling import noise_scheduler_from
    from ..diffusion.teachers import load_teacher, resolve_teacher_path

    path = resolve_teacher_path(arg)
    if not Path(path).is_dir():
        raise DistillError(f"discriminator.projected.backbone: teacher folder '{path}' not found")
    pipe = load_teacher(path)
    net = pipe.unet
    if type(net).__name__ != "UNet2DModel":
        raise DistillError(f"discriminator.projected.backbone: {path} holds a {type(net).__name__}; the projected "
                           "discriminator takes a UNet2DModel teacher's multi-scale encoder")
    cfg = net.config
    for key, want, got in (("channels", cfg.in_channels, channels), ("resolution", cfg.sample_size, resolution)):
        if want != got:
            raise DistillError(f"discriminator.projected.backbone: the teacher {path} has {key} {want}, the data "
                               f"{got} (data.{key})")
    teacher_classes = (cfg.num_class_embeds - 1) if cfg.num_class_embeds else 0
    if teacher_classes and num_classes and teacher_classes != num_classes:
        raise DistillError(f"discriminator.projected.backbone: the teacher {path} knows {teacher_classes} classes, "
                           f"the data has {num_classes}")
    return teacher_encoder(net, Denoiser.from_scheduler(net, noise_scheduler_from(pipe.scheduler.config)))


def _timm_backbone(arg: str, resolution: int) -> nn.Module:
    name, _, weights = arg.partition(":")
    if not name or not weights:
        raise DistillError(f"discriminator.projected.backbone: 'timm:{arg}' needs local weights: "
                           "timm:<model name>:<weights.safetensors> (random features are no projected discriminator)")
    try:
        import timm  # noqa: F401
    except ImportError:
        raise DistillError("discriminator.projected.backbone: timm is not installed (pip install timm)") from None
    if not Path(weights).expanduser().is_file():
        raise DistillError(f"discriminator.projected.backbone: {weights}: backbone weights file not found")
    return TimmFeatures(name, pretrained=str(Path(weights).expanduser()), img_size=TIMM_UPSCALE * resolution)


def projected_backbone(spec: str, channels: int, resolution: int, num_classes: int, eval_features: str = "") -> nn.Module:
    """The frozen feature network named by `discriminator.projected.backbone` (one-line DistillError otherwise)."""
    _refuse_classifier(spec, eval_features)
    kind, _, arg = spec.partition(":")
    if kind == "teacher" and arg:
        return _teacher_backbone(arg, channels, resolution, num_classes)
    if kind == "timm" and arg:
        return _timm_backbone(arg, resolution)
    raise DistillError(f"discriminator.projected.backbone: unknown backbone '{spec}' (use 'teacher:<folder>', "
                       "'teacher:shipped:<name>' or 'timm:<model name>:<weights.safetensors>')")


# ----------------------------------------------------------------------------------------------
# the discriminator


class ProjectedDiscriminator(nn.Module):
    """x (B, C, R, R) in [-1, 1], labels (B,) -> logits (B,), from a frozen `backbone` (a module mapping
    (x, y, t, noise) to feature maps and exposing `channels`, as distill.discriminator.backbones' do).
    `width` / `max_width`: the projected channels at the finest scale, doubled at each coarser one."""

    def __init__(self, backbone: nn.Module, resolution: int, channels: int, num_classes: int = 0, width: int = 64,
                 max_width: int = 256, timestep: int = 10):
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.num_classes, self.timestep = num_classes, timestep
        g = torch.Generator().manual_seed(PROJECTION_SEED + 1)
        self.register_buffer("noise", torch.randn(1, channels, resolution, resolution, generator=g), persistent=False)
        with torch.no_grad():
            feats = self._features(torch.zeros(1, channels, resolution, resolution), None)
        self.scales = [tuple(f.shape[-2:]) for f in feats]
        outs = [min(width * 2 ** k, max_width) for k in range(len(feats))]
        self.projection = RandomProjection([f.shape[1] for f in feats], outs)
        self.heads = nn.ModuleList(PatchHead(c, c, num_classes or None) for c in outs)
        from ..engine.checkpoint import weights_fingerprint

        fp = bytes.fromhex(weights_fingerprint(self.backbone))
        self.register_buffer("backbone_fingerprint", torch.tensor(list(fp), dtype=torch.uint8))
        self._register_state_dict_hook(_drop_backbone)
        self._register_load_state_dict_pre_hook(self._check_fingerprint)
        self.register_load_state_dict_post_hook(_backbone_not_missing)

    @classmethod
    def from_recipe(cls, recipe, num_classes: int) -> "ProjectedDiscriminator":
        d, data = recipe.discriminator, recipe.data
        p = d.projected
        backbone = projected_backbone(p.backbone, data.channels, data.resolution, num_classes, recipe.eval.features)
        return cls(backbone, data.resolution, data.channels, num_classes, d.width, d.max_width, p.timestep)

    # the frozen parts stay frozen and in eval mode whatever the trainer asks of the whole network
    def requires_grad_(self, requires_grad: bool = True) -> "ProjectedDiscriminator":
        super().requires_grad_(requires_grad)
        self.backbone.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> "ProjectedDiscriminator":
        super().train(mode)
        self.backbone.eval()
        return self

    def _features(self, x: torch.Tensor, y: Optional[torch.Tensor]) -> list[torch.Tensor]:
        B = x.shape[0]
        t = torch.full((B,), self.timestep, device=x.device, dtype=torch.long)
        return self.backbone(x, y, t, self.noise.to(x.device, x.dtype).expand(B, -1, -1, -1))

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.num_classes and labels is None:
            raise ValueError("a class-conditional discriminator needs labels")
        feats = self.projection(self._features(x, labels))
        logits = [head(f, labels).flatten(1).mean(1) for head, f in zip(self.heads, feats)]  # each (B,)
        return torch.stack(logits, 1).mean(1)

    def _check_fingerprint(self, state_dict, prefix, *args) -> None:
        saved = state_dict.get(prefix + "backbone_fingerprint")
        if saved is not None and not torch.equal(saved.cpu(), self.backbone_fingerprint.cpu()):
            raise DistillError("the projected discriminator's backbone weights differ from the ones this checkpoint was "
                               "trained with (discriminator.projected.backbone)")


def _drop_backbone(module, state_dict, prefix, local_metadata):
    for k in [k for k in state_dict if k.startswith(prefix + "backbone.")]:
        del state_dict[k]


def _backbone_not_missing(module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not (k.startswith("backbone.") or ".backbone." in k)]


__all__ = ["ProjectedDiscriminator", "RandomProjection", "projected_backbone"]
