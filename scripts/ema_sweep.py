"""Which EMA decay? Rebuild the student's EMA for several decays from a run's saved checkpoints and
score each, without retraining.

The run must have kept its checkpoints densely (`train.checkpoint_every=20
train.checkpoints_total_limit=null`). The EMA recurrence is replayed step by step with diffusers'
own EMAModel (same warm-up of the decay), taking the raw student of step n from the first
checkpoint at or after n; with checkpoints every m steps that approximates each step's weights by
one up to m - 1 steps later, which is small next to an EMA horizon of 1 / (1 - decay) >> m steps.
Replaying the run's own decay and scoring it against the exported pipeline (`--check`) measures
that approximation.

  python scripts/ema_sweep.py runs/x --decays 0.99 --powers 0.75 1 --steps 1 --at 1000 1200 --seeds 1234 777
Writes RUN/ema_sweep.json and RUN/ema_sweep.md (or --out STEM.json / .md).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safetensors.torch import load_file  # noqa: E402

from distill.config import TrainConfig, load_recipe  # noqa: E402
from distill.errors import DistillError  # noqa: E402
from distill.eval.evaluate import evaluate_pipeline  # noqa: E402
from distill.diffusion.pipelines import DistillPipeline, exported_pipeline  # noqa: E402
from distill.engine.checkpoint import checkpoint_dirs  # noqa: E402
from distill.engine.optim import make_ema  # noqa: E402


def checkpoints(run: Path) -> dict[int, Path]:
    found = {int(p.name.split("-")[1]): p / "student.safetensors" for p in checkpoint_dirs(run)}  # sorted by step
    if not found:
        raise DistillError(f"{run / 'checkpoints'}: no checkpoint-* folders")
    return found


def replay_ema(unet, ckpts: dict[int, Path], decay: float, until: int, power=None) -> None:
    """Load into `unet` the EMA (`train.ema_decay` = decay, `train.ema_power` = power) at step `until` of the raw
    weights in `ckpts` (step -> file)."""
    steps = [s for s in ckpts if s <= until]
    if not steps or steps[-1] != until:
        raise DistillError(f"no checkpoint-{until} to end the EMA at (have {list(ckpts)[:3]}...)")
    gaps = {b - a for a, b in zip([0, *steps], steps)}
    # the trainer's EMA; its start is irrelevant: the decay of step 1 is 0, so the EMA becomes step 1's weights
    ema = make_ema(unet.parameters(), TrainConfig(ema_decay=decay, ema_power=power))
    names = [n for n, _ in unet.named_parameters()]
    n = 0
    for s in steps:
        sd = load_file(str(ckpts[s]))
        params = [sd[k].float().requires_grad_() for k in names]  # EMAModel copies tensors without grad
        while n < s:  # steps n+1 .. s use the weights saved at s
            n += 1
            ema.step(params)
    ema.copy_to(unet.parameters())
    print(f"EMA {decay} power {power} at step {until}: replayed {n} steps from {len(steps)} checkpoints (every {sorted(gaps)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--decays", type=float, nargs="*", default=[0.99],
                    help="decays with diffusers' default warm-up, which caps any decay at (1 + n) / (10 + n)")
    ap.add_argument("--powers", type=float, nargs="*", default=[0.75, 0.85, 1.0],
                    help="train.ema_power values (decay cap --cap): an average over the last ~n^power steps")
    ap.add_argument("--cap", type=float, default=0.9999, help="train.ema_decay with --powers")
    ap.add_argument("--at", type=int, nargs="*", default=[], help="end steps (default: the last checkpoint)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1], help="sampling steps to score")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234], help="evaluation seeds (each: num_samples)")
    ap.add_argument("--check", action="store_true", help="also score the exported pipeline (the run's own EMA)")
    ap.add_argument("--out", default=None, help="output stem (default RUN/ema_sweep: .json and .md)")
    a = ap.parse_args()
    run = Path(a.run)
    try:
        recipe = load_recipe(str(run / "recipe.yaml"))
        ckpts = checkpoints(run)
        pipe = DistillPipeline.from_pretrained(str(exported_pipeline(run)))
    except DistillError as e:
        sys.exit(f"error: {e}")
    ends = a.at or [list(ckpts)[-1]]
    missing = [t for t in ends if t not in ckpts]
    if missing:
        sys.exit(f"error: {run / 'checkpoints'}: no checkpoint-{missing[0]} to end the EMA at")
    jobs = [("exported", recipe.train.ema_decay, recipe.train.ema_power, ends[-1])] if a.check else []
    jobs += [("replayed", d, None, t) for t in ends for d in a.decays]
    jobs += [("replayed", a.cap, p, t) for t in ends for p in a.powers]
    rows = []
    exported = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    for kind, decay, power, until in jobs:
        pipe.unet.load_state_dict(exported)
        if kind == "replayed":
            replay_ema(pipe.unet, ckpts, decay, until, power)
        for seed in a.seeds:
            ev = dataclasses.replace(recipe.eval, seed=seed)
            tag = f"{kind}-ema{decay}-p{power}-at{until}-seed{seed}"
            for r in evaluate_pipeline(pipe, ev, recipe.data, run / "ema_sweep" / tag, tag="student",
                                       scheduler="pipeline", steps=a.steps, guidance_scale=1.0):
                rows.append({"ema": kind, "decay": decay, "power": power, "at_step": until, "seed": seed, "steps": r["steps"],
                             "fid": r["fid"], "kid": r["kid"], "intra_class_dist": r["intra_class_dist"],
                             "class_acc": r.get("class_acc")})
                print(json.dumps(rows[-1]), flush=True)
    out = Path(a.out) if a.out else run / "ema_sweep"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"run": str(run), "rows": rows}, indent=1))
    lines = ["| EMA | decay | power | at step | seed | sampling steps | FID | KID | within-class |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['ema']} | {r['decay']} | {r['power']} | {r['at_step']} | {r['seed']} | {r['steps']} | {r['fid']:.3f} | "
              f"{r['kid']:.3f} | {r['intra_class_dist']:.2f} |" for r in rows]
    out.with_suffix(".md").write_text(f"EMA sweep of {run}\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
