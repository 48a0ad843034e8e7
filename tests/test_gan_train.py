"""End-to-end runs of `task: gan` on tiny models: run folder, exact resume, export, sampling, the
doctor on its metrics, and bad input as one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill import cli
from distill.config import recipe_from_dict
from distill.diagnostics.doctor import diagnose, load_run
from distill.engine.run_dir import read_metrics
from distill.errors import DistillError
from distill.gan.architectures import load_generator
from distill.gan.train import train_gan

ROOT = Path(__file__).resolve().parent.parent


def tiny_gan(tmp_path, loss="ns", eval_samples=0, **train) -> dict:
    """8 px digits, networks of a few thousand parameters: seconds per run."""
    return {
        "task": "gan", "name": "tiny-gan", "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": 8, "limit": 96},
        "generator": {"z_dim": 8, "w_dim": 8, "width": 4, "max_width": 8},
        "discriminator": {"width": 4, "max_width": 8, "mbstd_group": 2},
        "gan": {"loss": loss, "r1_gamma": 0.1, "r2_gamma": 0.1 if loss == "rpgan" else 0.0, "reg_every": 2,
                "augment": "color,translation,cutout"},
        "train": {"max_steps": 6, "batch_size": 8, "log_every": 1, "sample_every": 3, "checkpoint_every": 3,
                  "ema_decay": 0.9, **train},
        "eval": {"num_samples": eval_samples, "batch_size": 40, "features": "classifier:digits",
                 "monitor_samples": 40 if eval_samples else 0},
    }


def run(tmp_path, **kw):
    return train_gan(recipe_from_dict(tiny_gan(tmp_path, **kw)))


def test_run_folder(tmp_path):
    run_dir = run(tmp_path, loss="rpgan", eval_samples=40)
    for f in ["recipe.yaml", "metrics.jsonl", "samples/step-0000003.png", "samples/step-0000006.png",
              "config.json", "diffusion_pytorch_model.safetensors",
              "pictures/style-mixing.png", "pictures/truncation.png", "pictures/interpolation.png",
              "eval/eval-gan.json", "eval/eval-gan.md", "eval/gan-psi1.png", "eval/gan-psi0.7.png",
              "report.md", "losses.png", "checkpoints/checkpoint-3/generator.safetensors",
              "checkpoints/checkpoint-6/discriminator.safetensors", "checkpoints/checkpoint-6/ema.pt"]:
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    assert any((run_dir / "logs").rglob("events.out.tfevents*"))
    rows = read_metrics(run_dir / "metrics.jsonl")
    head = rows[0]
    assert head["step"] == 0 and head["dataset_size"] == 96 and head["generator"] == "stylegan2" and head["params_g"] > 0
    train_rows = [r for r in rows[1:] if "loss_d" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 7))
    for key in ("loss_d", "loss_g", "d_acc_real", "d_acc_fake", "grad_norm_d", "grad_norm_g", "r1", "r2", "lr",
                "lr_d", "logit_real", "logit_fake"):
        assert key in train_rows[-1], key
    monitor = [r for r in rows if "fid" in r]
    assert [r["step"] for r in monitor] == [3, 6]
    assert {"class_coverage", "diversity_ratio", "class_acc"} <= set(monitor[-1])
    ev = json.loads((run_dir / "eval" / "eval-gan.json").read_text())
    assert [r["truncation"] for r in ev] == [1.0, 0.7] and all(r["fid"] > 0 for r in ev)
    # the exported generator's Hub card: metadata the Hub parser reads, each FID the one of eval-gan.json
    from huggingface_hub import ModelCard

    card = ModelCard.load(run_dir / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "diffusers" and {"gan", "class-conditional"} <= set(meta["tags"])
    results = card.data.eval_results
    assert [r.metric_value for r in results] == [round(r["fid"], 4) for r in ev]
    assert [r.metric_name for r in results] == ["FID, truncation psi 1", "FID, truncation psi 0.7"]
    assert meta["distill"]["training_steps"] == 6 and meta["distill"]["parameters"] == head["params_g"]
    report = (run_dir / "report.md").read_text()
    for text in ("## Evaluation", "pictures/style-mixing.png", "pictures/truncation.png",
                 "pictures/interpolation.png", "rpgan", "| truncation | fid |"):
        assert text in report, text
    # the exported EMA generator is the checkpoint's EMA weights
    G = load_generator(run_dir)
    shadow = torch.load(run_dir / "checkpoints" / "checkpoint-6" / "ema.pt", weights_only=True)["shadow_params"]
    assert all(torch.equal(p, s) for p, s in zip(G.parameters(), shadow))
    # the doctor reads the run: its metric names are the ones its rules expect
    data = load_run(run_dir)
    for name in ("loss_g", "loss_d", "d_acc_real", "d_acc_fake", "grad_norm_g", "coverage", "diversity",
                 "lr_g", "lr_d", "dataset_size", "batch_size"):
        assert data.key(name) is not None, name
    assert "little_data" in [f.key for f in diagnose(data)]  # 96 images


@pytest.mark.parametrize("loss", ["ns", "rpgan"])
def test_resume_is_exact(tmp_path, loss):
    """Interrupted at step 3 (between two lazy R1 steps, style mixing and DiffAugment on) and resumed:
    the same weights, EMA, optimizer states and metrics as an uninterrupted run, bitwise."""
    full = run(tmp_path / "a", loss=loss, checkpoint_every=6)
    part = run(tmp_path / "b", loss=loss, checkpoint_every=6, interrupt_at=3)
    assert (part / "checkpoints" / "checkpoint-3").is_dir() and not (part / "config.json").exists()
    resumed = run(tmp_path / "b", loss=loss, checkpoint_every=6, resume_from_checkpoint="latest")
    assert resumed == part
    a, b = full / "checkpoints" / "checkpoint-6", part / "checkpoints" / "checkpoint-6"
    assert "w_avg" in load_file(a / "generator.safetensors")  # the truncation centre is checkpointed
    for name in ("generator.safetensors", "discriminator.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (name, k)
    for name in ("ema.pt", "opt_g.pt", "opt_d.pt"):
        sa = torch.load(a / name, weights_only=True)
        sb = torch.load(b / name, weights_only=True)
        flat_a, flat_b = _tensors(sa), _tensors(sb)
        assert len(flat_a) == len(flat_b) > 0
        assert all(torch.equal(x, y) for x, y in zip(flat_a, flat_b)), name
    ra, rb = read_metrics(full / "metrics.jsonl"), read_metrics(part / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == list(range(7))
    skip = {"time", "s_per_step"}
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys(), x["step"]
        for k in x.keys() - skip:  # numbers to 1e-6, strings (mixed_precision) exactly
            if isinstance(x[k], str):
                assert x[k] == y[k], (x["step"], k)
            else:
                assert x[k] == pytest.approx(y[k], rel=1e-6), (x["step"], k)
    assert torch.equal(torch.load(a / "ema.pt", weights_only=True)["shadow_params"][0],
                       torch.load(b / "ema.pt", weights_only=True)["shadow_params"][0])


def _tensors(obj) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def test_max_minutes_ends_training_and_still_exports(tmp_path, monkeypatch):
    """train.max_minutes: training ends at the first step at which the budget is spent (here after 3 steps of a
    clock that advances 15 s per reading: set-up, then one per step), with a checkpoint holding the time spent, then exports as at max_steps;
    resumed with the budget spent, it trains no further."""
    import distill.engine.trainer as engine_module

    clock = iter(range(0, 100000, 15))
    monkeypatch.setattr(engine_module, "_now", lambda kind="wall": float(next(clock)))
    bars, progress = [], engine_module.progress
    monkeypatch.setattr(engine_module, "progress", lambda *a, **k: bars.append(progress(*a, **k)) or bars[-1])
    run_dir = run(tmp_path, max_minutes=1.0, max_steps=50, checkpoint_every=50)
    assert bars[0].total == 3  # the progress bar ends where the budget does, not at max_steps
    state = json.loads((run_dir / "checkpoints" / "checkpoint-3" / "state.json").read_text())
    assert state["step"] == 3 and state["trained_seconds"] >= 60
    assert (run_dir / "config.json").is_file() and (run_dir / "samples" / "step-0000003.png").is_file()
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss_d" in r] == [1, 2, 3]
    again = run(tmp_path, max_minutes=1.0, max_steps=50, checkpoint_every=50, resume_from_checkpoint="latest")
    assert again == run_dir and not (run_dir / "checkpoints" / "checkpoint-4").exists()


def test_cpu_budget_clock_counts_this_process_only(monkeypatch):
    """train.budget_clock cpu reads the process's CPU time: time.sleep (another job using the core) does not count."""
    import time

    from distill.engine.trainer import _now

    w0, c0 = _now("wall"), _now("cpu")
    time.sleep(0.3)
    assert _now("wall") - w0 >= 0.29 and _now("cpu") - c0 < 0.1


