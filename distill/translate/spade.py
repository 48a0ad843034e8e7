"""The SPADE generator and its style encoder (Park et al. 2019, "Semantic Image Synthesis with
Spatially-Adaptive Normalization"; reference code NVlabs/SPADE, models/networks/).

SPADE (Eq. 2): with h the activations of a layer, normalised per channel by a parameter-free norm
(mu_c, sigma_c: batch or instance statistics), and m the label map resized to the layer,
    out = (h - mu_c) / sigma_c * (1 + gamma_c,y,x(m)) + beta_c,y,x(m),
gamma and beta being two 3x3 convolutions of a shared 3x3 conv + ReLU of m (the reference code's
1 + gamma form: gamma = 0 is the identity). The label map never enters as an image to encode:
every normalisation layer sees it, so no normalisation can wash it away (Sec. 3).

Shapes: SPADEGenerator (B, K, H, W) one-hot label maps (+ (B, z_dim) style codes with the encoder)
-> (B, 3, H, W) in [-1, 1]; H = W a multiple of 32 (five upsamplings from H / 32, the paper's
"normal" generator). StyleEncoder (B, 3, H, W) photos -> (mu, logvar), (B, z_dim) each.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import RecipeError

UPSAMPLINGS = 5


def sn(conv: nn.Module) -> nn.Module:
    """Mark a layer for spectral normalisation (applied by `initialize`, after the weights are drawn)."""
    conv.spectral = True
    return conv


def initialize(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The SPADE reference's init (xavier normal, gain 0.02, zero biases), then spectral norm
    (Miyato et al. 2018: W / sigma(W), one power iteration per training forward) on the marked layers."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in list(net.modules()):
        if getattr(m, "spectral", False):
            spectral_norm(m)
    return net

PARAM_FREE_NORMS = {
    "batch": lambda c: nn.BatchNorm2d(c, affine=False),
    "instance": lambda c: nn.InstanceNorm2d(c, affine=False),
}


class SPADE(nn.Module):
    """norm(x) * (1 + gamma(m)) + beta(m), gamma / beta (B, C, H, W) from the label map m."""

    def __init__(self, channels: int, label_nc: int, hidden: int, norm: str):
        super().__init__()
        self.norm = PARAM_FREE_NORMS[norm](channels)
        self.shared = nn.Sequential(nn.Conv2d(label_nc, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")  # the label map at this layer's size
        a = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(a)) + self.beta(a)


class SPADEResBlock(nn.Module):
    """Fig. 4 (right) / App. A: [SPADE, LReLU, conv3x3] x 2 plus a shortcut, learned
    (SPADE, conv1x1) when the channel count changes; spectral norm on the convolutions."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden: int, norm: str):
        super().__init__()
        fmid = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = sn(nn.Conv2d(fin, fmid, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(fmid, fout, 3, padding=1))
        self.norm_0 = SPADE(fin, label_nc, hidden, norm)
        self.norm_1 = SPADE(fmid, label_nc, hidden, norm)
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
            self.norm_s = SPADE(fin, label_nc, hidden, norm)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        xs = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return xs + dx


class SPADEGenerator(ModelMixin, ConfigMixin):
    """App. A, Fig. 11: from the label map downsampled to H/32 (or, with the style encoder, a linear
    map of z) through 7 SPADE residual blocks (16, 16, 16, 8, 4, 2, 1 x ngf channels), upsampling x2
    after blocks 0, 2, 3, 4, 5, then LReLU, conv3x3, tanh. A diffusers model: `SPADEGenerator.from_pretrained(
    run_folder)` loads a finished run's export."""

    CHANNELS = ((16, 16), (16, 16), (16, 16), (16, 8), (8, 4), (4, 2), (2, 1))  # (in, out) x ngf
    UP_AFTER = (0, 2, 3, 4, 5)

    @register_to_config
    def __init__(self, label_nc: int, output_nc: int, crop_size: int, ngf: int = 64, hidden: int = 128,
                 norm: str = "batch", z_dim: Optional[int] = None):
        super().__init__()
        if crop_size % 2**UPSAMPLINGS:
            raise RecipeError(f"data.crop_size={crop_size}: SPADE needs a multiple of {2**UPSAMPLINGS}")
        self.sh, self.z_dim, self.label_nc = crop_size // 2**UPSAMPLINGS, z_dim, label_nc
        if norm == "instance" and self.sh < 2:
            raise RecipeError(f"data.crop_size={crop_size}: instance norm needs 2 x 2 pixels in the first layer "
                              f"(crop_size >= {2 * 2**UPSAMPLINGS}); use translate.spade_norm: batch")
        nf = self.CHANNELS[0][0] * ngf
        self.fc = nn.Linear(z_dim, nf * self.sh * self.sh) if z_dim else nn.Conv2d(label_nc, nf, 3, padding=1)
        self.blocks = nn.ModuleList(SPADEResBlock(a * ngf, b * ngf, label_nc, hidden, norm) for a, b in self.CHANNELS)
        self.conv_img = nn.Conv2d(ngf, output_nc, 3, padding=1)
        self.divisor = 2**UPSAMPLINGS

    def forward(self, seg: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        h, w = seg.shape[-2] // self.divisor, seg.shape[-1] // self.divisor
        if self.z_dim:
            if z is None:  # no style given: z ~ N(0, I) (Sec. 3, multi-modal synthesis)
                z = torch.randn(seg.shape[0], self.z_dim, device=seg.device)
            x = self.fc(z).view(z.shape[0], -1, self.sh, self.sh)  # the training size only
        else:
            x = self.fc(F.interpolate(seg, size=(h, w), mode="nearest"))
        for i, block in enumerate(self.blocks):
            x = block(x, seg)
            if i in self.UP_AFTER:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class StyleEncoder(ModelMixin, ConfigMixin):
    """App. B, Fig. 14: stride-2 conv3x3 (ndf, 2, 4, 8, 8, 8 x ndf) + instance norm + LReLU down to
    4 x 4, then two linear layers to mu and log sigma^2 of q(z | x). A diffusers model
    (`StyleEncoder.from_pretrained(run_folder / "style_encoder")`)."""

    @register_to_config
    def __init__(self, input_nc: int, crop_size: int, ndf: int = 64, z_dim: int = 256):
        super().__init__()
        n = int(math.log2(crop_size // 4))
        if 4 * 2**n != crop_size:
            raise RecipeError(f"data.crop_size={crop_size}: the style encoder needs a power of two >= 8")
        layers, c = [], input_nc
        for i in range(n):
            out = ndf * min(2**i, 8)
            layers += [sn(nn.Conv2d(c, out, 3, stride=2, padding=1)), nn.InstanceNorm2d(out, affine=True),
                       nn.LeakyReLU(0.2)]
            c = out
        self.net = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(c * 16, z_dim)
        self.fc_var = nn.Linear(c * 16, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per sample (Kingma & Welling 2014, App. B):
    -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2). (B, z) each -> (B,)"""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I) from the global generator (seeded per step by the trainer)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


@torch.no_grad()
def folded_state_dict(net: nn.Module) -> dict:
    """net's state dict with its spectral norms folded (weight = W / sigma(W) at the stored power-iteration vectors,
    the eval-mode weight), for the same architecture built without them; net itself is left as it was (removing a
    parametrization from a deep copy would change the class both share)."""
    was_training = net.training
    net.eval()  # eval mode: no power iteration, the stored vectors as they are
    sd = {k: v for k, v in net.state_dict().items() if ".parametrizations." not in f".{k}"}
    for name, m in net.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            sd[f"{name}.weight" if name else "weight"] = m.weight.detach().clone()
    net.train(was_training)
    return sd


def fold_spectral_norm(net: nn.Module) -> nn.Module:
    """In place: spectrally normalised weights become plain weights (W / sigma(W) at the stored
    power-iteration vectors), the same function in eval mode, exportable to ONNX. -> net (eval)"""
    net.eval()
    for m in net.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return net
