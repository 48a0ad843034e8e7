"""Frozen feature networks for the discriminator, a registry keyed by the spec's prefix.

  teacher          the frozen teacher UNet's encoder (down blocks + mid block) applied to the
                   image noised to a sampled level t_D (LADD, Sauer et al. 2024): no extra
                   network, works in latent space too. A DiT teacher gives its tokens after blocks
                   spread over its depth (DiTFeatures; LADD's transformer features).
  fake_score       the encoder of DMD2's fake score network (Yin et al. 2024, Sec. 4.3), *trained*: the
                   discriminator loss reaches it as well as the heads, beside its denoising loss, so
                   the features learn what separates real images from the student's. Needs
                   distill.lambda_dmd > 0 (the network exists only then); single process.
  timm:<name>      any timm model through `forward_intermediates` (ViTs such as DINOv2
                   `vit_small_patch14_dinov2`, ConvNets), features taken at chosen blocks
                   (ADD, Sauer et al. 2023). Weights from a local file, else the Hub; when none
                   can be had the features are random, with a loud warning (a weaker method).

Each backbone maps (images (B, C, H, W) in [-1, 1], labels, noise inputs) to a list of
(B, C_k, H_k, W_k) feature maps and exposes `channels` (list of C_k).
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DistillError


class TeacherFeatures(nn.Module):
    """Encoder features of a diffusers UNet2DModel at noise level t_D: a frozen copy (`frozen`), or the
    network itself, shared and trained (the fake score backbone).
    Mirrors the first half of `UNet2DModel.forward` (time/class embedding, conv_in, down, mid)."""

    def __init__(self, unet, noising, frozen: bool = True):
        super().__init__()
        self.unet = copy.deepcopy(unet).requires_grad_(False).eval() if frozen else unet
        self.noising = noising  # the teacher's Denoiser (anything with add_noise(x0, eps, t))
        boc = list(unet.config.block_out_channels)
        self.channels = boc + [boc[-1]]

    def forward(self, x0: torch.Tensor, y: Optional[torch.Tensor], t: torch.Tensor, noise: torch.Tensor):
        u = self.unet
        x_t = self.noising.add_noise(x0, noise.to(x0.dtype), t)  # (B, C, H, W)
        emb = u.time_embedding(u.time_proj(t).to(x_t.dtype))
        if u.class_embedding is not None:
            if y is None:
                y = torch.full((x0.shape[0],), u.config.num_class_embeds - 1, device=x0.device, dtype=torch.long)
            emb = emb + u.class_embedding(y).to(x_t.dtype)
        h = u.conv_in(x_t)
        feats = []
        for block in u.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
            feats.append(h)
        feats.append(u.mid_block(h, emb))
        return feats


class DiTFeatures(nn.Module):
    """Token features of a diffusers DiTTransformer2DModel at noise level t_D, after blocks spread over its depth
    (a quarter, half, three quarters, all), each as a (B, D, H/p, W/p) map; frozen copy or shared and trained,
    as TeacherFeatures. Mirrors the blocks of `DiTTransformer2DModel.forward`."""

    def __init__(self, net, noising, frozen: bool = True):
        super().__init__()
        self.net = copy.deepcopy(net).requires_grad_(False).eval() if frozen else net
        self.noising = noising
        depth = len(net.transformer_blocks)
        self.layers = sorted({max(0, depth // 4 - 1), max(0, depth // 2 - 1), max(0, 3 * depth // 4 - 1), depth - 1})
        self.channels = [net.inner_dim] * len(self.layers)

    def forward(self, x0: torch.Tensor, y: Optional[torch.Tensor], t: torch.Tensor, noise: torch.Tensor):
        n = self.net
        x_t = self.noising.add_noise(x0, noise.to(x0.dtype), t)  # (B, C, H, W)
        B, p = x0.shape[0], n.config.patch_size
        hw = (x0.shape[-2] // p, x0.shape[-1] // p)
        if y is None:  # the null label (index num_classes)
            y = torch.full((B,), n.config.num_embeds_ada_norm, device=x0.device, dtype=torch.long)
        h = n.pos_embed(x_t)  # (B, N, D)
        feats = []
        for i, block in enumerate(n.transformer_blocks[: self.layers[-1] + 1]):
            h = block(h, timestep=t, class_labels=y)
            if i in self.layers:
                feats.append(h.transpose(1, 2).reshape(B, -1, *hw))  # (B, D, H/p, W/p)
        return feats


# the teacher's network class -> its feature encoder (default: TeacherFeatures, a UNet2DModel's)
ENCODERS = {"DiTTransformer2DModel": DiTFeatures}


def teacher_encoder(net, noising, frozen: bool = True) -> nn.Module:
    return ENCODERS.get(type(net).__name__, TeacherFeatures)(net, noising, frozen)


class TimmFeatures(nn.Module):
    """Intermediate features of a frozen timm model; grey images repeated to RGB, resized to
    `img_size`, normalised with the model's mean/std."""

    def __init__(self, name: str, layers: Optional[list[int]] = None, pretrained: str = "hub", img_size: int = 224):
        super().__init__()
        import timm

        kwargs = {"num_classes": 0}
        if "vit" in name or "dinov2" in name or "deit" in name:
            kwargs["img_size"] = img_size
        try:
            self.model = self._create(timm, name, pretrained, kwargs)
        except DistillError:
            raise
        except Exception as e:
            raise DistillError(f"distill.backbone: cannot build timm model '{name}' ({str(e).splitlines()[0]})") from None
        self.model.requires_grad_(False).eval()
        self.img_size = img_size
        cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1), persistent=False)
        n_blocks = len(getattr(self.model, "blocks", [])) or len(getattr(self.model, "stages", [])) or 4
        self.layers = layers or sorted({max(0, n_blocks // 4 - 1), n_blocks // 2 - 1, 3 * n_blocks // 4 - 1, n_blocks - 1})
        with torch.no_grad():
            probe = self.forward(torch.zeros(1, 3, 8, 8))
        self.channels = [f.shape[1] for f in probe]

    @staticmethod
    def _create(timm, name, pretrained, kwargs):
        if pretrained not in ("hub", "none"):  # a local weights file
            try:
                return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": pretrained}, **kwargs)
            except FileNotFoundError:
                raise DistillError(f"{pretrained}: backbone weights file not found") from None
        if pretrained == "hub":
            try:
                return timm.create_model(name, pretrained=True, **kwargs)
            except Exception as e:
                reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
                warnings.warn(f"distill: no pretrained weights for timm:{name} ({reason[:120]}); the discriminator "
                              f"uses RANDOM features, a different and weaker method. Pass distill.backbone_pretrained="
                              f"<file> to use local weights.", stacklevel=3)
        else:
            warnings.warn(f"distill: timm:{name} with distill.backbone_pretrained=none: the discriminator uses RANDOM "
                          f"features, a different and weaker method.", stacklevel=3)
        return timm.create_model(name, pretrained=False, **kwargs)

    def forward(self, x0: torch.Tensor, y=None, t=None, noise=None):
        x = x0.expand(-1, 3, -1, -1) if x0.shape[1] == 1 else x0
        x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        feats = self.model.forward_intermediates(x, indices=self.layers, intermediates_only=True)
        return [f if f.ndim == 4 else f.transpose(1, 2).unsqueeze(-1) for f in feats]  # (B, C, H, W)


def build_backbone(spec: str, teacher_unet, noising, layers=None, pretrained: str = "hub",
                   img_size: int = 224, fake_score=None) -> nn.Module:
    kind, _, arg = spec.partition(":")
    if kind == "fake_score" and fake_score is None:
        raise DistillError("distill.backbone=fake_score needs the fake score network: set distill.lambda_dmd > 0")
    builders = {
        "teacher": lambda: teacher_encoder(teacher_unet, noising),
        "fake_score": lambda: teacher_encoder(fake_score, noising, frozen=False),
        "timm": lambda: TimmFeatures(arg, layers, pretrained, img_size),
    }
    if kind not in builders or (kind == "timm" and not arg):
        raise DistillError(f"distill.backbone: unknown backbone '{spec}' (use 'teacher', 'fake_score' or 'timm:<model name>')")
    return builders[kind]()
