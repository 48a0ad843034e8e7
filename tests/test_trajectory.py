"""Trajectory students (CTM): the network told its target time, the jump, gamma-sampling, the soft consistency
term's gradients, and runs on a tiny teacher (export sampled in a fresh process, exact resume, 2 processes = 1)."""

import subprocess
import sys

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file

from distill.diffusion import denoiser as dn
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.trajectory import TrajectoryScheduler, TrajectoryUNet2DModel
from distill.distillation.consistency import TargetNetwork
from distill.distillation.loop import train_distill
from distill.distillation.trajectory import soft_consistency_loss
from distill.engine.run_dir import read_metrics

from .test_distill import distill_recipe, distill_recipe_dict, tiny_teacher  # noqa: F401  (module fixture)
from .test_consistency import resumes_exactly
from .test_multiprocess import one_equals_two

CTM = {"lambda_adv": 0.0, "lambda_distill": 0.0, "lambda_consistency": 1.0, "teacher_guidance": 1.0}
CTM_CFG = {"kind": "ctm", "solver_steps": 10, "target_decay": 0.9}


def _unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       num_class_embeds=3)


def _den(net):
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    return Denoiser.from_scheduler(net, sched)


X, T, Y = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([900, 500, 40]), torch.tensor([0, 1, 2])


def test_student_starts_as_the_teacher_and_is_its_denoiser_at_s_equal_t():
    teacher = _unet()
    student = TrajectoryUNet2DModel.from_unet(teacher)
    want = teacher(X, T, class_labels=Y).sample
    for s in (torch.zeros(3), torch.tensor([500, 100, 0]), T):  # zero-initialised jump embedding: every s
        assert torch.allclose(student(X, T, class_labels=Y, target_timestep=s).sample, want, atol=1e-6)
    torch.nn.init.normal_(student.jump_embedding.linear_2.weight)  # a trained jump embedding
    assert not torch.allclose(student(X, T, class_labels=Y, target_timestep=torch.zeros(3)).sample, want, atol=1e-3)
    assert torch.allclose(student(X, T, class_labels=Y, target_timestep=T).sample, want, atol=1e-6)  # s = t: g(x, t, t)


def test_jump_to_itself_is_the_identity_and_to_zero_the_x0_estimate():
    student = TrajectoryUNet2DModel.from_unet(_unet())
    torch.nn.init.normal_(student.jump_embedding.linear_2.weight)
    den = _den(student)
    with torch.no_grad():
        assert torch.allclose(den.jump(X, T, T, Y), X, atol=1e-5)  # G(x_t, t, t) = x_t
        x0 = den.x0_from(X, T, den.out(X, T, Y, target_timestep=torch.zeros(3, dtype=torch.long)))
        a0, s0 = den.alpha_sigma(torch.zeros(3, dtype=torch.long), "cpu")
        assert torch.allclose(den.jump(X, T, torch.zeros(3, dtype=torch.long), Y), a0 * x0 + s0 * den.eps_from(
            X, T, den.out(X, T, Y, target_timestep=torch.zeros(3, dtype=torch.long))), atol=1e-5)
        assert float(s0.max()) < 0.01  # the jump to t = 0 is the x0 estimate up to sigma_0


def test_gamma_sampling():
    """gamma = 0: deterministic jumps t_n -> t_{n+1}; gamma = 1: jumps to data, renoised (the generator matters)."""
    sched_cfg = dict(DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="v_prediction").config)
    grid = list(range(999, 0, -100))
    student = TrajectoryUNet2DModel.from_unet(_unet()).eval()
    noise = torch.randn(3, 1, 8, 8)
    for gamma in (0.0, 0.5, 1.0):
        sch = TrajectoryScheduler(schedule=sched_cfg, timesteps=grid, gamma=gamma)
        den = sch.denoiser(student)
        s = sch.jump_target(den, torch.tensor(499))
        assert (gamma == 0 and int(s) == 499) or (gamma == 1 and int(s) == 0) or (0 < int(s) < 499)
        a, b = (sch.jump_sample(student, noise, Y, 4, generator=torch.Generator().manual_seed(k)) for k in (0, 1))
        assert torch.isfinite(a).all() and torch.equal(a, b) == (gamma == 0)
    sch.set_timesteps(4)
    assert sch.timesteps.tolist() == [999, 799, 499, 299]
    with pytest.raises(ValueError, match="1 to 10 steps"):
        sch.set_timesteps(11)


def test_soft_consistency_gradient_reaches_the_student_only():
    student = _den(TrajectoryUNet2DModel.from_unet(_unet()))
    torch.nn.init.normal_(student.net.jump_embedding.linear_2.weight, std=0.1)
    target = TargetNetwork(student.net, 0.9)
    t, u, s = torch.tensor([900, 500, 300]), torch.tensor([800, 400, 200]), torch.tensor([100, 0, 200])
    x_u = torch.randn_like(X)
    loss = soft_consistency_loss(student, target.denoiser(student), X, t, x_u, u, s, Y, "l2")
    loss.mean().backward()
    assert all(p.grad is None for p in target.net.parameters())
    assert student.net.jump_embedding.linear_2.weight.grad.abs().sum() > 0


def test_ctm_run_exports_a_trajectory_pipeline_sampled_in_a_fresh_process(tmp_path, tiny_teacher):
    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, distill={**CTM, "lambda_adv": 1.0},
                                           consistency=CTM_CFG))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_dsm" in r]
    assert len(rows) == 4 and all(r["loss_soft_consistency"] >= 0 and "loss_d" in r for r in rows)
    code = ("import distill, torch; from diffusers import DiffusionPipeline; "
            f"p = DiffusionPipeline.from_pretrained({str(run_dir)!r}); "
            "assert type(p.unet).__name__ == 'TrajectoryUNet2DModel' and type(p.scheduler).__name__ == 'TrajectoryScheduler'; "
            "print([tuple(p(class_labels=[0, 1], num_inference_steps=k, output_type='pt').images.shape) for k in (1, 2, 4, 8)])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.count("(2, 1, 8, 8)") == 4, res.stderr[-2000:]
    from distill.cli import main as cli_main

    for sched in ([], ["--scheduler", "ddim"]):  # its own gamma-sampler, or DDIM on the teacher's schedule
        out = tmp_path / f"grid{len(sched)}.png"
        assert cli_main(["sample", str(run_dir), "--steps", "2", *sched, "--out", str(out)]) == 0
        assert out.stat().st_size > 0


def test_ctm_run_resumes_exactly(tmp_path, tiny_teacher):
    full = resumes_exactly(tmp_path, tiny_teacher, distill=CTM, consistency=CTM_CFG)
    w = load_file(full / "checkpoints/checkpoint-4/student.safetensors")
    assert float(w["jump_embedding.linear_2.weight"].abs().max()) > 0  # the jump embedding trained


def test_ctm_needs_an_ema_target(tmp_path, tiny_teacher):
    from distill.errors import RecipeError

    with pytest.raises(RecipeError, match="consistency.target_decay"):
        distill_recipe(tmp_path, tiny_teacher, distill=CTM, consistency={**CTM_CFG, "target_decay": 0.0})


def test_ctm_two_processes_equal_one(tmp_path, tiny_teacher):
    r = distill_recipe_dict(tmp_path, tiny_teacher, distill=CTM, consistency=CTM_CFG, max_steps=2, checkpoint_every=2,
                            learning_rate=1e-3)
    one_equals_two(tmp_path, r, ["student.safetensors", "consistency_target.safetensors"])
