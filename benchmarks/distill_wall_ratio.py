"""Distillation vs teacher training cost: K steps of the teacher's own training recipe (the recipe.yaml beside the
distillation recipe's teacher, e.g. distill/assets/teachers/cifar10/recipe.yaml) and K steps of a distillation recipe,
alternated (T D T D) so both see the same machine load, each projected to its full schedule
(train.max_steps of its recipe). The ratio of the projections is the "distillation wall time <= half the teacher's"
check. The teacher's recipe is also timed in bf16 (the MNIST teacher trained in fp32), so a recipe distilling in
bf16 can be compared with a teacher trained at its precision too (`ratio_vs_teacher_bf16`). The data default to the
teacher recipe's `data.source`.

  python benchmarks/distill_wall_ratio.py --steps 20
  python benchmarks/distill_wall_ratio.py --steps 20 --recipe recipes/mnist_1step.yaml
  python benchmarks/distill_wall_ratio.py --steps 20 --recipe-override discriminator.backbone=fake_score
  python benchmarks/distill_wall_ratio.py --steps 20 --recipe recipes/cifar10.yaml

Writes benchmarks/results/distill_<recipe stem>_wall_ratio.json (or --out).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import load_recipe  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def shown_path(path: Path) -> str:
    """A path inside the repository relative to its root (results name no machine's folders)."""
    root = Path(__file__).resolve().parent.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def teacher_recipe_path(distill_recipe) -> Path:
    """The training recipe saved beside the distillation recipe's teacher (shipped teachers carry theirs)."""
    from distill.diffusion.teachers import resolve_teacher_path

    path = Path(resolve_teacher_path(distill_recipe.distill.teacher)) / "recipe.yaml"
    if not path.is_file():
        sys.exit(f"error: {path}: the teacher has no training recipe to time")
    return path


def seconds_per_step(run_dir: Path, skip: int) -> float:
    """Median seconds per step from metrics.jsonl time stamps, dropping the first `skip` rows (warm-up)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time" in r and r["step"] > 0]
    first = {}
    for r in rows:  # the first row of a step: a coverage check logged after it would count its sampling time
        first.setdefault(r["step"], r)
    rows = list(first.values())[skip:]
    per = [(b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(rows, rows[1:])]
    return sorted(per)[len(per) // 2]


def wall_ratio(data: str, k: int, rounds: int, overrides, distill_recipe: str, out_name: str) -> dict:
    from accelerate.state import AcceleratorState

    from distill.diffusion.train import train_teacher
    from distill.distillation.loop import train_distill

    distill = load_recipe(distill_recipe, list(overrides))
    teacher_recipe = teacher_recipe_path(distill)
    teacher = load_recipe(teacher_recipe)
    full_t, data = teacher.train.max_steps, data or teacher.data.source
    full_d = distill.train.max_steps
    per = {"teacher": [], "distill": [], "teacher_bf16": []}
    tmp = Path(tempfile.mkdtemp(prefix="wall-ratio-"))
    short_run = [f"data.source={data}", f"train.max_steps={k}", "train.log_every=5", "train.checkpoint_every=100000",
              "train.sample_every=100000"]
    teacher_extra = ["train.resume_from_checkpoint=null"]
    for r in range(rounds):
        for name, path, train, extra in (
                ("teacher", teacher_recipe, train_teacher, teacher_extra),
                ("distill", distill_recipe, train_distill, list(overrides)),
                # the teacher's recipe in bf16 too: what a teacher trained at the distillation's precision would cost
                ("teacher_bf16", teacher_recipe, train_teacher, [*teacher_extra, "train.mixed_precision=bf16"])):
            out = tmp / f"{name}-{r}"
            recipe = load_recipe(path, [*extra, *short_run, f"output_dir={out}"])  # K steps win over an override
            AcceleratorState._reset_state(True)  # accelerate keeps one process-wide mixed-precision state
            train(recipe)
            per[name].append(seconds_per_step(out, skip=1))
            print(f"round {r} {name}: {per[name][-1]:.3f} s/step", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    s_t, s_d, s_tb = (sorted(v)[len(v) // 2] for v in per.values())
    res = {"machine": machine(), "k_steps": k, "rounds": rounds, "threads": torch.get_num_threads(), "teacher_s_per_step": per["teacher"],
           "distill_s_per_step": per["distill"], "teacher_full_steps": full_t, "distill_full_steps": full_d,
           "teacher_projected_min": s_t * full_t / 60, "distill_projected_min": s_d * full_d / 60,
           "ratio": (s_d * full_d) / (s_t * full_t), "distill_recipe": distill_recipe, "teacher_recipe": shown_path(teacher_recipe),
           "distill_overrides": list(overrides), "distill_mixed_precision": distill.train.mixed_precision,
           "teacher_bf16_s_per_step": per["teacher_bf16"], "ratio_vs_teacher_bf16": (s_d * full_d) / (s_tb * full_t)}
    OUT.mkdir(parents=True, exist_ok=True)
    # recipes/mnist.yaml -> distill_mnist_wall_ratio.json, recipes/mnist_1step.yaml -> distill_mnist_1step_wall_ratio.json
    (OUT / (out_name or f"distill_{Path(distill_recipe).stem}_wall_ratio.json")).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    write_table()
    return res


def machine() -> str:
    """The CPU (or GPU) the timing ran on and whether it computes bf16 natively: ratios differ between machines."""
    from distill.engine.hardware import cpu_model, native_bf16

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_model()
    return f"{dev}, {os.cpu_count()} cores, {native_bf16()[1]}"


def write_table() -> Path:
    """benchmarks/results/distill_wall_ratio.md: one row per wall-ratio result file, read back from the JSON."""
    lines = ["| result file | distillation recipe (overrides) | machine | threads | teacher s/step | distillation s/step "
             "| projected min, teacher / distillation | ratio |", "|---|---|---|---|---|---|---|---|"]
    for path in sorted(OUT.glob("distill_*wall_ratio*.json")):
        r = json.loads(path.read_text())
        span = lambda v: f"{min(v):.2f}-{max(v):.2f}"  # noqa: E731
        recipe = r["distill_recipe"] + (f" ({' '.join(r['distill_overrides'])})" if r["distill_overrides"] else "")
        lines.append(f"| {path.name} | {recipe} | {r.get('machine', 'not recorded')} | {r['threads']} | {span(r['teacher_s_per_step'])} | "
                     f"{span(r['distill_s_per_step'])} | {r['teacher_projected_min']:.1f} / "
                     f"{r['distill_projected_min']:.1f} | **{r['ratio']:.2f}x** |")
    out = OUT / "distill_wall_ratio.md"
    out.write_text("Distillation wall time against the teacher's training, alternated on one machine "
                   "(`python benchmarks/distill_wall_ratio.py`).\n\n"
                   + "\n".join(lines) + "\n")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data.source of both runs (default: the teacher recipe's)")
    ap.add_argument("--steps", type=int, default=40, metavar="K", help="steps timed per run")
    ap.add_argument("--rounds", type=int, default=2, help="teacher / distillation alternations")
    ap.add_argument("--recipe", default="recipes/mnist.yaml", help="the distillation recipe timed")
    ap.add_argument("--recipe-override", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of --recipe")
    ap.add_argument("--out", default="", help="result file name (default distill_<recipe>_wall_ratio.json)")
    ap.add_argument("--table", action="store_true", help="only rewrite results/distill_wall_ratio.md from the JSON files")
    a = ap.parse_args()
    if a.table:
        print(write_table().read_text())
        return
    wall_ratio(a.data, a.steps, a.rounds, a.recipe_override, a.recipe, a.out)


if __name__ == "__main__":
    main()
