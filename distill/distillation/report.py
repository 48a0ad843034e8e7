"""After distilling: evaluate teacher and student through the same sampler, time them, and write
`report.md` with side-by-side grids, an FID table and a latency table into the run folder.

The student is compared with the teacher's *best* step count, not a convenient one: an
under-trained teacher can be better at 8 DDIM steps than at 50.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..engine.checkpoint import weights_fingerprint
from ..eval.evaluate import _fmt, best_row, cached_rows, evaluate_pipeline, setting_name
from ..eval.verdict import cost_line, last_training_warning, shortfalls, student_verdict
from ..diffusion.pipelines import DistillPipeline
from ..diffusion.sampling import default_sampler, make_scheduler, sample
from ..diffusion.teachers import load_teacher, resolve_teacher_path
from ..engine.randomness import rng
from ..viz import classes_line, grid_tensor, line_plot, telling_names
from .monitor import student_guidance


def latency_rows(teacher_path: str, student_path: str, steps: list[int], batch: int, repeats: int) -> list[dict]:
    """Teacher at 50 steps (without and with guidance 2) and the student at `steps`, timed by the
    latency benchmark's harness (`distill.bench`) at `batch`."""
    from ..bench import BenchConfig, run_benchmark

    cfg = BenchConfig(teacher=teacher_path, student=student_path, batch_sizes=[batch], teacher_steps=[50],
                      student_steps=list(steps), guidance=2.0, warmup=2, repeats=repeats, profile_repeats=0,
                      threads=torch.get_num_threads(), pair_headline=False)  # the report shows rows only
    return [r for r in run_benchmark(cfg, progress=False).rows if "error" not in r]


