"""Evaluate a pipeline's FID-versus-steps table (and the guided rows of eval.guidance_sweep) with the sampling
split over processes.

Shard k of N generates batches i = k, k+N, ... with the same per-batch seeds as
`distill.eval.evaluate.generate`, so the merged samples equal a single-process run's.

  python scripts/eval_sharded.py PIPE --recipe R --shard 0 --of 2 --work W &   # each shard
  python scripts/eval_sharded.py PIPE --recipe R --of 2 --work W --merge --out runs/x/eval
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.eval.evaluate import eval_settings, grid_name, reference_at, sample_batch, score, write_eval  # noqa: E402
from distill.diffusion.sampling import make_scheduler  # noqa: E402
from distill.diffusion.teachers import load_teacher  # noqa: E402
from distill.viz import save_grid, upscale_for_view  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pipeline")
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--of", type=int, default=1)
    ap.add_argument("--work", required=True)
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--tag", default="teacher")
    a = ap.parse_args()
    r = load_recipe(a.recipe)
    ec = r.eval
    pipe = load_teacher(a.pipeline)
    cfg = pipe.unet.config
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    n_batches = (ec.num_samples + ec.batch_size - 1) // ec.batch_size
    k = pipe.num_classes
    labels = torch.arange(ec.num_samples) % k if k else None
    settings = eval_settings(ec, ec.steps, ec.guidance_scale, bool(k), sweep_guidance=True)  # as evaluate_pipeline's

    def part(s, g, i):  # one batch's samples
        return work / (f"s{s}-b{i}.safetensors" if g == ec.guidance_scale else f"s{s}-g{g:g}-b{i}.safetensors")

    if not a.merge:
        sched = make_scheduler(ec.scheduler, pipe.scheduler.config)
        for s, g in settings:
            for i in range(a.shard, n_batches, a.of):
                f = part(s, g, i)
                if f.exists():
                    continue
                start = i * ec.batch_size
                t0 = time.time()
                x = sample_batch(pipe.unet, sched, i, labels, start, min(ec.batch_size, ec.num_samples - start), s,
                                 g, ec.seed)
                save_file({"x": x}, str(f))
                print(f"steps {s} guidance {g:g} batch {i}: {time.time() - t0:.1f}s", flush=True)
        return
    data_cfg = dataclasses.replace(r.data, **({"source": a.data} if a.data else {}))
    extractor, ref, real_feats, real_div = reference_at(cfg, ec, data_cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for s, g in settings:
        x = torch.cat([load_file(str(part(s, g, i)))["x"] for i in range(n_batches)])
        xf = x.float() / 127.5 - 1
        rows.append({"model": a.tag, "steps": s, "scheduler": ec.scheduler, "guidance_scale": g,
                     "num_samples": ec.num_samples, "features": ec.features, "seed": ec.seed,
                     **score(xf, labels, real_feats, ref.labels, extractor), "real_intra_class_dist": real_div})
        save_grid(xf[:80], out / grid_name(a.tag, s, g, ec.guidance_scale), nrow=k or 10,
                  scale=upscale_for_view(x.shape[-1]))
        print(s, g, rows[-1]["fid"], flush=True)
    write_eval(rows, out, a.tag)


if __name__ == "__main__":
    main()
