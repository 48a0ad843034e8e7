"""`report.md` of a teacher run: the verdict on its best evaluated setting (the coverage check's thresholds
in words), training steps and wall time, the class names, the evaluation table and the sample grids."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..eval.evaluate import _fmt, best_row, grid_name
from ..eval.verdict import cost_line, teacher_verdict
from ..viz import classes_line, telling_names

COLUMNS = ["steps", "scheduler", "guidance_scale", "fid", "kid", "class_acc", "class_coverage", "intra_class_dist",
           "real_intra_class_dist", "sample_seconds"]


def last_grid(run_dir: Path) -> Optional[str]:
    """The training's last sample grid, relative to the run folder."""
    grids = sorted((run_dir / "samples").glob("step-*.png"))
    return str(grids[-1].relative_to(run_dir)) if grids else None


def write_teacher_report(recipe, run_dir: Path, rows: list[dict], num_classes: Optional[int],
                         class_names: Optional[list]) -> Path:
    from ..cards import run_facts

    run_dir = Path(run_dir)
    wall, steps, loss = run_facts(run_dir)
    lines = [f"# Teacher report: {recipe.name}", ""]
    if rows:
        best = best_row(rows)
        lines += [teacher_verdict(best, num_classes), ""]
    else:
        best = None
        lines += ["**Verdict: not evaluated (eval.num_samples is 0).**", ""]
    lines += [cost_line(steps, wall) + (f" Final loss {loss:.4f}." if loss is not None else ""), ""]
    class_names = telling_names(class_names)
    if class_names:
        lines += [classes_line(class_names), ""]
    grid = last_grid(run_dir)
    if grid:
        lines += [f"Samples at the last step ({grid}):", "", f"![last samples]({grid})", ""]
    if rows:
        ec = recipe.eval
        lines += ["## Evaluation", "", f"{ec.num_samples} class-balanced samples per row against the "
                  f"`{ec.reference_split}` split, features `{ec.features}`.", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
        base = rows[0]["guidance_scale"]
        best_grid = f"eval/{grid_name('teacher', best['steps'], best['guidance_scale'], base)}"
        lines += ["", f"Samples at the best setting:", "", f"![best setting]({best_grid})", ""]
    lines += ["Pipeline: this folder (`DiffusionPipeline.from_pretrained` of it after `import distill`; model card "
              "`README.md`); metrics: `metrics.jsonl` (diagnose with `distill doctor`)."]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
