"""A run folder's metrics.jsonl and recipe.yaml under canonical metric names (`KEYS`: the first key present
in the log wins, every key optional), and the `Finding` a doctor rule returns. Non-finite values are logged as
the strings "nan" / "inf" (see `distill.engine.run_dir.MetricsLog`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from ..errors import DistillError

# canonical name -> keys tried in order (first one present in the log wins)
KEYS: dict[str, tuple[str, ...]] = {
    "loss_g": ("loss_g", "g_loss", "loss_adv", "loss_gen", "generator_loss"),
    "loss_d": ("loss_d", "d_loss", "disc_loss", "discriminator_loss"),
    "d_acc_real": ("d_acc_real", "acc_real"),
    "d_acc_fake": ("d_acc_fake", "acc_fake"),
    "d_acc": ("d_acc", "disc_acc"),
    "grad_norm_g": ("grad_norm_g", "g_grad_norm", "grad_norm"),
    "coverage": ("class_coverage", "coverage", "mode_coverage"),
    "modes": ("modes", "modes_captured"),
    "diversity": ("diversity_ratio",),  # within-class feature spread, generated / real
    "fid": ("fid",),  # FID of samples logged during training (the GAN trainer's monitor)
    "modes_total": ("modes_total", "n_modes"),
    "lr_g": ("lr_g", "lr"),
    "lr_d": ("lr_d", "d_lr"),
    "dataset_size": ("dataset_size", "num_train", "n_train", "train_size", "num_images", "num_examples"),
    "batch_size": ("batch_size",),
}
ADVERSARIAL = ("loss_d", "d_acc_real", "d_acc_fake", "d_acc")


def to_float(v: Any) -> Optional[float]:
    """JSON value -> float ("nan", "inf", "-inf" strings included); None for non-numbers."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        return float(v.strip().lower().replace("infinity", "inf"))
    return None


@dataclass
class RunData:
    folder: Path
    rows: list[dict]
    recipe: dict = field(default_factory=dict)
    skipped_lines: int = 0

    def key(self, name: str) -> Optional[str]:
        """The log's key for a canonical metric name, or None."""
        for k in KEYS.get(name, (name,)):
            if any(k in r for r in self.rows):
                return k
        return None

    def series(self, name: str, finite: bool = True) -> list[tuple[int, float]]:
        """[(step, value)] for a canonical metric; non-finite values dropped unless finite=False."""
        k = self.key(name)
        if k is None:
            return []
        out = []
        for i, r in enumerate(self.rows):
            v = to_float(r.get(k))
            if v is not None and (not finite or math.isfinite(v)):
                out.append((int(r.get("step", i)), v))
        return out

    def recipe_value(self, names: tuple[str, ...], path_hint: str = "", exclude: str = "") -> Optional[float]:
        """First numeric recipe value whose dotted key ends with one of `names` (and contains
        `path_hint`, and not `exclude`)."""
        flat = _flatten(self.recipe)
        for n in names:
            for dotted, v in flat.items():
                low = dotted.lower()
                if (dotted.split(".")[-1] == n and path_hint in low and not (exclude and exclude in low)
                        and to_float(v) is not None):
                    return to_float(v)
        return None

    def last_value(self, name: str) -> Optional[float]:
        s = self.series(name)
        return s[-1][1] if s else None

    @property
    def adversarial(self) -> bool:
        return any(self.key(k) for k in ADVERSARIAL)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


@dataclass
class Finding:
    key: str  # rule name
    score: float  # 0..1, higher = more likely the cause
    cause: str
    evidence: str
    fix: str  # one line
    watch: str  # what to compare on the rerun


def load_run(folder: str | Path) -> RunData:
    folder = Path(folder)
    if not folder.is_dir():
        raise DistillError(f"{folder}: no such run folder")
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise DistillError(f"{path}: not found (is {folder} a run folder?)")
    rows, skipped = [], 0
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a truncated last line of a killed run
            skipped += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    if not rows:
        raise DistillError(f"{path}: no metrics rows")
    recipe: dict = {}
    rp = folder / "recipe.yaml"
    if rp.is_file():
        try:
            loaded = yaml.safe_load(rp.read_text())
            recipe = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            recipe = {}
    return RunData(folder, rows, recipe, skipped)
