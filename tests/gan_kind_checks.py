"""Checks every GAN architecture kind passes end to end: a tiny `task: gan` run interrupted and resumed
repeats an uninterrupted one, its export is the EMA weights and `distill sample` loads it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.config import recipe_from_dict
from distill.engine.run_dir import read_metrics
from distill.gan.architectures import is_generator_folder, load_generator
from distill.gan.batchnorm import standing_statistics
from distill.gan.train import train_gan

from .test_gan_train import _tensors

ROOT = Path(__file__).resolve().parent.parent


def tiny_kind_recipe(tmp_path, kind: str, generator: dict, gan: dict, **train) -> dict:
    """16 px digits (levels 4, 8, 16), both networks of `kind`, 6 steps of batch 8."""
    return {
        "task": "gan", "name": f"tiny-{kind}", "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": 16, "limit": 96},
        "generator": {"kind": kind, "z_dim": 12, "w_dim": 8, "width": 4, "max_width": 16, **generator},
        "discriminator": {"kind": kind, "width": 4, "max_width": 16},
        "gan": {"r1_gamma": 0.0, **gan},
        "train": {"max_steps": 6, "batch_size": 8, "log_every": 1, "sample_every": 3, "checkpoint_every": 6,
                  "ema_decay": 0.9, "learning_rate": 2e-4, "adam_beta1": 0.5, "adam_beta2": 0.999, **train},
        "eval": {"num_samples": 0, "monitor_samples": 0, "features": "classifier:digits"},
    }


def export_of(run: Path) -> Path:
    """The exported generator of a run: the run folder itself (diffusers' layout) or its generator/."""
    return run if is_generator_folder(run) else run / "generator"


def check_resume_export_sample(tmp_path, recipe, metrics=("loss_d", "loss_g", "grad_norm_d", "grad_norm_g")) -> Path:
    """`recipe(folder, **train)` -> a recipe dict. Interrupted at step 3 and resumed, the run ends with the
    same weights, buffers (batch-norm statistics, spectral-norm vectors), EMA, optimizer states and metrics as
    an uninterrupted one, bitwise; the export holds the EMA weights and `distill sample` draws a grid from it.
    -> the uninterrupted run's export"""
    full = train_gan(recipe_from_dict(recipe(tmp_path / "a")))
    part = train_gan(recipe_from_dict(recipe(tmp_path / "b", interrupt_at=3)))
    assert (part / "checkpoints" / "checkpoint-3").is_dir() and not is_generator_folder(export_of(part))
    assert train_gan(recipe_from_dict(recipe(tmp_path / "b", resume_from_checkpoint="latest"))) == part
    a, b = full / "checkpoints" / "checkpoint-6", part / "checkpoints" / "checkpoint-6"
    for name in ("generator.safetensors", "discriminator.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    for name in ("ema.pt", "opt_g.pt", "opt_d.pt"):
        ta, tb = (_tensors(torch.load(d / name, weights_only=True)) for d in (a, b))
        assert len(ta) == len(tb) > 0 and all(torch.equal(x, y) for x, y in zip(ta, tb)), name
    rows = [(x, y) for x, y in zip(read_metrics(full / "metrics.jsonl"), read_metrics(part / "metrics.jsonl"))
            if "loss_d" in x]
    assert [x["step"] for x, _ in rows] == list(range(1, 7))
    for x, y in rows:
        for k in metrics:
            assert x[k] == pytest.approx(y[k], rel=1e-6), (x["step"], k)
    G = load_generator(export_of(full))
    shadow = torch.load(a / "ema.pt", weights_only=True)["shadow_params"]
    assert all(torch.equal(p, s) for p, s in zip(G.parameters(), shadow))
    # its batch-norm statistics: re-estimated for the EMA weights (standing statistics; none for most kinds)
    r = recipe_from_dict(recipe(tmp_path / "a"))
    ref = copy.deepcopy(G)
    ref.load_state_dict(load_file(a / "generator.safetensors"))
    with torch.no_grad():
        for p, s in zip(ref.parameters(), shadow):
            p.copy_(s)
    standing_statistics(ref.train(), r.gan.standing_stats, r.train.batch_size, r.train.seed)
    stats = [k for k in G.state_dict() if "running_" in k]
    assert all(torch.equal(G.state_dict()[k], ref.state_dict()[k]) for k in stats)
    out = tmp_path / "grid.png"
    res = subprocess.run([sys.executable, "-m", "distill.cli", "sample", str(export_of(full)), "--per-class", "2",
                          "--truncation", "0.7", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and out.stat().st_size > 0, res.stderr[-2000:]
    return export_of(full)
