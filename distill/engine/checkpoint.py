"""Checkpoints written atomically (temp folder, then rename) and resumed exactly.

A checkpoint folder `checkpoints/checkpoint-<step>/` holds:
  <name>.safetensors  model weights (safetensors): an nn.Module, or any object with
                      state_dict()/load_state_dict() over tensors (e.g. LoRA adapter weights only)
  <name>.pt           optimizer / LR-scheduler / EMA states (tensors and numbers only, loaded
                      with `torch.load(weights_only=True)`: nothing is unpickled)
  state.json          the step and anything else the trainer needs
Randomness is a pure function of (seed, step), so no RNG state needs saving.

Under FSDP (accelerate, FSDP2) parameters and optimizer states are sharded: `save_all` gathers them
on every process (`gathered`) and the main process writes the same files (optimizer states keyed by
parameter name instead of index: resume an FSDP checkpoint under FSDP); on resume the weights load
into the unsharded modules before `accelerator.prepare`, the optimizer states after it
(`load_optimizers`).
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


def is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def gathered(accelerator, obj, model=None):
    """`obj` as `save_checkpoint` writes it. Under FSDP every process must call this: the full state
    dict is gathered to the main process (the others get {}); `obj` is a prepared module, an object
    wrapping one as `obj.module` with `obj.select(module_state_dict)` (LoraWeights), or, with `model`
    (the prepared module it steps), an optimizer. Otherwise `obj` itself (written as before)."""
    if not is_fsdp(accelerator) or not (model is not None or hasattr(obj, "select") or isinstance(obj, torch.nn.Module)):
        return obj  # also LR schedulers: not sharded
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    if model is not None:
        return get_optimizer_state_dict(model, getattr(obj, "optimizer", obj), options=opts)
    if hasattr(obj, "select"):
        sd = get_model_state_dict(obj.module, options=opts)
        return obj.select(sd) if sd else {}
    return get_model_state_dict(obj, options=opts)


def save_all(accelerator, run_dir: Path, step: int, models: dict, states: dict, owners: Optional[dict] = None,
             total_limit: Optional[int] = None, extra: Optional[dict] = None) -> Optional[Path]:
    """`save_checkpoint` called by every process, written by the main one (its path; None elsewhere).
    `owners` maps an optimizer's name in `states` to the prepared model whose parameters it steps;
    `extra`: more keys for state.json."""
    owners = owners or {}
    accelerator.wait_for_everyone()
    models = {k: gathered(accelerator, m) for k, m in models.items()}
    states = {k: gathered(accelerator, s, owners.get(k)) for k, s in states.items()}
    path = save_checkpoint(run_dir, step, models, states, extra, total_limit=total_limit) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return path


def load_optimizers(accelerator, path: Path, owners: dict) -> None:
    """Under FSDP, after `accelerator.prepare`: load each `name: (model, optimizer)` state written by
    `save_all` into the sharded optimizer (every process reads the full file and keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    for name, (model, opt) in owners.items():
        sd = torch.load(Path(path) / f"{name}.pt", map_location="cpu", weights_only=True)
        set_optimizer_state_dict(model, getattr(opt, "optimizer", opt), sd, options=StateDictOptions(full_state_dict=True))


def save_checkpoint(run_dir: Path, step: int, models: dict, states: dict, extra: Optional[dict] = None,
                    total_limit: Optional[int] = None) -> Path:
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, module in models.items():
        if isinstance(module, dict):  # already a state dict (gathered)
            save_file(module, str(tmp / f"{name}.safetensors"))
        elif isinstance(module, torch.nn.Module):
            save_model(module, str(tmp / f"{name}.safetensors"))
        else:
            save_file(module.state_dict(), str(tmp / f"{name}.safetensors"))
    for name, obj in states.items():
        torch.save(obj if isinstance(obj, dict) else obj.state_dict(), tmp / f"{name}.pt")
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
