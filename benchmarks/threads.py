"""Seconds per step of the quickstart (`distill run recipes/digits.yaml`: its distillation step, batch 64) at 1, 2
and `auto` intra-op threads, alone and beside a one-thread load (a busy-loop process), in alternation: each round
times every thread setting under both conditions, so slow drifts of the machine's load fall on all of them.

  python benchmarks/threads.py                       # 3 rounds of 6 steps per setting and condition
  python benchmarks/threads.py --rounds 5 --steps 8

`auto` is what `train.num_threads: auto` picks at that moment (distill.engine.threads). The load average the
machine had before the first round is recorded: work that this script did not start (other jobs) shares the
cores too, and where it is present "alone" is not alone. Writes benchmarks/results/threads.{json,md}.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.distillation.loop import DistillTrainer  # noqa: E402
from distill.distillation.pixel import PixelSpace  # noqa: E402
from distill.engine.hardware import cpu_model  # noqa: E402
from distill.engine.threads import allowed_cores, choose_threads, network_work  # noqa: E402
from distill.engine.trainer import Engine  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "threads"


def quickstart_trainer(recipe_path: str) -> DistillTrainer:
    """The quickstart's distillation trainer, set up without a run folder (fp32, as on a CPU without bf16)."""
    recipe = load_recipe(recipe_path, [f"output_dir={tempfile.mkdtemp()}/run", "train.mixed_precision=no"])
    trainer = DistillTrainer(recipe, PixelSpace(recipe))
    engine = Engine(recipe, prepare_dir=False)
    engine.trainer = trainer
    trainer.setup(engine)
    return trainer


def busy_loop() -> subprocess.Popen:
    """A one-thread load: a Python process spinning until it is stopped."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def time_steps(trainer, threads: int, first: int, n: int) -> list[float]:
    torch.set_num_threads(threads)
    trainer.step(first)  # one step at this thread count before timing (the pool resizes)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        trainer.step(first + 1 + i)
        out.append(time.perf_counter() - t0)
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else 0.5 * (xs[len(xs) // 2 - 1] + xs[len(xs) // 2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/digits.yaml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per setting, condition and round")
    ap.add_argument("--settings", nargs="+", default=["1", "2", "auto"])
    ap.add_argument("--note", default="", help="a sentence on the machine's state, written into the results")
    a = ap.parse_args()
    load_before = os.getloadavg()
    trainer = quickstart_trainer(a.recipe)
    work = network_work(list(trainer.models.values()))
    samples = {(c, s): [] for c in ("alone", "beside one busy thread") for s in a.settings}
    picked = {c: [] for c in ("alone", "beside one busy thread")}
    step = 0
    for r in range(a.rounds):
        for cond in ("alone", "beside one busy thread"):
            load = busy_loop() if cond != "alone" else None
            try:
                if load is not None:
                    time.sleep(1.0)  # the load is running before the first timed step
                for s in a.settings:
                    n = choose_threads(s if s == "auto" else int(s), work)[0]
                    if s == "auto":
                        picked[cond].append(n)
                    samples[(cond, s)] += time_steps(trainer, n, step, a.steps)
                    step += a.steps + 1
                    print(f"round {r + 1} {cond:>22} threads={s:>4} ({n}): "
                          f"{median(samples[(cond, s)][-a.steps:]):.3f} s/step", flush=True)
            finally:
                if load is not None:
                    load.kill()
                    load.wait()
    rows = [{"condition": c, "threads": s, "threads_used": sorted(set(picked[c])) if s == "auto" else int(s),
             "median_s_per_step": median(v), "min_s_per_step": min(v), "max_s_per_step": max(v), "steps_timed": len(v)}
            for (c, s), v in samples.items()]
    env = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "allowed_cores": allowed_cores(),
           "load_average_before": load_before, "load_average_after": os.getloadavg(), "torch": torch.__version__,
           "python": platform.python_version(), "recipe": a.recipe, "network_work": work,
           "rounds": a.rounds, "steps": a.steps, "note": a.note}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    alone = {r["threads"]: r["median_s_per_step"] for r in rows if r["condition"] == "alone"}
    lines = ["# Threads: the quickstart's step at 1, 2 and auto threads", "",
             f"`python benchmarks/threads.py --rounds {a.rounds} --steps {a.steps}`; {env['cpu']}, "
             f"{env['allowed_cores']} usable cores; torch {env['torch']}; load average before the first round "
             f"{load_before[0]:.2f} (1 min). Seconds per optimizer step of `{a.recipe}`, fp32, median over "
             f"{a.rounds} rounds x {a.steps} steps, settings alternated within each round.", ""]
    if a.note:
        lines += [a.note, ""]
    lines += ["| condition | threads | used | median s/step | min | max | vs 1 thread alone |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rel = r["median_s_per_step"] / alone["1"] if alone.get("1") else float("nan")
        lines.append(f"| {r['condition']} | {r['threads']} | {r['threads_used']} | {r['median_s_per_step']:.3f} | "
                     f"{r['min_s_per_step']:.3f} | {r['max_s_per_step']:.3f} | {rel:.2f}x |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