@torch.no_grad()
def side_by_side(teacher, student, path, seed: int = 0, per_class: int = 4, student_timesteps: int = 4,
                 class_names=None):
    """Rows: teacher 50 steps, teacher 1 step (its default sampler: DDIM, or flow-matching Euler), student 1 step,
    student min(4, K) steps for a student of K > 1 timesteps; same noise/labels. `class_names`: named over the
    figure, one per column."""
    cfg = teacher.unet.config
    k = teacher.num_classes or 10
    labels = torch.arange(k).repeat(per_class) if teacher.num_classes else None
    noise = torch.randn(k * per_class, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=rng(seed, "sbs"))
    name = default_sampler(teacher.scheduler.config)
    sched = make_scheduler(name, teacher.scheduler.config)
    panels = [(f"teacher, 50 {name} steps", sample(teacher.unet, sched, noise, labels, 50)),
              (f"teacher, 1 {name} step", sample(teacher.unet, sched, noise, labels, 1)),
              ("student, 1 step", sample(student.unet, student.scheduler, noise, labels, 1))]
    if student_timesteps > 1:  # a 1-step student has one timestep
        n_steps = min(4, student_timesteps)
        panels.append((f"student, {n_steps} steps", sample(student.unet, student.scheduler, noise, labels, n_steps,
                                                     generator=rng(seed, "sbs4"))))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 4.6), dpi=110)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, x) in zip(axes.flat, panels):
        ax.imshow(grid_tensor(x, nrow=k).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    if class_names and teacher.num_classes:
        fig.suptitle("columns, left to right: " + ", ".join(map(str, class_names)), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def judged_head(run_dir: Path, teacher_path: str, s1: dict, best: dict, num_classes, names) -> dict:
    """The report's first lines: the verdict (the 1-step student against the teacher's best setting, the
    coverage check's thresholds in words) and the cost (steps, wall time, distillation/teacher time ratio; the
    teacher's time from its run's metrics.jsonl or its card's metadata)."""
    from ..bench.compare import train_wall
    from ..cards import run_facts
    from ..engine.run_dir import read_metrics

    wall, steps, _ = run_facts(run_dir)
    f = run_dir / "metrics.jsonl"
    warning = last_training_warning(read_metrics(f)) if f.is_file() else None
    home = Path(teacher_path)
    t_wall, t_src = train_wall([home, home.parent]) if home.is_dir() else (None, None)
    return {"verdict": student_verdict(s1, best, num_classes, warning), "wall": wall, "steps": steps,
            "teacher_wall": t_wall, "cost": cost_line(steps, wall, t_wall, t_src)}


def write_distill_report(recipe, run_dir: Path) -> Path:

    run_dir = Path(run_dir)
    rc, ec = recipe.report, recipe.eval
    teacher_path = resolve_teacher_path(recipe.distill.teacher)
    teacher = load_teacher(teacher_path)
    student = DistillPipeline.from_pretrained(str(run_dir))
    data_cfg = recipe.data  # evaluate_pipeline loads the reference at each pipeline's resolution
    out = run_dir / "eval"
    names = telling_names(student.config.get("class_names")) if student.num_classes else None
    side_by_side(teacher, student, run_dir / "side_by_side.png", seed=ec.seed,
                 student_timesteps=len(recipe.distill.student_timesteps), class_names=names)
    sampler = default_sampler(teacher.scheduler.config)  # ddim, or flow-euler for a flow teacher
    t_rows = cached_rows(teacher_path, "teacher", ec, rc.teacher_steps, ec.guidance_scale, sampler, sweep_guidance=True)
    if t_rows is None:  # the steps sweep, then eval.guidance_sweep: the teacher's best setting may be guided
        t_rows = evaluate_pipeline(teacher, ec, data_cfg, out, tag="teacher", scheduler=sampler, steps=rc.teacher_steps,
                                   sweep_guidance=True)
    # only rows of these very weights: a run resumed to more steps in this folder re-scores its student
    weights = weights_fingerprint(student.unet)
    w = student_guidance(recipe.distill, student.unet)  # a w-conditioned student at the recipe's guidance, else 1
    s_rows = cached_rows(run_dir, "student", ec, rc.student_steps, w, scheduler="pipeline", weights=weights)
    if s_rows is None:
        s_rows = evaluate_pipeline(student, ec, data_cfg, out, tag="student", scheduler="pipeline",
                                   steps=rc.student_steps, guidance_scale=w, weights=weights)
    t_line = [r for r in t_rows if r["guidance_scale"] == ec.guidance_scale]
    line_plot({f"teacher ({sampler})": ([r["steps"] for r in t_line], [r["fid"] for r in t_line]),
               "student": ([r["steps"] for r in s_rows], [r["fid"] for r in s_rows])},
              run_dir / "fid_vs_steps.png", "sampling steps", "FID (classifier features)", logx=True,
              xticks=sorted({r["steps"] for r in t_rows + s_rows}))
    # latency, through the same sampler
    b, n = rc.latency_batch, rc.latency_repeats
    lat = [(r["model"] + (" + guidance" if r["guidance"] != 1.0 else ""), r["steps"], r["guidance"], r["nfe"], r["median_s"])
           for r in latency_rows(teacher_path, str(run_dir), rc.student_steps, b, n)]
    best = best_row(t_rows)
    s1 = next((r for r in s_rows if r["steps"] == 1), s_rows[0])
    t1 = next((r for r in t_line if r["steps"] == 1), None)
    head = judged_head(run_dir, teacher_path, s1, best, student.num_classes, names)
    summary = {"verdict": head["verdict"], "shortfalls": shortfalls(s1, student.num_classes),
               "training_seconds": head["wall"], "training_steps": head["steps"],
               "teacher_training_seconds": head["teacher_wall"], "class_names": names,
               "teacher_best": {"steps": best["steps"], "guidance": best["guidance_scale"], "fid": best["fid"]},
               "teacher_50": next((r["fid"] for r in t_line if r["steps"] == 50), None),
               "teacher_1": t1["fid"] if t1 else None, "student_1": s1["fid"],
               "student": {r["steps"]: r["fid"] for r in s_rows},
               "latency_s": [dict(model=m, steps=s, guidance=g, nfe=nfe, seconds=sec, per_image_ms=1000 * sec / b) for m, s, g, nfe, sec in lat]}
    (run_dir / "report.json").write_text(json.dumps(summary, indent=1))
    cols = ["model", "steps", "guidance_scale", "fid", "kid", "class_acc", "intra_class_dist", "class_coverage"]
    lines = [f"# Distillation report: {recipe.name}", "", head["verdict"], "", head["cost"], ""]
    if names:
        lines += [classes_line(names), ""]
    lines += [f"Teacher `{recipe.distill.teacher}`; FID/KID on {ec.num_samples} class-balanced samples against the "
             f"`{ec.reference_split}` split, features `{ec.features}` (a classifier never used in training). "
             f"Teacher sampled with {sampler}; student with its own scheduler, "
             f"{'no guidance' if w == 1.0 else f'told guidance {w:g} (its input, one network call per step)'}.", "",
             "![side by side](side_by_side.png)", "", "## FID", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in t_rows + s_rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    lines += ["", f"Teacher's best: {setting_name(best)}, FID {best['fid']:.3f}. Student 1 step: FID {s1['fid']:.3f}"
              + (f" ({s1['fid'] / t1['fid']:.2f}x the teacher's own 1-step FID)." if t1 else "."),
              f"Within-class diversity (mean pairwise feature distance; real data: {s1.get('real_intra_class_dist', float('nan')):.3f}) "
              "guards against a student that draws one image per class.", "",
              "![FID vs steps](fid_vs_steps.png)", "", f"## Latency (batch {b}, median of {n}, {torch.get_num_threads()} threads, "
              f"{'cuda' if torch.cuda.is_available() else 'cpu'})", "",
              "| model | steps | guidance | network evals | s per batch | ms per image |", "|---|---|---|---|---|---|"]
    for m, s, g, nfe, sec in lat:
        lines.append(f"| {m} | {s} | {g} | {nfe} | {sec:.4f} | {1000 * sec / b:.3f} |")
    lines += ["", "Sample grids during training: `samples/`; metrics: `metrics.jsonl` (diagnose with `distill doctor`)."]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    from ..cards import hardware, run_facts, student_card

    from .recipe import method_name

    wall, steps, _ = run_facts(run_dir)
    card = student_card(recipe, student.unet, s_rows, best, wall, hardware(), steps,
                        method_name(recipe))
    card.save(run_dir / "README.md")  # the Hub card of the exported student, numbers from the rows above
    return path
