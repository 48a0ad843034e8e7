"""The run folder: resolved recipe, metrics.jsonl, TensorBoard logs, sample grids, checkpoints,
exported pipeline. One folder per run (`recipe.output_dir`)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from ..config import dump_recipe
from ..errors import DistillError


def check_output_dir(path) -> Path:
    """`output_dir` must be a folder or creatable as one: a DistillError naming it when it, or the nearest
    existing folder above it, is a file (checked before anything is written)."""
    run_dir = Path(path)
    if run_dir.exists():
        if not run_dir.is_dir():
            raise DistillError(f"output_dir {run_dir}: is a file, expected a folder")
        return run_dir
    parent = existing_ancestor(run_dir)
    if not parent.is_dir():
        raise DistillError(f"output_dir {run_dir}: cannot be created, {parent} is a file")
    return run_dir


def existing_ancestor(path) -> Path:
    """The nearest folder or file above `path` that exists (where creating `path` would start)."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def prepare_run_dir(recipe, resuming: bool, is_main: bool = True, dump: bool = True) -> Path:
    """Create the run folder; refuse to overwrite a run that has checkpoints unless resuming. The
    resolved recipe is written as recipe.yaml (`dump`; the engine writes it once set-up succeeded)."""
    run_dir = check_output_dir(recipe.output_dir)
    ckpts = run_dir / "checkpoints"
    if not resuming and ckpts.is_dir() and any(ckpts.glob("checkpoint-*")):
        raise DistillError(
            f"{run_dir}: already holds checkpoints; resume with train.resume_from_checkpoint=latest "
            f"or choose another output_dir"
        )
    if is_main:
        (run_dir / "samples").mkdir(parents=True, exist_ok=True)
        if dump:
            dump_recipe(recipe, run_dir / "recipe.yaml")
    return run_dir


def _clean(v: Any):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no nan/inf; keep it readable for the doctor
    return v


class MetricsLog:
    """Appends one JSON object per logged step to `metrics.jsonl` (main process only).

    On resume, lines past the resumed step (written after the last checkpoint of an interrupted
    run) are dropped so the log matches the weights."""

    def __init__(self, path: Path, resume_step: int = 0, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.t0 = time.time()
        if enabled and self.path.exists():
            keep = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(l + "\n" for l in keep))

    def log(self, step: int, **metrics) -> dict:
        row = {"step": step, "time": round(time.time() - self.t0, 3), **{k: _clean(v) for k, v in metrics.items()}}
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        return row


def read_metrics(path: str | Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def wall_seconds(rows: list[dict]) -> float:
    """Training wall time from metrics.jsonl rows: the sum of segment lengths ('time' restarts from 0
    when a run is resumed)."""
    total, last = 0.0, 0.0
    for r in rows:
        t = r.get("time")
        if not isinstance(t, (int, float)):
            continue
        if t < last:
            total += last
        last = t
    return total + last
