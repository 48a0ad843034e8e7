"""Discriminator regularisers that change the architecture or the weights:
spectral normalisation, minibatch standard deviation, minibatch discrimination, weight clipping.
(Gradient penalties, R1 and WGAN-GP, are losses: see `distill.gan.losses`.)"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Wrap every Linear/Conv weight W as W / sigma(W), sigma = largest singular value estimated
    by power iteration (Miyato et al. 2018, Eq. 8), so each layer is 1-Lipschitz. In place."""
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            setattr(module, name, spectral_norm(child, n_power_iterations=n_power_iterations))
        else:
            apply_spectral_norm(child, n_power_iterations)
    return module


@torch.no_grad()
def clip_weights(module: nn.Module, c: float = 0.01) -> None:
    """WGAN weight clipping: every parameter into [-c, c] after each critic step (Arjovsky et al.
    2017, Algorithm 1, line 7)."""
    for p in module.parameters():
        p.clamp_(-c, c)


def orthogonal_penalty(module: nn.Module) -> torch.Tensor:
    """BigGAN's orthogonal regulariser (Brock et al. 2019, Eq. 3): sum over the weights W of every
    Linear/Conv layer, viewed as (out, in * k * k), of ||W W^T * (1 - I)||_F^2: it pushes filters towards
    orthogonality without constraining their norms. Embeddings (the shared class embedding) are left out,
    as BigGAN's code does; a spectrally normalised layer is regularised on its raw weight. The caller
    weights it by beta (1e-4). -> scalar"""
    total = torch.zeros(())
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            raw = m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight") else m.weight
            w = raw.reshape(raw.shape[0], -1)  # (out, fan_in)
            gram = w @ w.t()  # (out, out)
            off = gram * (1 - torch.eye(gram.shape[0], device=w.device, dtype=w.dtype))
            total = total.to(w) + off.pow(2).sum()
    return total


class MinibatchStd(nn.Module):
    """Append the batch standard deviation, averaged over features (and groups), as one extra
    feature (Karras et al. 2018, Sec. 3): (B, F) -> (B, F + 1), or as one extra constant channel of
    a feature map (StyleGAN's discriminator epilogue): (B, C, H, W) -> (B, C + 1, H, W)."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, rest = x.shape[0], x.shape[1:]
        g = min(self.group_size, B)
        if B % g:
            g = B
        y = x.reshape(g, -1, *rest)  # (G, B/G, ...): statistics over each group of G samples
        if x.dim() == 2:
            var = y.var(dim=0, unbiased=False)  # (B/G, F)
        else:  # the same population variance; torch's var over dim 0 of a feature map is ~30x slower on CPU
            var = (y - y.mean(dim=0)).square().mean(dim=0)  # (B/G, C, H, W)
        std = (var + 1e-8).sqrt().flatten(1).mean(dim=1)  # (B/G,)
        std = std.repeat(g)  # (B,): sample i belongs to group i % (B/G)
        if x.dim() == 2:
            return torch.cat([x, std[:, None]], dim=1)
        return torch.cat([x, std.view(B, 1, *[1] * (x.dim() - 2)).expand(B, 1, *rest[1:]).to(x.dtype)], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016, Sec. 3.2: M_i = f(x_i) T, (B, n_kernels, kernel_dim);
    c_b(x_i, x_j) = exp(-||M_i,b - M_j,b||_L1); o(x_i)_b = sum_{j != i} c_b(x_i, x_j).
    (B, F) -> (B, F + n_kernels)."""

    def __init__(self, in_features: int, n_kernels: int = 16, kernel_dim: int = 8):
        super().__init__()
        self.n_kernels, self.kernel_dim = n_kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, n_kernels * kernel_dim) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        M = (x @ self.T).reshape(-1, self.n_kernels, self.kernel_dim)  # (B, K, C)
        Mk = M.transpose(0, 1)  # (K, B, C)
        l1 = torch.cdist(Mk, Mk, p=1.0)  # (K, B, B): ||M_i,b - M_j,b||_L1
        o = torch.exp(-l1).sum(dim=2).t() - 1.0  # (B, K), minus the j == i term exp(0)
        return torch.cat([x, o], dim=1)


MINIBATCH_LAYERS = {
    "mbstd": lambda features: MinibatchStd(),
    "mbdisc": lambda features: MinibatchDiscrimination(features),
}
