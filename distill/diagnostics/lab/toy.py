"""Toy datasets (mixtures of isotropic Gaussians) and the mode counter.

Datasets: `gmm1d` (1-D, two modes at -2 and 2), `ring` (8 modes on a circle of radius 2,
std 0.02: the ring of Metz et al. 2017, "Unrolled GANs", Sec. 3.1) and `grid` (5 x 5 modes at
{-4, -2, 0, 2, 4}^2, std 0.05, as in PacGAN, Lin et al. 2018).

Mode counter (PacGAN, Lin et al. 2018, Sec. 5): a generated sample is *high quality* if it lies
within 3 standard deviations of some centre; a mode is *captured* if at least `min_count` of
`n` samples (20 of 2500 by default, i.e. 0.8 %) fall within 3 std of its centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...errors import DistillError


@dataclass(frozen=True)
class ToyDataset:
    name: str
    centers: torch.Tensor  # (K, D)
    std: float

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    @property
    def n_modes(self) -> int:
        return self.centers.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples, uniform over the modes. -> (n, D)"""
        idx = torch.randint(0, self.n_modes, (n,), generator=generator)
        return self.centers[idx] + self.std * torch.randn(n, self.dim, generator=generator)


def _ring(k: int = 8, radius: float = 2.0) -> torch.Tensor:
    t = torch.arange(k, dtype=torch.float32) * (2 * math.pi / k)
    return torch.stack([radius * torch.cos(t), radius * torch.sin(t)], dim=1)  # (k, 2)


def _grid(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    v = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(v, v)  # (side^2, 2)


DATASETS = {
    "gmm1d": lambda: ToyDataset("gmm1d", torch.tensor([[-2.0], [2.0]]), 0.1),
    "ring": lambda: ToyDataset("ring", _ring(), 0.02),
    "grid": lambda: ToyDataset("grid", _grid(), 0.05),
}


def get_dataset(name: str) -> ToyDataset:
    if name not in DATASETS:
        raise DistillError(f"unknown toy dataset '{name}' (choose from {', '.join(DATASETS)})")
    return DATASETS[name]()


@dataclass
class ModeStats:
    modes: int  # modes captured
    n_modes: int
    hq_fraction: float  # fraction of samples within 3 std of some centre
    counts: list[int]  # high-quality samples per mode

    def as_metrics(self) -> dict:
        return {"modes": self.modes, "modes_total": self.n_modes, "hq_fraction": round(self.hq_fraction, 4)}


def count_modes(samples: torch.Tensor, dataset: ToyDataset, min_count: int | None = None,
                n_std: float = 3.0) -> ModeStats:
    """samples: (N, D). A mode is captured when >= min_count samples (default: 0.8 % of N, i.e.
    20 of 2500) are within n_std * std of its centre."""
    samples = samples.detach().float().reshape(samples.shape[0], -1)
    if min_count is None:
        min_count = max(1, round(0.008 * samples.shape[0]))
    d = torch.cdist(samples, dataset.centers)  # (N, K)
    dmin, nearest = d.min(dim=1)  # (N,)
    hq = dmin <= n_std * dataset.std  # modes are >= 6 std apart, so a sample is near one centre at most
    counts = torch.bincount(nearest[hq], minlength=dataset.n_modes)  # (K,)
    return ModeStats(int((counts >= min_count).sum()), dataset.n_modes,
                     float(hq.float().mean()), counts.tolist())
