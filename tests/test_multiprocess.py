"""Two CPU processes (gloo; accelerate's MULTI_CPU under torchrun) take the same optimizer step as
one process on the same global batch. `accelerate launch --cpu --num_processes 2` would start a
single process (accelerate 1.15), so the launch is `ACCELERATE_USE_CPU=true torchrun`, and each
test checks from metrics.jsonl how many processes the run really formed."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from distill.config import recipe_from_dict
from distill.diffusion.train import train_teacher

from .conftest import tiny_recipe_dict


def _launch(n: int, recipe_path, out_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(29500 + n + os.getpid() % 500), "-m", "distill.cli", "run", str(recipe_path),
           f"output_dir={out_dir}"]
    if n == 1:
        cmd = [sys.executable, "-m", "distill.cli", "run", str(recipe_path), f"output_dir={out_dir}"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    first = json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert first["processes"] == n, first  # the run really formed n processes


def one_equals_two(tmp_path, recipe: dict, names, tol: float = 1e-4) -> None:
    """Run `recipe` on 1 and on 2 processes (output in tmp_path/one, tmp_path/two); the checkpoint files
    `names` at step 2 hold the same tensors within `tol`."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    _launch(1, path, tmp_path / "one")
    _launch(2, path, tmp_path / "two")
    for name in names:
        a = load_file(tmp_path / "one" / "checkpoints" / "checkpoint-2" / name)
        b = load_file(tmp_path / "two" / "checkpoints" / "checkpoint-2" / name)
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst < tol, (name, worst)


@pytest.mark.parametrize("task", ["distill", "teacher"])
def test_two_processes_equal_one(tmp_path, task):
    teacher = train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path / "t", max_steps=10, checkpoint_every=10)))
    r = tiny_recipe_dict(tmp_path, max_steps=2, checkpoint_every=2, batch_size=16, learning_rate=1e-3,
                         lr_scheduler="constant", lr_warmup_steps=0)
    r["task"] = task
    if task == "distill":
        # non-saturating loss: the hinge's +-1 derivatives cancel exactly in a bias gradient at init, and
        # Adam turns the summation-order rounding left of that 0 into full-size, sign-random steps
        # with the DMD2 fake score on, so its DDP path (trained in the D phase, queried in the G phase) is covered,
        # and one head set per student timestep (a process's shard need not hold every timestep)
        del r["teacher"], r["data"]["resolution"]
        r["distill"] = {"teacher": str(teacher), "lambda_dmd": 0.5}
        r["discriminator"] = {"head_channels": 8, "r1_gamma": 1e-3, "loss": "ns", "heads_per_timestep": True}
        names = ["student.safetensors", "heads.safetensors", "fake_score.safetensors"]
    else:
        names = ["unet.safetensors"]
    one_equals_two(tmp_path, r, names)
    if task == "distill":  # and the step did something
        moved = load_file(teacher / "unet" / "diffusion_pytorch_model.safetensors")
        w = load_file(tmp_path / "one" / "checkpoints" / "checkpoint-2" / "student.safetensors")
        assert max(float((w[k] - moved[k]).abs().max()) for k in w) > 1e-4


def test_sd_distill_two_processes_equal_one(tmp_path):
    """sd-distill with LoRA (the teacher pass and the LADD features run the DDP-wrapped UNet's raw
    module with adapters disabled): 2 processes x 2 samples = 1 process x 4 samples."""
    from distill.sd.tiny import build_tiny_sd

    teacher = build_tiny_sd(tmp_path / "teacher", 16)
    r = {"task": "sd-distill", "data": {"source": "digits", "resolution": 16, "limit": 16},
         "distill": {"teacher": str(teacher)}, "discriminator": {"head_channels": 8, "augment": "", "r1_gamma": 1e-3},
         "sd": {"lora_rank": 4, "gradient_checkpointing": True, "loss_space": "pixel", "teacher_sample_steps": 2},
         "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "constant",
                   "lr_warmup_steps": 0, "checkpoint_every": 2, "ema_decay": 0.0, "log_every": 1}}
    one_equals_two(tmp_path, r, ["student.safetensors", "heads.safetensors"])
    assert (tmp_path / "two" / "lora" / "pytorch_lora_weights.safetensors").is_file()


@pytest.mark.slow  # ~65 s on 2 CPU cores
def test_sd_distill_fsdp2_two_cpu_processes(tmp_path):
    """sd-distill with LoRA under FSDP2 (full shard) on 2 CPU processes (gloo, torchrun + tests/fsdp_cpu.py):
    the gathered checkpoint and the exported UNet match 1 process x 4 samples, and the run resumes.
    r1_gamma: 0, as the R1 backward through the sharded UNet segfaults on CPU (docs/memory.md)."""
    from distill.sd.tiny import build_tiny_sd

    teacher = build_tiny_sd(tmp_path / "teacher", 16)
    r = {"task": "sd-distill", "data": {"source": "digits", "resolution": 16, "limit": 16},
         "distill": {"teacher": str(teacher)}, "discriminator": {"head_channels": 8, "augment": "", "r1_gamma": 0.0},
         "sd": {"lora_rank": 4, "gradient_checkpointing": True, "loss_space": "pixel", "teacher_sample_steps": 2},
         "train": {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "lr_scheduler": "constant",
                   "lr_warmup_steps": 0, "checkpoint_every": 2, "ema_decay": 0.0, "log_every": 1},
         "eval": {"num_samples": 0}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r))
    _launch(1, path, tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    script = os.path.join(os.path.dirname(__file__), "fsdp_cpu.py")
    for extra in [[], ["train.max_steps=3", "train.resume_from_checkpoint=latest"]]:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(29300 + os.getpid() % 500), script, "run", str(path), f"output_dir={tmp_path / 'fsdp'}",
               *extra]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        if not extra:
            for name in ["checkpoints/checkpoint-2/student.safetensors", "checkpoints/checkpoint-2/heads.safetensors",
                         "unet/diffusion_pytorch_model.safetensors"]:
                a, b = load_file(tmp_path / "one" / name), load_file(tmp_path / "fsdp" / name)
                assert a.keys() == b.keys()
                worst = max(float((a[k] - b[k]).abs().max()) for k in a)
                assert worst < 2e-4, (name, worst)
    assert (tmp_path / "fsdp" / "checkpoints" / "checkpoint-3" / "optimizer_g.pt").is_file()
