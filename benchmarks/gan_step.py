"""Step time of a GAN recipe (`task: gan`), to size a training: the trainer is set up as `distill run`
sets it up (no run folder, no evaluation), then steps are timed as the engine runs them. A step on
which lazy R1/R2 runs (every gan.reg_every) is timed apart from the others, and the two are
combined into the mean step time.

    OMP_NUM_THREADS=1 python benchmarks/gan_step.py recipes/gan-stylegan2-mnist.yaml \
        data.source=../shared/data/mnist/mnist_full.npz --steps 5 --minutes 50

Prints parameter counts, seconds per step and what a budget of --minutes buys (steps, images, epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.gan.train import d_params, num_params, standalone  # noqa: E402


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): on a shared machine the CPU time is the steadier
    measure of what one core costs (one thread: CPU time <= wall time)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("overrides", nargs="*", help="section.key=value")
    ap.add_argument("--steps", type=int, default=5, help="timed steps without R1/R2")
    ap.add_argument("--minutes", type=float, default=None, help="training budget to size (default: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the result here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(a.recipe, [*a.overrides, f"output_dir={tmp}/run", "eval.num_samples=0",
                                        "eval.monitor_samples=0"])
        t = standalone(recipe)
        every = recipe.gan.reg_every
        regs = recipe.gan.r1_gamma > 0 or recipe.gan.r2_gamma > 0
        t.step(0)  # warm-up (a regularised step when R1/R2 are on)
        plain_steps = [s for s in range(1, 10 ** 6) if not (regs and s % every == 0)][:a.steps]
        plain = [_timed(lambda s=s: t.step(s)) for s in plain_steps]
        reg = [_timed(lambda: t.step(every)), _timed(lambda: t.step(2 * every))] if regs else []
    G, D = t.models["generator"], t.models["discriminator"]
    res = {"recipe": a.recipe, "overrides": a.overrides, "threads": a.threads, "batch_size": recipe.train.batch_size,
           "params_g": num_params(G), **d_params(D), "generator": recipe.generator.kind,
           "discriminator": recipe.discriminator.kind, "dataset_size": len(t.data)}
    for i, clock in enumerate(("wall", "cpu")):
        s_plain = statistics.median(v[i] for v in plain)
        s_reg = statistics.median(v[i] for v in reg) if reg else s_plain
        mean = s_plain + (s_reg - s_plain) / every if regs else s_plain
        res[clock] = {"s_per_step_plain": round(s_plain, 4), "s_per_step_regularised": round(s_reg, 4),
                      "s_per_step_mean": round(mean, 4), "plain_samples": [round(v[i], 4) for v in plain]}
        print(f"{clock:4s}: {s_plain:.3f} s/step ({len(plain)} steps, median), {s_reg:.3f} s on R1/R2 steps "
              f"(every {every}); mean {mean:.3f} s/step")
    print(f"{a.recipe}: G {res['params_g'] / 1e6:.3f} M, D {res['params_d'] / 1e6:.3f} M parameters; batch "
          f"{recipe.train.batch_size}; {a.threads} thread(s)")
    if a.minutes:  # sized on the CPU clock: what one core costs
        steps = int(a.minutes * 60 / res["cpu"]["s_per_step_mean"])
        images = steps * recipe.train.batch_size
        res.update(budget_minutes=a.minutes, budget_steps=steps, budget_epochs=round(images / len(t.data), 2))
        print(f"{a.minutes:g} min buys ~{steps} steps = {images} images = {images / len(t.data):.1f} epochs")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
