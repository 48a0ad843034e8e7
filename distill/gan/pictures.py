"""Pictures of a trained generator of any kind: a class grid, a truncation sweep, a latent
interpolation (in w for the style-based kinds, in z for the others) and, for style-based kinds, a
style-mixing grid. Style-based generators draw with the layers' fixed noise (`noise="const"`), so only
the latents change between cells, and all from seeds alone, so a picture can be redrawn exactly.

    class grid        one column per class, one row per seed, at truncation psi
    style mixing      cell (i, j): the coarse styles (layers before the crossover) of row seed i,
                      the fine styles (from the crossover on) of column seed j; the top row and the
                      left column show the two sources unmixed
    truncation sweep  one row per class (one seed), psi from 0 (the class's mean latent) to 1
    interpolation     one row per pair: w (or z, and the label embedding with it for non-style kinds:
                      the label switches half way) moves from (seed a, class c) to (seed b, class c + 1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ..engine.randomness import rng
from ..viz import grid_tensor, save_grid, upscale_for_view
from .architectures import GANGenerator, StyleBased, model_device


def _z(G: GANGenerator, n: int, seed: int, tag: str) -> torch.Tensor:
    return torch.randn(n, G.config.z_dim, generator=rng(seed, tag)).to(model_device(G))


def _classes(G: GANGenerator, n: int) -> Optional[torch.Tensor]:
    """Labels 0, 1, ..., n - 1 (mod the class count), or None for an unconditional generator."""
    k = G.config.num_classes
    return torch.arange(n) % k if k else None


@torch.no_grad()
def class_grid(G: GANGenerator, path, truncation: float = 1.0, per_class: int = 8,
               classes: Optional[Sequence[int]] = None, seed: int = 0) -> Path:
    """Columns: classes (all, or `classes`; 10 columns of an unconditional model), rows: seeds."""
    k = G.config.num_classes
    cols = list(classes) if classes is not None else (list(range(k)) if k else [0] * 10)
    labels = torch.tensor(cols).repeat(per_class) if k else None
    x = G(_z(G, len(cols) * per_class, seed, "class-grid"), labels, truncation=truncation)
    return save_grid(x.float(), path, nrow=len(cols), scale=upscale_for_view(x.shape[-1]))


def default_crossover(G: StyleBased) -> int:
    """The first layer of the upper half of the styles: coarse = the low-resolution layers."""
    return G.num_ws // 2


@torch.no_grad()
def style_mixing_grid(G: StyleBased, path, n: int = 5, crossover: Optional[int] = None,
                      truncation: float = 1.0, seed: int = 0) -> Path:
    """(n + 1) x (n + 1) cells; see the module docstring. Row sources take classes 0..n-1, column
    sources classes n..2n-1 (mod the class count)."""
    c = default_crossover(G) if crossover is None else crossover
    y = _classes(G, 2 * n)
    ws = G.mapping(_z(G, 2 * n, seed, "style-mixing"), y, truncation=truncation)  # (2n, L, w_dim)
    rows, cols = ws[:n], ws[n:]
    mixed = torch.cat([rows[:, None, :c].expand(-1, n, -1, -1), cols[None, :, c:].expand(n, -1, -1, -1)], dim=2)
    cells = G.synthesis(mixed.reshape(n * n, G.num_ws, -1))  # (n*n, C, H, W), row-major
    src_rows, src_cols = G.synthesis(rows), G.synthesis(cols)
    blank = torch.ones_like(src_rows[:1])  # white corner
    body = torch.cat([src_rows[:, None], cells.reshape(n, n, *cells.shape[1:])], dim=1)  # (n, n + 1, ...)
    grid = torch.cat([torch.cat([blank, src_cols])[None], body]).reshape(-1, *cells.shape[1:])
    return _figure(grid.float(), path, n + 1, f"style mixing: coarse styles (layers < {c} of {G.num_ws}) from "
                   "the left column, fine styles from the top row")


@torch.no_grad()
def truncation_sweep(G: GANGenerator, path, psis: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                     rows: Optional[int] = None, seed: int = 0) -> Path:
    """One row per class (10 rows unconditional), one column per psi, the same z along a row."""
    n = rows or (G.config.num_classes or 10)
    y = _classes(G, n)
    z = _z(G, n, seed, "truncation")
    x = torch.stack([G(z, y, truncation=float(p)) for p in psis], dim=1)  # (n, P, C, H, W)
    return _figure(x.reshape(-1, *x.shape[2:]).float(), path, len(psis),
                   "truncation: psi = " + ", ".join(f"{p:g}" for p in psis) + " (left to right)")


@torch.no_grad()
def interpolation(G: GANGenerator, path, rows: int = 4, steps: int = 8, seed: int = 0) -> Path:
    """Row i: from (z_a, class i) to (z_b, class i + 1), `steps` columns: w = lerp(w_a, w_b, t) for a
    style-based generator; z = lerp(z_a, z_b, t), the label switching at t = 0.5, for the others."""
    ya, yb = _classes(G, rows), (_classes(G, rows + 1)[1:] if G.config.num_classes else None)
    za, zb = _z(G, rows, seed, "interp-a"), _z(G, rows, seed, "interp-b")  # (rows, z_dim)
    t = torch.linspace(0, 1, steps, device=za.device)
    if isinstance(G, StyleBased):
        wa, wb = G.mapping(za, ya), G.mapping(zb, yb)  # (rows, L, w_dim)
        ws = wa[:, None] + t[None, :, None, None] * (wb - wa)[:, None]  # (rows, S, L, w_dim)
        x = G.synthesis(ws.reshape(rows * steps, G.num_ws, -1))
        what = "w"
    else:
        z = za[:, None] + t[None, :, None] * (zb - za)[:, None]  # (rows, S, z_dim)
        y = None if ya is None else torch.where(t[None, :].cpu() < 0.5, ya[:, None], yb[:, None]).reshape(-1)
        x = G(z.reshape(rows * steps, -1), y)
        what = "z (the label switches half way)"
    return _figure(x.float(), path, steps, f"interpolation in {what} (each row: one class to the next)")


def _figure(images: torch.Tensor, path, nrow: int, title: str) -> Path:
    """A titled PNG of a grid of (N, C, H, W) images in [-1, 1]."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = grid_tensor(images.clamp(-1, 1), nrow=nrow)  # (3, H', W') in [0, 1]
    h, w = grid.shape[1:]
    width = max(4.0, min(8.0, w / 60))  # inches
    lines = textwrap.wrap(title, int(width * 17))
    fig, ax = plt.subplots(figsize=(width, width * h / w + 0.18 * len(lines) + 0.1), dpi=120)
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    ax.set_title("\n".join(lines), fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_pictures(G: GANGenerator, out_dir, seed: int = 0) -> dict[str, Path]:
    """The truncation sweep, the interpolation and, for a style-based generator, the style-mixing grid,
    into `out_dir`."""
    out = Path(out_dir)
    pics = {"style_mixing": style_mixing_grid(G, out / "style-mixing.png", seed=seed)} if isinstance(G, StyleBased) else {}
    return {**pics, "truncation": truncation_sweep(G, out / "truncation.png", seed=seed),
            "interpolation": interpolation(G, out / "interpolation.png", seed=seed)}
