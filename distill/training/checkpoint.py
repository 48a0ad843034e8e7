"""Checkpoints written atomically (temp folder, then rename) and resumed exactly.

A checkpoint folder `checkpoints/checkpoint-<step>/` holds:
  <name>.safetensors  model weights (safetensors): an nn.Module, or any object with
                      state_dict()/load_state_dict() over tensors (e.g. LoRA adapter weights only)
  <name>.pt           optimizer / LR-scheduler / EMA states (tensors and numbers only, loaded
                      with `torch.load(weights_only=True)`: nothing is unpickled)
  state.json          the step and anything else the trainer needs
Randomness is a pure function of (seed, step), so no RNG state needs saving.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ..errors import DistillError


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("checkpoint-*") if (p / "state.json").is_file()]
    return sorted(dirs, key=lambda p: int(p.name.split("-")[1]))


def resolve_resume(run_dir: Path, resume: Optional[str]) -> Optional[Path]:
    if not resume:
        return None
    if resume == "latest":
        dirs = checkpoint_dirs(run_dir)
        return dirs[-1] if dirs else None  # nothing to resume: start fresh, as diffusers does
    p = Path(resume)
    if not (p / "state.json").is_file():
        raise DistillError(f"{p}: not a checkpoint folder (no state.json)")
    return p


def save_checkpoint(run_dir: Path, step: int, models: dict, states: dict, extra: Optional[dict] = None,
                    total_limit: Optional[int] = None) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in models.items():
        if isinstance(module, torch.nn.Module):
            save_model(module, str(tmp / f"{name}.safetensors"))
        else:
            save_file(module.state_dict(), str(tmp / f"{name}.safetensors"))
    for name, obj in states.items():
        torch.save(obj.state_dict(), tmp / f"{name}.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **(extra or {})}))
    if final.exists():  # same step saved twice (e.g. final step == a periodic one)
        old = root / f".old-checkpoint-{step}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if total_limit is not None and total_limit > 0:
        for p in checkpoint_dirs(run_dir)[:-total_limit]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: Path, models: dict, states: dict, map_location="cpu") -> dict:
    path = Path(path)
    for name, module in models.items():
        f = path / f"{name}.safetensors"
        if not f.is_file():
            raise DistillError(f"{f}: missing from checkpoint")
        if isinstance(module, torch.nn.Module):
            load_model(module, str(f), device=str(next(module.parameters()).device))
        else:
            module.load_state_dict(load_file(str(f)))
    for name, obj in states.items():
        f = path / f"{name}.pt"
        if not f.is_file():
            raise DistillError(f"{f}: missing from checkpoint")
        obj.load_state_dict(torch.load(f, map_location=map_location, weights_only=True))
    return json.loads((path / "state.json").read_text())
