"""The first lines of a report: whether a run worked, judged from its evaluation rows with the same
thresholds the distillation trainer's coverage check warns at (distill.distillation.monitor), and what it
cost (training steps, wall time, the distillation/teacher time ratio).

A row (distill.eval.evaluate) carries `fid`, and for a conditional model `class_coverage` (fraction of
classes the evaluation classifier finds among the samples) and `intra_class_dist` with the real data's
`real_intra_class_dist` (mean pairwise feature distance within a class).
"""

from __future__ import annotations

import math
from typing import Optional

COVERAGE_MIN = 0.9  # fewer classes than this fraction generated: the student misses classes
DIVERSITY_MIN = 0.5  # within-class distance below half the real data's: one image per class, or nearly


def diversity_ratio(row: dict) -> Optional[float]:
    """Within-class feature distance of the samples over the real data's; None where a row has neither."""
    d, real = row.get("intra_class_dist"), row.get("real_intra_class_dist")
    if not isinstance(d, (int, float)) or not isinstance(real, (int, float)) or not real > 0:
        return None
    return float(d) / float(real)


def shortfalls(row: dict, num_classes: Optional[int] = None) -> list[str]:
    """In words, each threshold a row fails: class coverage, within-class diversity."""
    out = []
    cov = row.get("class_coverage")
    if isinstance(cov, (int, float)) and cov < COVERAGE_MIN:
        out.append(f"only {round(cov * num_classes)} of {num_classes} classes generated" if num_classes
                   else f"class coverage {cov:.2f} (below {COVERAGE_MIN:g})")
    ratio = diversity_ratio(row)
    if ratio is not None and ratio < DIVERSITY_MIN:
        out.append(f"within-class diversity {ratio:.2f}x that of real data (below {DIVERSITY_MIN:g}x)")
    return out


def setting(row: dict) -> str:
    g = float(row.get("guidance_scale", 1.0) or 1.0)
    return f"{row['steps']} step{'s' if row['steps'] != 1 else ''}" + (f" at guidance {g:g}" if g != 1.0 else "")


def student_verdict(student: dict, teacher_best: dict, num_classes: Optional[int] = None,
                    training_warning: Optional[str] = None) -> str:
    """One line: FAILED (mode collapse, with the failed thresholds in words) or the student's FID at its setting
    against the teacher's best setting. `training_warning`: the last coverage check's warning, if any."""
    fails = shortfalls(student, num_classes)
    fid, best = student["fid"], teacher_best["fid"]
    ratio = f"{fid / best:.2f}x" if best > 0 and math.isfinite(best) else "n/a"
    compare = (f"student at {setting(student)}: FID {fid:.3f}, {ratio} the teacher's best "
               f"({setting(teacher_best)}, FID {best:.3f})")
    if fails:
        t_fails = shortfalls(teacher_best, num_classes)
        inherited = f" The teacher fails the same check at its best setting: {'; '.join(t_fails)}." if t_fails else ""
        return f"**Verdict: FAILED, mode collapse: {'; '.join(fails)}.** {compare[0].upper()}{compare[1:]}.{inherited}"
    note = f" The last coverage check during training warned: {training_warning}." if training_warning else ""
    return f"**Verdict: {compare}; every threshold of the coverage check passed.**{note}"


def teacher_verdict(best: dict, num_classes: Optional[int] = None) -> str:
    """One line on a teacher's best setting, FAILED where its samples there fail the coverage thresholds."""
    fails = shortfalls(best, num_classes)
    head = f"best setting {setting(best)}, FID {best['fid']:.3f}"
    if fails:
        return f"**Verdict: FAILED, {'; '.join(fails)} at its best setting ({head}).**"
    return f"**Verdict: {head}; every class drawn, within-class diversity passes the coverage check's thresholds.**"


def minutes(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def cost_line(steps: Optional[int], wall: Optional[float], teacher_wall: Optional[float] = None,
              teacher_source: Optional[str] = None) -> str:
    """Training steps and wall time; with the teacher's training time, the distillation/teacher time ratio."""
    line = f"Training: {steps if steps is not None else 'unknown'} steps, wall time {minutes(wall)}"
    if teacher_wall:
        line += f"; the teacher trained {minutes(teacher_wall)} ({teacher_source})"
        if wall:
            line += f": distillation/teacher time ratio {wall / teacher_wall:.2f}"
    return line + "."


def last_training_warning(rows: list[dict]) -> Optional[str]:
    """The collapse warning of the last coverage check in metrics.jsonl rows, or None."""
    checks = [r for r in rows if "class_coverage" in r]
    return checks[-1].get("collapse_warning") if checks else None