def test_sample_command_draws_a_class_grid(tmp_path):
    run_dir = run(tmp_path, max_steps=2)
    out = tmp_path / "grid.png"
    res = subprocess.run([sys.executable, "-m", "distill.cli", "sample", str(run_dir), "--truncation",
                          "0.5", "--per-class", "3", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    from PIL import Image

    im = Image.open(out)
    assert im.size[0] > im.size[1] > 0  # 10 class columns x 3 rows
    # a GAN folder with a diffusion-only option, a folder holding neither kind: one line each
    for argv, msg in (([str(run_dir), "--steps", "4"], "--steps: for diffusion pipelines"),
                      ([str(run_dir), "--classes", "10"], "labels must lie in [0, 9]"),
                      ([str(tmp_path)], "nor a GAN generator folder"),
                      ([str(run_dir), "--truncation", "-1"], "must be >= 0")):
        assert _cli(["sample", *argv, "--out", str(tmp_path / "x.png")], msg) == 2
    # the pictures of an exported generator, by the script
    import importlib.util

    spec = importlib.util.spec_from_file_location("gan_pictures", ROOT / "scripts" / "gan_pictures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(run_dir), "--out", str(tmp_path / "pics"), "--seed", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["interpolation.png", "style-mixing.png",
                                                                     "truncation.png"]
    assert script.main([str(tmp_path), "--out", str(tmp_path / "pics2")]) == 2  # not a generator folder


def _cli(argv, msg):
    from contextlib import redirect_stderr
    from io import StringIO

    err = StringIO()
    with redirect_stderr(err):
        rc = cli.main(argv)
    text = err.getvalue().strip()
    assert msg in text and len(text.splitlines()) == 1 and "Traceback" not in text, text
    return rc


@pytest.mark.parametrize("override,msg", [
    ("data.resolution=18", "key 'data.resolution': resolution 18 is not r0 x 2^k"),
    ("gan.loss=bogus", "key 'gan.loss': unknown loss 'bogus'"),
    ("gan.augment=color,blur", "key 'gan.augment': unknown policy blur"),
    ("generator.max_width=2", "key 'generator.max_width' (2) must be >= 'generator.width' (4)"),
    ("train.gradient_accumulation_steps=2", "takes the whole batch in one step"),
    ("generator.style_mixing_prob=1.5", "key 'generator.style_mixing_prob' must be >= 0 and <= 1"),
    ("gan.reg_every=0", "key 'gan.reg_every' must be >= 1"),
    ("eval.truncation=[]", "key 'eval.truncation' must not be empty"),
    ("discriminator.bogus=1", "unknown key 'discriminator.bogus'"),
    ("eval.features=classifier:/no/such.safetensors", "no/such.safetensors"),
])
def test_bad_input_is_one_line(tmp_path, override, msg):
    import yaml

    recipe = tmp_path / "gan.yaml"
    recipe.write_text(yaml.safe_dump(tiny_gan(tmp_path, eval_samples=10)))
    assert _cli(["run", str(recipe), override], msg) == 2
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained before the error


def test_distillation_refuses_a_paired_loss():
    from distill.gan.losses import get_adv_loss

    with pytest.raises(DistillError, match="pairs real and fake samples"):
        get_adv_loss("rpgan")  # what the distillation loop calls


DATA = {"mnist": ("ylecun/mnist", 28, 1), "cifar10": ("uoft-cs/cifar10", 32, 3)}


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("gan-*-*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_load(path):
    """Every recipes/gan-<kind>-<data>.yaml: its kinds are the file name's, its data and scoring classifier the data set's."""
    from distill.config import load_recipe
    from distill.gan.layers import resolution_pyramid

    r = load_recipe(path)
    kind, data = path.stem[len("gan-"):].rsplit("-", 1)
    assert r.task == "gan" and kind in (r.generator.kind, r.discriminator.kind)
    assert (r.data.source, r.data.resolution, r.data.channels) == DATA[data]
    assert len(resolution_pyramid(r.data.resolution)) >= 2
    assert r.eval.features == f"classifier:{data}"


def test_unconditional_run(tmp_path):
    """class_conditional false (or unlabelled data): no embedding, no projection, one w_avg."""
    cfg = tiny_gan(tmp_path, eval_samples=40, max_steps=3)
    cfg["generator"]["class_conditional"] = False
    run_dir = train_gan(recipe_from_dict(cfg))
    G = load_generator(run_dir)
    assert G.num_classes == 0 and G.w_avg.shape == (1, 8) and G.w_avg.abs().sum() > 0
    assert G(torch.randn(2, 8)).shape == (2, 1, 8, 8)
    ev = json.loads((run_dir / "eval" / "eval-gan.json").read_text())
    assert "class_acc" not in ev[0] and ev[0]["fid"] > 0
    assert (run_dir / "pictures" / "truncation.png").is_file() and (run_dir / "report.md").is_file()
