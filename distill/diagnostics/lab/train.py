"""The GAN lab loop: a small MLP generator and discriminator on a toy mixture, any loss from
`distill.gan.losses.ADV_LOSSES`, any combination of regularisers, the mode counter tracked over
steps, plots and a metrics.jsonl in the output folder.

Defaults are a cheaper variant of the ring-of-8 setup of Metz et al. 2017 (Unrolled GANs,
App. A: ReLU MLPs, 128 hidden units, Adam beta1 = 0.5, lr 1e-4, batch 512): 2 hidden layers of 64
units in G and D, batch 128, Adam(0.5, 0.999) with lr 1e-3 for G so that a run of 10k steps takes
about 11 s on one CPU thread. `benchmarks/gan_lab.py` measures these defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import yaml
from torch import nn

from ...errors import DistillError
from ...engine.optim import grad_norm
from ...gan.losses import ADV_LOSSES, drift_penalty, gradient_penalty, r1_penalty, r2_penalty
from ...gan.regularizers import MINIBATCH_LAYERS, apply_spectral_norm, clip_weights, orthogonal_penalty
from ...engine.run_dir import MetricsLog
from .toy import DATASETS, ToyDataset, count_modes, get_dataset


@dataclass
class LabConfig:
    dataset: str = "ring"  # key of distill.diagnostics.lab.toy.DATASETS
    loss: str = "ns"  # key of ADV_LOSSES, or an alias in LOSS_ALIASES (wgan-gp, wgan-clip, r3gan)
    reg: list[str] = field(default_factory=list)  # keys of REGULARIZERS, e.g. ["r1"], ["sn", "mbstd"]
    steps: int = 5000
    seed: int = 0
    lr: float = 1e-3  # generator learning rate
    d_lr_mult: float = 1.0  # discriminator lr = lr * d_lr_mult
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    z_dim: int = 16
    hidden: int = 64
    g_layers: int = 2  # hidden layers of G
    d_layers: int = 2  # hidden layers of D
    d_steps: int = 1  # discriminator steps per generator step
    r1_gamma: float = 1.0  # loss_d += gamma / 2 * R1
    r2_gamma: Optional[float] = None  # loss_d += gamma / 2 * R2; None: r1_gamma (R3GAN uses one gamma)
    gp_lambda: float = 10.0  # loss_d += lambda * GP
    clip: float = 0.01  # weight clipping range
    drift: float = 0.001  # loss_d += drift * D(x)^2 (Progressive GAN)
    ortho: float = 1e-4  # loss_g += ortho * R_ortho(G) (BigGAN)
    eval_every: int = 100
    eval_samples: int = 2500
    min_count: int = 20  # samples within 3 std for a mode to count as captured
    out: Optional[str] = None  # output folder; None: nothing written
    plots: bool = True
    progress: bool = True


# r3gan: the relativistic pairing loss with R1 and R2 (Huang et al. 2024)
# progan: WGAN-GP with the drift term (Karras et al. 2018); biggan: hinge, spectral norm in D, orthogonal G (Brock et al.)
LOSS_ALIASES = {"wgan-gp": ("wgan", ["gp"]), "wgan-clip": ("wgan", ["clip"]), "minimax": ("saturating", []),
                "r3gan": ("rpgan", ["r1", "r2"]), "progan": ("wgan", ["gp", "drift"]),
                "biggan": ("hinge", ["sn", "ortho"])}


@dataclass
class Regularizer:
    """Hooks of one regulariser; any may be None."""

    build: Optional[Callable[[nn.Module], nn.Module]] = None  # changes D after construction
    minibatch: Optional[str] = None  # key of MINIBATCH_LAYERS inserted after D's first layer
    penalty: Optional[Callable] = None  # (cfg, D, real, real_logits, fake, fake_logits) -> (B,), logged under its name
    weight: Callable[[LabConfig], float] = lambda cfg: 1.0  # loss_d += weight * penalty.mean()
    after_d_step: Optional[Callable[[LabConfig, nn.Module], None]] = None
    g_penalty: Optional[Callable[[nn.Module], torch.Tensor]] = None  # G -> scalar; loss_g += weight * it


REGULARIZERS: dict[str, Regularizer] = {
    "none": Regularizer(),
    # Mescheder et al. 2018, Eq. 9: gamma / 2 * E ||grad D(x)||^2 on real data
    "r1": Regularizer(penalty=lambda cfg, D, x, rl, f, fl: r1_penalty(rl, x), weight=lambda cfg: 0.5 * cfg.r1_gamma),
    # Roth et al. 2017; R3GAN Sec. 2.2: gamma / 2 * E ||grad D(G(z))||^2 on generated data
    "r2": Regularizer(penalty=lambda cfg, D, x, rl, f, fl: r2_penalty(fl, f),
                      weight=lambda cfg: 0.5 * (cfg.r1_gamma if cfg.r2_gamma is None else cfg.r2_gamma)),
    # Gulrajani et al. 2017, Eq. 3: lambda * E (||grad D(x_hat)|| - 1)^2
    "gp": Regularizer(penalty=lambda cfg, D, x, rl, f, fl: gradient_penalty(D, x, f), weight=lambda cfg: cfg.gp_lambda),
    "clip": Regularizer(after_d_step=lambda cfg, D: clip_weights(D, cfg.clip)),
    # Karras et al. 2018, App. A.1: eps_drift * E D(x)^2
    "drift": Regularizer(penalty=lambda cfg, D, x, rl, f, fl: drift_penalty(rl), weight=lambda cfg: cfg.drift),
    # Brock et al. 2019, Eq. 3: beta * sum_W ||W W^T * (1 - I)||_F^2 over G's weights
    "ortho": Regularizer(g_penalty=orthogonal_penalty, weight=lambda cfg: cfg.ortho),
    "sn": Regularizer(build=apply_spectral_norm),
    "mbstd": Regularizer(minibatch="mbstd"),
    "mbdisc": Regularizer(minibatch="mbdisc"),
}


def resolve(cfg: LabConfig) -> tuple[str, list[str]]:
    """Check names; expand loss aliases. -> (loss name, regulariser names)"""
    loss, extra = LOSS_ALIASES.get(cfg.loss, (cfg.loss, []))
    if loss not in ADV_LOSSES:
        raise DistillError(f"unknown loss '{cfg.loss}' (choose from {', '.join([*ADV_LOSSES, *LOSS_ALIASES])})")
    regs = [r for r in [*cfg.reg, *extra] if r != "none"]
    for r in regs:
        if r not in REGULARIZERS:
            raise DistillError(f"unknown regulariser '{r}' (choose from {', '.join(REGULARIZERS)})")
    if cfg.dataset not in DATASETS:
        raise DistillError(f"unknown toy dataset '{cfg.dataset}' (choose from {', '.join(DATASETS)})")
    if sum(REGULARIZERS[r].minibatch is not None for r in regs) > 1:
        raise DistillError("choose at most one minibatch layer (mbstd or mbdisc)")
    for name in ("steps", "batch_size", "eval_every", "eval_samples", "d_steps"):
        if getattr(cfg, name) <= 0:
            raise DistillError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.d_lr_mult <= 0:
        raise DistillError("--lr and --d-lr-mult must be positive")
    return loss, list(dict.fromkeys(regs))


def _mlp(sizes: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return layers


def build_generator(cfg: LabConfig, dim: int) -> nn.Module:
    """z (B, z_dim) -> x (B, dim)."""
    return nn.Sequential(*_mlp([cfg.z_dim] + [cfg.hidden] * cfg.g_layers + [dim]))


def build_discriminator(cfg: LabConfig, dim: int, regs: list[str]) -> nn.Module:
    """x (B, dim) -> logits (B,). An optional minibatch layer after the first hidden layer."""
    mb = next((REGULARIZERS[r].minibatch for r in regs if REGULARIZERS[r].minibatch), None)
    h = cfg.hidden
    layers: list[nn.Module] = [nn.Linear(dim, h), nn.ReLU()]
    if mb:
        layer = MINIBATCH_LAYERS[mb](h)
        layers.append(layer)
        h_in = h + (1 if mb == "mbstd" else layer.n_kernels)
    else:
        h_in = h
    layers += _mlp([h_in] + [h] * (cfg.d_layers - 1) + [1])
    D = nn.Sequential(*layers, nn.Flatten(0))
    for r in regs:
        if REGULARIZERS[r].build:
            D = REGULARIZERS[r].build(D)
    return D


@dataclass
class LabResult:
    rows: list[dict]  # evaluation rows, as written to metrics.jsonl
    final_samples: torch.Tensor  # (eval_samples, D)
    snapshots: dict[int, torch.Tensor]  # step -> samples, for the sample plot
    out: Optional[Path]


def train_lab(cfg: LabConfig) -> LabResult:
    loss_name, regs = resolve(cfg)
    adv = ADV_LOSSES[loss_name]
    ds: ToyDataset = get_dataset(cfg.dataset)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    G = build_generator(cfg, ds.dim)
    D = build_discriminator(cfg, ds.dim, regs)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr * cfg.d_lr_mult, betas=(cfg.beta1, cfg.beta2))
    penalties = [(r, REGULARIZERS[r]) for r in regs if REGULARIZERS[r].penalty]
    post = [REGULARIZERS[r].after_d_step for r in regs if REGULARIZERS[r].after_d_step]
    g_penalties = [(r, REGULARIZERS[r]) for r in regs if REGULARIZERS[r].g_penalty]
    need_r1, need_r2 = "r1" in regs, "r2" in regs

    out = Path(cfg.out) if cfg.out else None
    log = None
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DistillError(f"{out}: cannot create output folder ({e.strerror})") from None
        (out / "metrics.jsonl").unlink(missing_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(
            {"task": "lab", "lab": dataclasses.asdict(cfg),
             "resolved": {"loss": loss_name, "reg": regs, "lr_g": cfg.lr, "lr_d": cfg.lr * cfg.d_lr_mult,
                          "n_modes": ds.n_modes}}, sort_keys=False))
        log = MetricsLog(out / "metrics.jsonl")

    z_eval = torch.randn(cfg.eval_samples, cfg.z_dim, generator=torch.Generator().manual_seed(10_000 + cfg.seed))
    rows: list[dict] = []
    snapshots: dict[int, torch.Tensor] = {}
    grid = sorted({*range(0, cfg.steps, cfg.eval_every), cfg.steps})  # evaluation steps
    snap_steps = {grid[round(i * (len(grid) - 1) / 4)] for i in range(5)}  # 5 snapshots for the plot
    acc = {k: 0.0 for k in ["loss_d", "loss_g", "d_acc_real", "d_acc_fake", "grad_norm_d", "grad_norm_g",
                            *(r for r, _ in penalties), *(r for r, _ in g_penalties)]}
    n_acc = 0

    def evaluate(step: int) -> dict:
        with torch.no_grad():
            x = G(z_eval)  # (N, D)
        stats = count_modes(x, ds, cfg.min_count)
        row = {**{k: v / n_acc for k, v in acc.items() if n_acc},
               **stats.as_metrics(), "lr": cfg.lr, "lr_d": cfg.lr * cfg.d_lr_mult}
        if step in snap_steps:
            snapshots[step] = x
        if log is not None:
            row = log.log(step, **row)
        else:
            row = {"step": step, **row}
        rows.append(row)
        return row

    evaluate(0)
    try:
        from tqdm import tqdm
        bar = tqdm(range(1, cfg.steps + 1), disable=not cfg.progress, desc=f"lab {cfg.loss}+{'+'.join(regs) or 'none'}",
                   mininterval=1.0, leave=False)
    except ImportError:  # pragma: no cover
        bar = range(1, cfg.steps + 1)
    for step in bar:
        # ---- discriminator: minimise loss_d (+ penalties)
        for _ in range(cfg.d_steps):
            real = ds.sample(cfg.batch_size, gen)  # (B, D)
            with torch.no_grad():
                fake = G(torch.randn(cfg.batch_size, cfg.z_dim, generator=gen))  # (B, D)
            if need_r1:
                real.requires_grad_(True)
            if need_r2:
                fake.requires_grad_(True)
            rl, fl = D(real), D(fake)  # (B,), (B,)
            loss_d = adv.d_loss(rl, fl).mean()
            total_d = loss_d
            for name, reg in penalties:
                pen = reg.penalty(cfg, D, real, rl, fake, fl).mean()
                total_d = total_d + reg.weight(cfg) * pen
                acc[name] += float(pen.detach()) / cfg.d_steps
            opt_d.zero_grad(set_to_none=True)
            total_d.backward()
            gn_d = float(grad_norm([D]))
            opt_d.step()
            for fn in post:
                fn(cfg, D)
        # ---- generator: minimise loss_g
        fl_g = D(G(torch.randn(cfg.batch_size, cfg.z_dim, generator=gen)))  # (B,)
        if adv.paired:  # relativistic: each fake judged against a real partner (D's logits only, no grad to D)
            with torch.no_grad():
                rl_g = D(ds.sample(cfg.batch_size, gen))
            loss_g = adv.g_loss(fl_g, rl_g).mean()
        else:
            loss_g = adv.g_loss(fl_g).mean()
        total_g = loss_g
        for name, reg in g_penalties:
            pen = reg.g_penalty(G)
            total_g = total_g + reg.weight(cfg) * pen
            acc[name] += float(pen.detach())
        opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        gn_g = float(grad_norm([G]))
        opt_g.step()

        acc["loss_d"] += float(loss_d.detach())
        acc["loss_g"] += float(loss_g.detach())
        acc_real, acc_fake = adv.accuracy(rl, fl)  # paired losses: pairs ranked right
        acc["d_acc_real"] += float(acc_real.mean())
        acc["d_acc_fake"] += float(acc_fake.mean())
        acc["grad_norm_d"] += gn_d
        acc["grad_norm_g"] += gn_g
        n_acc += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            row = evaluate(step)
            for k in acc:
                acc[k] = 0.0
            n_acc = 0
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(modes=row["modes"], hq=row["hq_fraction"], refresh=False)
    result = LabResult(rows, snapshots[max(snapshots)], snapshots, out)
    if out is not None and cfg.plots:
        write_plots(result, ds, out, cfg.min_count)
    return result


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg backend): samples.png, modes.png, losses.png


def write_plots(result: LabResult, ds: ToyDataset, out: Path, min_count: int | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in result.rows]
    paths = []
    # samples over the data: one panel per snapshot step
    snaps = sorted(result.snapshots.items())
    fig, axes = plt.subplots(1, len(snaps), figsize=(3.2 * len(snaps), 3.4), squeeze=False)
    real = ds.sample(2000, torch.Generator().manual_seed(0))
    lim = float(ds.centers.abs().max()) * 1.5 + 0.5
    for ax, (step, x) in zip(axes[0], snaps):
        stats = count_modes(x, ds, min_count)
        if ds.dim == 1:
            ax.hist(real[:, 0].numpy(), bins=120, range=(-lim, lim), alpha=0.4, density=True, label="data")
            ax.hist(x[:, 0].clamp(-lim, lim).numpy(), bins=120, range=(-lim, lim), alpha=0.6, density=True, label="G")
        else:
            ax.scatter(x[:, 0].clamp(-lim, lim).numpy(), x[:, 1].clamp(-lim, lim).numpy(), s=1, alpha=0.3, c="C1")
            for c in ds.centers:
                ax.add_patch(plt.Circle(c.tolist(), 3 * ds.std, fill=False, color="C0", lw=0.8))
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
        ax.set_xlim(-lim, lim)
        ax.set_title(f"step {step}: {stats.modes}/{ds.n_modes} modes, hq {stats.hq_fraction:.2f}", fontsize=8)
    fig.tight_layout()
    paths.append(out / "samples.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [r["modes"] for r in result.rows], label="modes captured")
    ax.set_ylim(0, ds.n_modes + 0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("modes")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["hq_fraction"] for r in result.rows], color="C1", alpha=0.7, label="hq fraction")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("high-quality fraction")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    paths.append(out / "modes.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in ("loss_d", "loss_g"):
        pts = [(r["step"], r[key]) for r in result.rows if isinstance(r.get(key), (int, float))]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "losses.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths
