"""Pictures: sample grids and simple line plots (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torchvision.utils import make_grid, save_image


def save_grid(images: torch.Tensor, path, nrow: int = 10, scale: int = 1,
              column_names: Optional[Sequence[str]] = None) -> Path:
    """images: (B, C, H, W) in [-1, 1]; nearest-neighbour upscaled by `scale` for tiny images. `column_names`:
    a caption over each column (the class names of a grid with one column per class)."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    column_names = telling_names(column_names)
    if not column_names:
        save_image(x, str(path), nrow=nrow, padding=2, pad_value=1.0)
        return path
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=1.0)
    captioned(grid, column_names[:nrow], x.shape[-1] + 2).save(path)
    return path


def telling_names(names: Optional[Sequence]) -> Optional[list[str]]:
    """Class names worth showing: None where there are none or they only restate the label ids ("0", "1", ...)."""
    if not names or all(str(n) == str(i) for i, n in enumerate(names)):
        return None
    return [str(n) for n in names]


def classes_line(names: Sequence[str]) -> str:
    """A report's line naming the classes, in the order of every grid's columns."""
    return "Classes (grid columns, left to right): " + ", ".join(f"{i} {n}" for i, n in enumerate(names)) + "."


def captioned(grid: torch.Tensor, names: Sequence[str], column_width: int):
    """A PIL image of `grid` (C, H, W in [0, 1]) under a white strip naming each column (cut to its width)."""
    from PIL import Image, ImageDraw, ImageFont

    body = Image.fromarray(grid.mul(255).add_(0.5).clamp_(0, 255).byte().permute(1, 2, 0).numpy().squeeze())
    font = ImageFont.load_default()
    strip = 14
    out = Image.new(body.mode, (body.width, body.height + strip), "white")
    out.paste(body, (0, strip))
    draw = ImageDraw.Draw(out)
    chars = max(1, column_width // 6)  # the default bitmap font is about 6 px per character
    for i, name in enumerate(names):
        draw.text((2 + i * column_width, 1), name[:chars], fill="black", font=font)
    return out


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
