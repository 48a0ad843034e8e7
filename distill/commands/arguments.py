"""Argument checks shared by the subcommands, so bad input fails before any work is done.

The number checks are argparse `type=` functions (raising `ArgumentTypeError`, which the CLI's
parser prints as one line naming the argument); the path checks raise `DistillError` naming the
argument and the path, and are called first thing in a command's `main` (a default output path is
only checked when the command runs, not whenever the parser is built).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..engine.run_dir import existing_ancestor
from ..errors import DistillError


def _number(text: str, cast, what: str):
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return v


def _at_least(cast, what: str, low, strict: bool, doc: str):
    """An argparse `type=`: a finite number of `cast` >= low (> low when `strict`)."""
    def check(text: str):
        v = _number(text, cast, what)
        if v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {v}")
        return v

    check.__doc__ = doc
    return check


positive_int = _at_least(int, "an integer", 1, False, "Steps, batch sizes, repeats, threads: an integer >= 1.")
non_negative_int = _at_least(int, "an integer", 0, False, "Counts that may be 0 (profile repeats, evaluation samples).")
non_negative_float = _at_least(float, "a number", 0, False, "Guidance scales, time budgets, regulariser weights: >= 0.")
positive_float = _at_least(float, "a number", 0, True, "Learning rates and multipliers: a finite number > 0.")


def threads(text: str):
    """`--threads`: "auto" (distill.engine.threads) or an integer >= 1."""
    return text if text == "auto" else positive_int(text)


def check_input_path(path, what: str, kind: str = "any") -> Path:
    """`path` must exist (kind "file": a file, "dir": a folder, "any": either)."""
    p = Path(path)
    if not p.exists():
        raise DistillError(f"{what} {p}: not found")
    if kind == "file" and not p.is_file():
        raise DistillError(f"{what} {p}: not a file")
    if kind == "dir" and not p.is_dir():
        raise DistillError(f"{what} {p}: not a folder")
    return p


def check_output_path(path, what: str, kind: str = "file") -> Path:
    """`path` must be creatable: its nearest existing ancestor must be a writable folder (not a
    file: `out.png/x` below an existing file fails), and an existing `path` must be a writable file
    (kind "file") or folder (kind "dir")."""
    p = Path(path)
    if p.exists():
        if kind == "dir" and not p.is_dir():
            raise DistillError(f"{what} {p}: exists and is not a folder")
        if kind == "file" and p.is_dir():
            raise DistillError(f"{what} {p}: is a folder, expected a file path")
        if not os.access(p, os.W_OK):
            raise DistillError(f"{what} {p}: not writable")
        return p
    parent = existing_ancestor(p)
    if not parent.is_dir():
        raise DistillError(f"{what} {p}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DistillError(f"{what} {p}: cannot be created, {parent} is not writable")
    return p


def check_pipeline_path(path, what: str = "pipeline") -> None:
    """A pipeline is a local folder or a Hub id (`org/name`). A path that exists must be a folder with
    model_index.json (or a run folder of the earlier layout, with pipeline/model_index.json); anything else
    must look like a Hub id `org/name` (x, ./x, a/b/c are local paths that do not exist)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise DistillError(f"{what} {p}: not a pipeline folder")
        from ..diffusion.pipelines import exported_pipeline

        if not (exported_pipeline(p) / "model_index.json").is_file():
            raise DistillError(f"{what} {p}: not a pipeline folder (no model_index.json)")
    elif str(path).startswith((".", "/", "~")) or len(p.parts) != 2:
        raise DistillError(f"{what} {p}: not found")
