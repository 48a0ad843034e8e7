"""Pictures: sample grids and simple line plots (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torchvision.utils import make_grid, save_image


def save_grid(images: torch.Tensor, path, nrow: int = 10, scale: int = 1) -> Path:
    """images: (B, C, H, W) in [-1, 1]; nearest-neighbour upscaled by `scale` for tiny images."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(x, str(path), nrow=nrow, padding=2, pad_value=1.0)
    return path


def grid_tensor(images: torch.Tensor, nrow: int = 10) -> torch.Tensor:
    return make_grid((images.float().cpu().clamp(-1, 1) + 1) / 2, nrow=nrow, padding=2, pad_value=1.0)


def upscale_for_view(resolution: int) -> int:
    return max(1, 64 // resolution)


def line_plot(series: dict[str, tuple[Sequence[float], Sequence[float]]], path, xlabel: str, ylabel: str,
              title: str = "", logx: bool = False, logy: bool = False, xticks: Optional[Sequence] = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks))
        ax.set_xticklabels([str(x) for x in xticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
