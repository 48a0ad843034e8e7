"""FID against training wall-clock minutes: score the EMA student of each saved checkpoint of a distillation run.

  python scripts/checkpoint_curve.py RUN [--at 500 1000 ...] [--steps 1 2 4 8] [--num-samples 2000]

Each checkpoint's EMA weights (ema.pt, the weights the run would have exported at that step) are loaded into the
exported pipeline's network and scored as `distill eval` scores a pipeline (the run's recipe's eval section,
--num-samples overriding its sample count); the wall time at that step is read from metrics.jsonl (resumed
segments summed). The run must keep its checkpoints (`train.checkpoints_total_limit=null`).
Writes RUN/curve.json (merged with the rows of checkpoints scored before), RUN/curve.md and RUN/curve.png (one line
per sampling step count).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.diffusion.pipelines import DistillPipeline, exported_pipeline  # noqa: E402
from distill.engine.checkpoint import checkpoint_dirs  # noqa: E402
from distill.engine.run_dir import read_metrics, wall_seconds  # noqa: E402
from distill.errors import DistillError  # noqa: E402
from distill.eval.evaluate import evaluate_pipeline  # noqa: E402


def load_ema(unet, checkpoint: Path) -> None:
    """The EMA shadow of the student's trainable parameters (diffusers' EMAModel state, in parameter order)."""
    f = checkpoint / "ema.pt"
    if not f.is_file():
        raise DistillError(f"{f}: missing (the run kept no EMA: train.ema_decay=0)")
    shadow = torch.load(f, map_location="cpu", weights_only=True)["shadow_params"]
    params = [p for p in unet.parameters() if p.requires_grad]
    if len(shadow) != len(params):
        raise DistillError(f"{f}: {len(shadow)} EMA tensors for {len(params)} parameters of the exported network")
    with torch.no_grad():
        for p, s in zip(params, shadow):
            p.copy_(s.to(p.dtype))


def minutes_at(rows: list[dict], step: int) -> float:
    return wall_seconds([r for r in rows if r.get("step", 0) <= step]) / 60


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k in sorted({r["steps"] for r in rows}):
        pts = sorted((r["minutes"], r["fid"]) for r in rows if r["steps"] == k)
        ax.plot(*zip(*pts), marker="o", label=f"{k} step{'s' * (k > 1)}")
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("FID")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--at", type=int, nargs="*", default=[], help="checkpoint steps (default: every checkpoint)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="sampling steps to score")
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--pipeline", default=None, help="the network and scheduler to load weights into (default: "
                    "RUN's export; for a run still training, any pipeline of the student's architecture)")
    a = ap.parse_args()
    run = Path(a.run)
    try:
        recipe = load_recipe(str(run / "recipe.yaml"))
        pipe = DistillPipeline.from_pretrained(a.pipeline or str(exported_pipeline(run)))
        found = {int(p.name.split("-")[1]): p for p in checkpoint_dirs(run)}
        at = a.at or sorted(found)
        if missing := [s for s in at if s not in found]:
            raise DistillError(f"{run / 'checkpoints'}: no checkpoint-{missing[0]}")
        metrics = read_metrics(run / "metrics.jsonl")
        ev = dataclasses.replace(recipe.eval, num_samples=a.num_samples)
        rows = []
        for step in at:
            load_ema(pipe.unet, found[step])
            for r in evaluate_pipeline(pipe, ev, recipe.data, run / "curve" / f"step-{step}", tag=f"student@{step}",
                                       scheduler="pipeline", steps=a.steps, guidance_scale=1.0):
                rows.append({"step": step, "minutes": round(minutes_at(metrics, step), 2), "steps": r["steps"],
                             "fid": r["fid"], "kid": r["kid"], "class_acc": r.get("class_acc"),
                             "intra_class_dist": r["intra_class_dist"], "num_samples": a.num_samples})
                print(json.dumps(rows[-1]), flush=True)
    except DistillError as e:
        print(f"checkpoint_curve: error: {e}", file=sys.stderr)
        return 2
    if (run / "curve.json").is_file():  # rows of other checkpoints (or sample counts) scored before are kept
        new = {(r["step"], r["steps"], r["num_samples"]) for r in rows}
        old = json.loads((run / "curve.json").read_text())["rows"]
        rows = sorted([r for r in old if (r["step"], r["steps"], r["num_samples"]) not in new] + rows,
                      key=lambda r: (r["num_samples"], r["step"], r["steps"]))
    (run / "curve.json").write_text(json.dumps({"run": str(run), "rows": rows}, indent=1))
    lines = ["| step | minutes | sampling steps | FID | KID | class acc | within-class |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['minutes']:.1f} | {r['steps']} | {r['fid']:.2f} | {r['kid']:.4f} | "
              f"{r['class_acc'] or float('nan'):.3f} | {r['intra_class_dist']:.2f} |" for r in rows]
    (run / "curve.md").write_text(f"FID of {run}'s EMA student against training time ({a.num_samples} samples)\n\n"
                                  + "\n".join(lines) + "\n")
    plot(rows, run / "curve.png", f"{recipe.name}: FID ({a.num_samples} samples) vs training time")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
