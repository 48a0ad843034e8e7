"""GAN lab benchmark: modes captured on the ring of 8 Gaussians at 1k, 5k and 10k steps for each
adversarial loss and regulariser, with D lr = 1x and 5x the generator's, over several seeds.

    PYTHONPATH=. python benchmarks/gan_lab.py --seeds 0 1 2 --steps 10000 --out benchmarks/results/gan_lab

writes `<out>.json` (every run, written after each run so a partial sweep survives) and
`<out>.md` (the table in docs/gan-lab.md). One thread, one process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.diagnostics.lab.train import LabConfig, train_lab  # noqa: E402

# (label, loss, regularisers)
CONFIGS = [
    ("ns", "ns", []),
    ("saturating (minimax)", "saturating", []),
    ("hinge", "hinge", []),
    ("lsgan", "lsgan", []),
    ("wgan + clip", "wgan", ["clip"]),
    ("wgan-gp", "wgan", ["gp"]),
    ("ns + r1", "ns", ["r1"]),
    ("ns + sn", "ns", ["sn"]),
    ("ns + mbstd", "ns", ["mbstd"]),
    ("ns + mbdisc", "ns", ["mbdisc"]),
    ("rpgan", "rpgan", []),
    ("r3gan (rpgan + r1 + r2)", "rpgan", ["r1", "r2"]),
    # the task: gan kinds' defaults (distill.gan.architectures): Progressive GAN, BigGAN
    ("wgan-gp + drift (Progressive GAN)", "wgan", ["gp", "drift"]),
    ("hinge + sn (BigGAN's D)", "hinge", ["sn"]),
    ("hinge + sn + ortho (BigGAN)", "hinge", ["sn", "ortho"]),
]
CHECKPOINTS = (1000, 5000, 10000)


def collapsed(modes: int, n_modes: int) -> bool:
    """A run has collapsed when it captures half of the modes or fewer at the end."""
    return modes <= n_modes // 2


def run_one(label, loss, regs, seed, d_lr_mult, steps, dataset) -> dict:
    cfg = LabConfig(dataset=dataset, loss=loss, reg=regs, steps=steps, seed=seed, d_lr_mult=d_lr_mult,
                    eval_every=100, progress=False, plots=False)
    t0, c0 = time.time(), time.process_time()
    res = train_lab(cfg)
    by_step = {r["step"]: r for r in res.rows}
    final = res.rows[-1]
    return {
        "label": label, "loss": loss, "reg": regs, "seed": seed, "d_lr_mult": d_lr_mult, "steps": steps,
        "modes": {s: by_step[s]["modes"] for s in CHECKPOINTS if s in by_step},
        "hq": {s: by_step[s]["hq_fraction"] for s in CHECKPOINTS if s in by_step},
        "modes_total": final["modes_total"],
        "final_modes": final["modes"], "final_hq": final["hq_fraction"],
        "min_modes_last_quarter": min(r["modes"] for r in res.rows if r["step"] >= 0.75 * steps),
        "modes_trace": [r["modes"] for r in res.rows[::5]],
        "collapsed": collapsed(final["modes"], final["modes_total"]),
        "wall_s": round(time.time() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
    }


def _fmt(vals: list) -> str:
    if not vals:
        return "-"
    return f"{statistics.mean(vals):.1f} ({'/'.join(str(v) for v in vals)})"


def table(runs: list[dict]) -> str:
    lines = ["| loss + regulariser | D lr | modes @1k | modes @5k | modes @10k | hq @10k | collapsed | cpu s/run |",
             "|---|---|---|---|---|---|---|---|"]
    keys = list(dict.fromkeys((r["label"], r["d_lr_mult"]) for r in runs))
    for label, mult in keys:
        rs = [r for r in runs if r["label"] == label and r["d_lr_mult"] == mult]
        cells = [_fmt([r["modes"].get(s, r["modes"].get(str(s))) for r in rs
                       if s in r["modes"] or str(s) in r["modes"]]) for s in CHECKPOINTS]
        hq = statistics.mean(r["final_hq"] for r in rs)
        n_col = sum(r["collapsed"] for r in rs)
        cpu = statistics.mean(r["cpu_s"] for r in rs)
        lines.append(f"| {label} | {mult:g}x | {' | '.join(cells)} | {hq:.2f} | {n_col}/{len(rs)} | {cpu:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--d-lr-mults", type=float, nargs="+", default=[1.0, 5.0])
    p.add_argument("--dataset", default="ring")
    p.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    p.add_argument("--skip", nargs="*", default=[], help="labels to skip")
    p.add_argument("--out", default="benchmarks/results/gan_lab")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "command": " ".join(sys.argv)}
    runs: list[dict] = []
    for mult in args.d_lr_mults:
        for label, loss, regs in CONFIGS:
            if (args.only and label not in args.only) or label in args.skip:
                continue
            for seed in args.seeds:
                r = run_one(label, loss, regs, seed, mult, args.steps, args.dataset)
                runs.append(r)
                print(f"{label:22s} D lr {mult:g}x seed {seed}: modes {r['modes']} hq {r['final_hq']:.2f} "
                      f"({r['cpu_s']:.0f} cpu s)", flush=True)
                out.with_suffix(".json").write_text(json.dumps({"machine": machine, "runs": runs}, indent=1))
    md = table(runs)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
