"""Training-step cost of a shipped teacher UNet (the student of the MNIST recipe): one forward and
backward of a denoising loss at the recipe's batch, eager against `torch.compile`, fp32 against bf16
autocast, contiguous against channels-last. Variants are timed in alternation (A B C A B C ...), so
they share the machine's load; the ratios to eager of the same precision are what to read.

  python benchmarks/train_step.py                       # MNIST teacher, batch 64, 1 thread
  python benchmarks/train_step.py --variants eager-bf16 compile-bf16 --repeats 20

Writes benchmarks/results/train_step.{json,md}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.engine.hardware import cpu_model  # noqa: E402
from distill.bench.timing import make_timer, run_timed  # noqa: E402
from distill.diffusion.teachers import load_teacher  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "train_step"
VARIANTS = {  # name -> (compile, dtype or None for fp32, channels_last)
    "eager-fp32": (False, None, False),
    "eager-bf16": (False, torch.bfloat16, False),
    "eager-bf16-channels-last": (False, torch.bfloat16, True),
    "compile-bf16": (True, torch.bfloat16, False),
}


def make_step(unet, dtype, channels_last, batch):
    """A closure running forward + backward of an MSE loss on fixed random inputs (B, C, H, W)."""
    c, s = unet.config.in_channels, unet.config.sample_size
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, c, s, s).to(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,))
    y = torch.randint(0, 10, (batch,)) if unet.config.num_class_embeds else None

    def step():
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = unet(x, t, class_labels=y).sample
        out.float().pow(2).mean().backward()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="distill/assets/teachers/mnist")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    steps, first = {}, {}
    for name in a.variants:
        compile_, dtype, cl = VARIANTS[name]
        unet = load_teacher(a.teacher).unet.train()
        if cl:
            unet = unet.to(memory_format=torch.channels_last)
        steps[name] = make_step(torch.compile(unet) if compile_ else unet, dtype, cl, a.batch)
        t0 = time.perf_counter()
        steps[name]()  # the first call compiles
        first[name] = time.perf_counter() - t0
        print(f"{name}: first call {first[name]:.1f} s", flush=True)
    per, timer = {name: [] for name in a.variants}, make_timer("cpu")
    for _ in range(a.rounds):
        for name, step in steps.items():
            samples = run_timed(step, timer, warmup=1, repeats=a.repeats).samples_s
            per[name].append(sum(samples) / len(samples))
    med = {k: sorted(v)[len(v) // 2] for k, v in per.items()}
    rows = []
    for name in a.variants:
        dtype = VARIANTS[name][1]
        base = med.get(f"eager-{'bf16' if dtype else 'fp32'}")
        rows.append({"variant": name, "s_per_step": med[name], "first_call_s": first[name], "rounds_s": per[name],
                     "speedup_vs_eager": base / med[name] if base else None})
    env = {"machine": cpu_model(), "threads": a.threads, "torch": torch.__version__,
           "batch": a.batch, "teacher": a.teacher, "repeats": a.repeats, "rounds": a.rounds}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    lines = [f"Training step (forward + backward) of `{a.teacher}`, batch {a.batch}, {a.threads} thread(s), torch "
             f"{torch.__version__}; median of {a.rounds} rounds x {a.repeats} steps, variants alternated.", "",
             "| variant | s / step | speed-up vs eager, same precision | first call (s) |", "|---|---|---|---|"]
    for r in rows:
        sp = f"{r['speedup_vs_eager']:.2f}x" if r["speedup_vs_eager"] else "-"
        lines.append(f"| {r['variant']} | {r['s_per_step']:.3f} | {sp} | {r['first_call_s']:.1f} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
