"""Score a multi-step student sampled on subsets of its trained timesteps: which step helps, which hurts.

  python experiments/step_subsets.py runs/exp-mnist-<name>-1200 --samples 2000 \
      --subsets 999 999,749 999,249 999,749,499,249

A run folder holds its exported pipeline (an LCMScheduler student) and `recipe.yaml` (its data and evaluation
settings). Each subset is sampled x0-then-renoise as the student's own sampler does, with the same
noise and labels (the evaluation seed), and scored as `distill eval` scores: FID/KID, class accuracy
and within-class distance on the recipe's evaluation features. One JSON line per subset, also written
to <run>/eval/step_subsets.json.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a distillation run folder (its pipeline, recipe.yaml)")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--subsets", nargs="+", required=True, help="comma-separated decreasing timesteps, e.g. 999,249")
    a = ap.parse_args()

    from distill.config import load_recipe
    from distill.diffusion.pipelines import DistillPipeline, exported_pipeline
    from distill.eval.evaluate import generate, reference_at, score

    subsets = [[int(t) for t in s.split(",")] for s in a.subsets]
    for ts in subsets:
        if any(b >= c for c, b in zip(ts, ts[1:])):
            ap.error(f"--subsets: {ts} is not strictly decreasing")
    pipe = DistillPipeline.from_pretrained(str(exported_pipeline(a.run)))
    recipe = load_recipe(a.run / "recipe.yaml")
    extractor, ref, real_feats, real_div = reference_at(pipe.unet.config, recipe.eval, recipe.data)
    sched, set_timesteps = pipe.scheduler, pipe.scheduler.set_timesteps
    rows = []
    for ts in subsets:
        # LCMScheduler takes explicit timesteps; the sampler's set_timesteps(k) call then visits exactly these
        sched.set_timesteps = lambda k, device=None, ts=ts: set_timesteps(timesteps=ts, device=device)
        x, labels = generate(pipe, a.samples, len(ts), None, 1.0, recipe.eval.batch_size, recipe.eval.seed)
        r = score(x, labels, real_feats, ref.labels, extractor)
        rows.append({"timesteps": ts, "num_samples": a.samples, "fid": r["fid"], "kid": r["kid"],
                     "class_acc": r.get("class_acc"), "intra_class_dist": r["intra_class_dist"],
                     "real_intra_class_dist": real_div})
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
    out = a.run / "eval" / "step_subsets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
