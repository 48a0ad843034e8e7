"""`distill lab`: train a small GAN on a toy mixture of Gaussians and count the modes it captures."""

from __future__ import annotations

import dataclasses

from .arguments import check_output_path, non_negative_float, non_negative_int, positive_float, positive_int

HELP = "GAN lab: train a toy MLP GAN (ring / grid / 1-D mixture) with any loss and regulariser"


def add_arguments(p):
    from ..diagnostics.lab.train import LabConfig

    d = LabConfig()
    p.add_argument("--dataset", default=d.dataset, help="ring (8 Gaussians), grid (5x5), gmm1d (1-D, 2 modes)")
    p.add_argument("--loss", default=d.loss,
                   help="ns, saturating (alias minimax), hinge, lsgan, wgan, wgan-gp, wgan-clip, rpgan (relativistic "
                        "pairing), r3gan (= rpgan with r1 and r2), progan (= wgan with gp and drift), biggan (= hinge "
                        "with sn and ortho)")
    p.add_argument("--reg", default="none",
                   help="comma-separated: none, r1, r2, gp, clip, drift, sn, ortho (on G), mbstd, mbdisc (e.g. sn,r1)")
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--lr", type=positive_float, default=d.lr, help="generator learning rate")
    p.add_argument("--d-lr-mult", type=positive_float, default=d.d_lr_mult, help="discriminator lr = lr x this")
    p.add_argument("--d-steps", type=positive_int, default=d.d_steps, help="discriminator steps per generator step")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--hidden", type=positive_int, default=d.hidden)
    p.add_argument("--z-dim", type=positive_int, default=d.z_dim)
    p.add_argument("--r1-gamma", type=non_negative_float, default=d.r1_gamma)
    p.add_argument("--r2-gamma", type=non_negative_float, default=d.r2_gamma, help="default: --r1-gamma")
    p.add_argument("--gp-lambda", type=non_negative_float, default=d.gp_lambda)
    p.add_argument("--clip", type=positive_float, default=d.clip, help="weight clipping range for --reg clip")
    p.add_argument("--drift", type=non_negative_float, default=d.drift, help="weight of D(x)^2 for --reg drift")
    p.add_argument("--ortho", type=non_negative_float, default=d.ortho, help="weight of G's orthogonal regulariser")
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every)
    p.add_argument("--min-count", type=non_negative_int, default=d.min_count,
                   help="samples within 3 std (of 2500) for a mode to count as captured")
    p.add_argument("--out", default="runs/lab", help="output folder (metrics.jsonl, recipe.yaml, *.png)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")


def main(args) -> int:
    import torch

    from ..diagnostics.lab.train import LabConfig, train_lab

    check_output_path(args.out, "--out", "dir")
    torch.set_num_threads(args.threads)
    fields = {f.name for f in dataclasses.fields(LabConfig)}
    kw = {k: v for k, v in vars(args).items() if k in fields}
    kw["reg"] = [r.strip() for r in args.reg.split(",") if r.strip()]
    kw["plots"] = not args.no_plots
    res = train_lab(LabConfig(**kw))
    last = res.rows[-1]
    print(f"step {last['step']}: {last['modes']}/{last['modes_total']} modes captured, "
          f"high-quality fraction {last['hq_fraction']:.3f}")
    print(f"output folder: {res.out}")
    return 0
