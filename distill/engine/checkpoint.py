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

Damaged checkpoints (a run killed mid-write on a full disk, a truncated copy): `resolve_resume(run_dir,
"latest")` verifies each candidate (`checkpoint_problem`) and falls back to the newest good one with a
warning naming the bad file; a damaged explicit checkpoint, or a file that fails to load, is a one-line
`DistillError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from ..errors import DistillError


def weights_fingerprint(net: torch.nn.Module) -> str:
    """A short hash of a network's parameters and buffers: an eval row names the weights it scored, so a
    later run in the same folder (resumed, retrained) never reuses another model's numbers, and a distillation
    checkpoint names the teacher it was trained against."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy())  # the buffer, not a copy
    return h.hexdigest()[:16]


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """`checkpoints/checkpoint-<step>/` folders holding a state.json, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "state.json").is_file()]
    return sorted(dirs, key=lambda p: int(p.name.split("-")[1]))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:160] if text else e.__class__.__name__)


def checkpoint_problem(path: Path) -> Optional[str]:
    """None when checkpoint folder `path` reads back; else one line naming its first bad file:
    state.json must be a JSON object with an integer step, every *.safetensors header must open
    (`safe_open` also checks the header covers the file: a truncated file fails), every *.pt must
    load with `torch.load(weights_only=True)`."""
    path = Path(path)
    state = path / "state.json"
    try:
        meta = json.loads(state.read_text())
    except (OSError, ValueError) as e:
        return f"{state}: not readable JSON ({_first_line(e)})"
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        return f"{state}: no integer 'step'"
    for f in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="pt") as h:
                h.keys()
        except Exception as e:  # SafetensorError, OSError: a damaged file of any kind
            return f"{f}: damaged safetensors file ({_first_line(e)})"
    for f in sorted(path.glob("*.pt")):
        try:
            torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError, EOFError, RuntimeError (bad zip): damaged
            return f"{f}: damaged state file ({_first_line(e)})"
    return None


def resolve_resume(run_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """The checkpoint to resume from: None (start fresh), the newest good one for "latest", or the
    given folder, which must be a whole checkpoint."""
    if not resume:
        return None
    if resume == "latest":
        dirs = checkpoint_dirs(run_dir)
        if not dirs:
            return None  # nothing to resume: start fresh, as diffusers does
        skipped = []
        for d in reversed(dirs):  # newest first
            problem = checkpoint_problem(d)
            if problem is None:
                for bad, why in skipped:  # warned only when falling back: all damaged is the one error below
                    warnings.warn(f"{why}; skipping {bad.name}, resuming from {d.name}", stacklevel=2)
                return d
            skipped.append((d, problem))
        raise DistillError(f"{run_dir}: no readable checkpoint ({len(dirs)} damaged; newest: {skipped[0][1]})")
    p = Path(resume)
    if not (p / "state.json").is_file():
        raise DistillError(f"{p}: not a checkpoint folder (no state.json)")
    problem = checkpoint_problem(p)
    if problem is not None:
        raise DistillError(problem)
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
    `owners` maps an optimizer's name in `states` to the prepared model whose parameters it steps."""
    owners = owners or {}
    accelerator.wait_for_everyone()
    models = {k: gathered(accelerator, m) for k, m in models.items()}
    states = {k: gathered(accelerator, s, owners.get(k)) for k, s in states.items()}
    path = save_checkpoint(run_dir, step, models, states, extra, total_limit) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return path


def load_optimizers(accelerator, path: Path, owners: dict) -> None:
    """Under FSDP, after `accelerator.prepare`: load each `name: (model, optimizer)` state written by
    `save_all` into the sharded optimizer (every process reads the full file and keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    for name, (model, opt) in owners.items():
        f = Path(path) / f"{name}.pt"
        try:
            sd = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:
            raise DistillError(f"{f}: cannot load ({_first_line(e)})") from None
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
    """Load the weights and states of checkpoint folder `path` in place; -> its state.json. A file
    that is missing, damaged or does not fit its module is a one-line `DistillError` naming it."""
    path = Path(path)
    for name, module in models.items():
        f = path / f"{name}.safetensors"
        if not f.is_file():
            raise DistillError(f"{f}: missing from checkpoint")
        try:
            if isinstance(module, torch.nn.Module):
                load_model(module, str(f), device=str(next(module.parameters()).device))
            else:
                module.load_state_dict(load_file(str(f)))
        except Exception as e:  # SafetensorError (damaged), RuntimeError (keys/shapes do not fit)
            raise DistillError(f"{f}: cannot load ({_first_line(e)})") from None
    for name, obj in states.items():
        f = path / f"{name}.pt"
        if not f.is_file():
            raise DistillError(f"{f}: missing from checkpoint")
        try:
            obj.load_state_dict(torch.load(f, map_location=map_location, weights_only=True))
        except Exception as e:
            raise DistillError(f"{f}: cannot load ({_first_line(e)})") from None
    state = path / "state.json"
    try:
        meta = json.loads(state.read_text())
    except (OSError, ValueError) as e:
        raise DistillError(f"{state}: not readable JSON ({_first_line(e)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise DistillError(f"{state}: no integer 'step'")
    return meta
