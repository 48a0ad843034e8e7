"""End-to-end runs of the teacher trainer on tiny models: files, loss, resume, export."""


import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

import distill  # noqa: F401  (registers DistillPipeline with diffusers)
from distill.config import recipe_from_dict
from distill.errors import DistillError
from distill.engine.run_dir import read_metrics, wall_seconds
from distill.diffusion.sampling import make_scheduler
from distill.diffusion.train import train_teacher

from .conftest import tiny_recipe_dict


def run(tmp_path, **train):
    return train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path, **train)))


def test_run_folder_and_loss_falls(tmp_path):
    run_dir = run(tmp_path, max_steps=40, learning_rate=3e-3, checkpoint_every=20)
    for f in ["recipe.yaml", "metrics.jsonl", "model_index.json", "samples/step-0000040.png"]:
        assert (run_dir / f).exists(), f
    assert any((run_dir / "logs").rglob("events.out.tfevents*"))
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert rows[0]["step"] == 0 and rows[0]["processes"] == 1 and rows[0]["dataset_size"] > 0  # run facts
    rows = rows[1:]
    assert [r["step"] for r in rows] == list(range(1, 41))
    first = sum(r["loss"] for r in rows[:5]) / 5
    last = sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["checkpoint-20", "checkpoint-40"]


def test_checkpoints_total_limit(tmp_path):
    run_dir = run(tmp_path, max_steps=8, checkpoint_every=2, checkpoints_total_limit=2)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-6", "checkpoint-8"]


def test_resume_is_exact(tmp_path):
    full = run(tmp_path / "a", max_steps=6, checkpoint_every=3)
    part = run(tmp_path / "b", max_steps=6, checkpoint_every=3, interrupt_at=4)
    assert (part / "checkpoints" / "checkpoint-4").is_dir() and not (part / "model_index.json").exists()
    resumed = run(tmp_path / "b", max_steps=6, checkpoint_every=3, resume_from_checkpoint="latest")
    assert resumed == part and (part / "model_index.json").is_file()  # exported into the run folder it resumed in
    assert (part / "checkpoints" / "checkpoint-4").is_dir() and (part / "samples").is_dir()  # the export removed nothing
    for name in ["unet.safetensors"]:
        wa = load_file(full / "checkpoints" / "checkpoint-6" / name)
        wb = load_file(part / "checkpoints" / "checkpoint-6" / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), k
    ea = torch.load(full / "checkpoints" / "checkpoint-6" / "ema.pt", weights_only=True)["shadow_params"]
    eb = torch.load(part / "checkpoints" / "checkpoint-6" / "ema.pt", weights_only=True)["shadow_params"]
    assert all(torch.equal(a, b) for a, b in zip(ea, eb))
    steps = [r["step"] for r in read_metrics(part / "metrics.jsonl")]
    assert steps == list(range(0, 7))  # no duplicated lines after resume


def test_refuses_to_overwrite_run(tmp_path):
    run_dir = run(tmp_path, max_steps=3, checkpoint_every=3)
    before = (run_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(DistillError, match="already holds checkpoints"):
        run(tmp_path, max_steps=3)
    assert (run_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before  # the export stays


def test_export_load_sample_any_scheduler(tmp_path):
    run_dir = run(tmp_path, max_steps=4)
    pipe = DiffusionPipeline.from_pretrained(str(run_dir))
    assert type(pipe).__name__ == "DistillPipeline" and pipe.num_classes == 10
    again = DiffusionPipeline.from_pretrained(str(run_dir))
    for name in ["ddim", "ddpm", "dpm++", "euler"]:
        pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
        again.scheduler = make_scheduler(name, again.scheduler.config)
        kw = dict(class_labels=[0, 3, 7], num_inference_steps=3, guidance_scale=2.0, output_type="pt")
        a = pipe(generator=torch.Generator().manual_seed(1), **kw).images
        b = again(generator=torch.Generator().manual_seed(1), **kw).images
        assert a.shape == (3, 1, 8, 8) and torch.isfinite(a).all(), name
        assert torch.equal(a, b), name  # save -> load reproduces samples exactly
    # guidance changes the output; 1 step works (trailing spacing starts from t = T - 1)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    pipe.scheduler.set_timesteps(1)
    assert int(pipe.scheduler.timesteps[0]) == 999
    g1 = pipe(class_labels=[1], num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(0), output_type="pt").images
    g3 = pipe(class_labels=[1], num_inference_steps=2, guidance_scale=3.0, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert not torch.allclose(g1, g3)


def test_sample_cli_writes_grid(tmp_path):
    import subprocess
    import sys

    run_dir = run(tmp_path, max_steps=2)
    out = tmp_path / "grid.png"
    res = subprocess.run([sys.executable, "-m", "distill.cli", "sample", str(run_dir), "--steps", "4",
                          "--guidance", "2", "--per-class", "2", "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    im = Image.open(out)
    assert im.size[0] > im.size[1] > 0  # 10 columns x 2 rows
    res = subprocess.run([sys.executable, "-m", "distill.cli", "sample", str(tmp_path / "missing")], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_ship_teacher_card_and_paused_minutes(tmp_path):
    """scripts/ship_teacher.py: --paused-min out of range is a one-line error before the old folder is touched;
    in range it is subtracted from the card's wall time, and --note lines land on the card."""
    import json
    import subprocess
    import sys

    from .conftest import ROOT

    run_dir = run(tmp_path, max_steps=4)
    dest = tmp_path / "shipped"
    dest.mkdir()
    (dest / "keep.txt").write_text("old teacher")
    rows = read_metrics(run_dir / "metrics.jsonl")  # stretched to a 10-minute run, so minutes show on the card
    scale = 600 / max(r["time"] for r in rows if "time" in r)
    stretched = [{**r, **({"time": r["time"] * scale} if "time" in r else {})} for r in rows]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stretched))
    wall_min = wall_seconds(read_metrics(run_dir / "metrics.jsonl")) / 60
    assert abs(wall_min - 10) < 1e-6
    cmd = [sys.executable, str(ROOT / "scripts" / "ship_teacher.py"), str(run_dir), "--name", "tiny",
           "--dest", str(dest), "--skip-eval"]
    bad = subprocess.run([*cmd, "--paused-min", "1e6"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "--paused-min" in bad.stderr and "Traceback" not in bad.stderr
    assert (dest / "keep.txt").read_text() == "old teacher"
    paused = 4.0
    ok = subprocess.run([*cmd, "--paused-min", str(paused), "--note", "scored on few samples"], capture_output=True,
                        text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["params"] > 0
    assert not (dest / "keep.txt").exists() and (dest / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    card = (dest / "README.md").read_text()
    assert "wall time 6.0 min" in card and "4.0 min of pauses" in card
    assert "- scored on few samples" in card and "4 steps of batch 16" in card
    assert "prediction prediction" not in card
    assert any(o in card for o in ("v-prediction,", "epsilon prediction,", "x0 prediction,", "rectified flow"))
    assert DiffusionPipeline.from_pretrained(str(dest)).unet.config.sample_size == 8
