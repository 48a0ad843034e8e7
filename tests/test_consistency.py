"""Consistency distillation (LCM): the solver step, the boundary condition, the target network, and runs on a
tiny teacher (files, export sampled in a fresh process, exact resume, two processes equal one)."""

import subprocess
import sys

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, LCMScheduler
from safetensors.torch import load_file

from distill.diffusion import denoiser as dn
from distill.diffusion.denoiser import Denoiser, LabelCond
from distill.distillation.consistency import TargetNetwork, consistency_distance, consistency_loss, ddim_step
from distill.distillation.loop import train_distill
from distill.engine.run_dir import read_metrics

from .test_distill import distill_recipe, distill_recipe_dict, tiny_teacher  # noqa: F401  (module fixture)
from .test_multiprocess import one_equals_two

LCM = {"lambda_adv": 0.0, "lambda_distill": 0.0, "lambda_consistency": 1.0, "teacher_guidance": 1.0}


class _Affine(torch.nn.Module):
    """out = a x + b t / 1000: a network whose output a hand computation can follow."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.tensor(0.3)), torch.nn.Parameter(torch.tensor(-0.2))

    def forward(self, x, t, class_labels=None):
        from types import SimpleNamespace

        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return SimpleNamespace(sample=self.a * x + self.b * t / 1000)


def _ddpm(kind="v_prediction"):
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=kind)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_solver_step_is_ddim_by_hand(kind):
    """ddim_step = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps_hat with the network's output read by hand."""
    den = Denoiser(_Affine(), dn.parameterisation_for(_ddpm(kind)), LabelCond(None))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    t, t_prev = torch.tensor([999, 519, 19]), torch.tensor([979, 499, 0])
    abar = _ddpm().alphas_cumprod.double()
    a, s = abar[t].sqrt().view(-1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
    out = 0.3 * x - 0.2 * t.double().view(-1, 1, 1, 1) / 1000
    if kind == "epsilon":
        x0, eps = (x - s * out) / a, out
    else:  # v = a eps - s x0
        x0, eps = a * x - s * out, a * out + s * x
    ap, sp = abar[t_prev].sqrt().view(-1, 1, 1, 1), (1 - abar[t_prev]).sqrt().view(-1, 1, 1, 1)
    want = ap * x0 + sp * eps
    assert torch.allclose(ddim_step(den, x.float(), t, t_prev, None, 1.0).double(), want, atol=1e-5)


def test_flow_solver_step_is_euler():
    """For a flow teacher the same step is Euler: x + (sigma_prev - sigma) v."""
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    den = Denoiser(_Affine(), dn.parameterisation_for(sched), LabelCond(None))
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t, t_prev = torch.tensor([800.0, 300.0]), torch.tensor([600.0, 0.0])
    v = 0.3 * x - 0.2 * t.view(-1, 1, 1, 1) / 1000
    want = x + ((t_prev - t) / 1000).view(-1, 1, 1, 1) * v
    assert torch.allclose(ddim_step(den, x, t, t_prev, None, 1.0), want, atol=1e-6)


@pytest.mark.parametrize("sched", [_ddpm("epsilon"), _ddpm("v_prediction"),
                                   FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)])
def test_boundary_condition(sched):
    """c_skip(0) = 1 and c_out(0) = 0, so f(x, 0) = x whatever the network says; at t = T the output is x0's."""
    den = Denoiser(_Affine(), dn.parameterisation_for(sched), LabelCond(None))
    c_skip, c_out = den.param.boundary(torch.tensor([0]), "cpu")
    x = torch.randn(2, 1, 4, 4)
    zero = torch.zeros(2, dtype=torch.long if den.param.name != "flow" else torch.float32)
    assert torch.allclose(den.consistency(x, zero), x, atol=1e-6)
    if den.param.name != "flow":
        assert float(c_skip) == 1.0 and float(c_out) == 0.0
        c_skip_T, c_out_T = den.param.boundary(torch.tensor([999]), "cpu")
        assert float(c_skip_T) < 1e-6 and abs(float(c_out_T) - 1) < 1e-6
    top = torch.full((2,), den.t_max, dtype=zero.dtype)
    assert torch.allclose(den.consistency(x, top), den.x0(x, top), atol=1e-5)


def test_grid_is_the_exported_lcm_schedulers():
    """The solver grid's timesteps are LCMScheduler's origin timesteps, so a k-step sample visits trained ones."""
    den = Denoiser(None, dn.parameterisation_for(_ddpm()), LabelCond(None))
    grid = den.solver_grid(50)
    assert grid[0] == 0 and grid[1] == 19 and grid[-1] == 999 and len(grid) == 51
    sched = LCMScheduler.from_config(_ddpm().config, original_inference_steps=50, timestep_spacing="trailing")
    for k in (1, 2, 4, 8):
        sched.set_timesteps(k)
        assert set(sched.timesteps.tolist()) <= set(grid.tolist())
    flow = Denoiser(None, dn.parameterisation_for(FlowMatchEulerDiscreteScheduler(shift=3.0)), LabelCond(None))
    fg = flow.solver_grid(4)
    assert float(fg[0]) == 0 and abs(float(fg[-1]) - 1000) < 1e-3 and bool((fg[1:] > fg[:-1]).all())


def test_target_network_gets_no_gradient_and_follows_the_student():
    student = Denoiser(_Affine(), dn.parameterisation_for(_ddpm()), LabelCond(None))
    target = TargetNetwork(student.net, decay=0.9)
    x0 = torch.randn(4, 1, 4, 4)
    t, t_prev = torch.tensor([999, 519, 39, 19]), torch.tensor([979, 499, 19, 0])
    x_t = student.add_noise(x0, torch.randn_like(x0), t)
    x_prev = ddim_step(student, x_t, t, t_prev, None, 1.0)
    loss = consistency_loss(student, target.denoiser(student), x_t, t, x_prev, t_prev, None, "l2")
    loss.mean().backward()
    assert student.net.a.grad is not None and all(p.grad is None for p in target.net.parameters())
    before = target.net.a.detach().clone()
    with torch.no_grad():
        student.net.a.add_(1.0)
    target.update(student.net)
    assert torch.allclose(target.net.a, 0.9 * before + 0.1 * student.net.a)  # theta- = mu theta- + (1 - mu) theta
    assert TargetNetwork(student.net, decay=0.0).denoiser(student) is student  # mu = 0: the student itself


def test_last_interval_targets_the_solver_step_itself():
    """At t_prev = 0 the target is f(x_prev, 0) = x_prev: the loss is d(f(x_t), solver step) exactly."""
    student = Denoiser(_Affine(), dn.parameterisation_for(_ddpm()), LabelCond(None))
    x_t = torch.randn(2, 1, 4, 4)
    t, t_prev = torch.tensor([19, 19]), torch.tensor([0, 0])
    x_prev = torch.randn_like(x_t)
    loss = consistency_loss(student, student, x_t, t, x_prev, t_prev, None, "huber", 1e-3)
    assert torch.allclose(loss, consistency_distance(student.consistency(x_t, t), x_prev, "huber", 1e-3), atol=1e-6)
    assert torch.allclose(consistency_distance(x_prev, x_prev), torch.zeros(2))


def test_lcm_run_exports_an_lcm_pipeline_sampled_in_a_fresh_process(tmp_path, tiny_teacher):
    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, distill=LCM, consistency={"solver_steps": 10}))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_consistency" in r]
    assert len(rows) == 4 and "loss_d" not in rows[0]  # no critic phase
    assert (run_dir / "checkpoints/checkpoint-4/consistency_target.safetensors").exists()
    code = ("import distill, torch; from diffusers import DiffusionPipeline; "
            f"p = DiffusionPipeline.from_pretrained({str(run_dir)!r}); "
            "assert type(p.scheduler).__name__ == 'LCMScheduler', p.scheduler; "
            "print([p(class_labels=[0, 1], num_inference_steps=k, output_type='pt').images.shape[0] for k in (1, 2, 4, 8)])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "[2, 2, 2, 2]" in res.stdout, res.stderr[-2000:]
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import make_scheduler, sample

    pipe = DistillPipeline.from_pretrained(str(run_dir))
    tcd = make_scheduler("tcd", pipe.scheduler.config)  # TCD's gamma-sampling on the student's grid
    for k in (1, 2, 4, 8):
        x = sample(pipe.unet, tcd, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), k, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(x).all() and len(tcd.timesteps) == k and set(tcd.timesteps.tolist()) <= set(
            Denoiser.from_scheduler(pipe.unet, pipe.scheduler).solver_grid(10).tolist())


def resumes_exactly(tmp_path, teacher, **kw):
    """A 4-step run and one interrupted at 3 then resumed end with equal student and target weights -> the first."""
    full = train_distill(distill_recipe(tmp_path / "a", teacher, **kw))
    part = train_distill(distill_recipe(tmp_path / "b", teacher, interrupt_at=3, **kw))
    train_distill(distill_recipe(tmp_path / "b", teacher, resume_from_checkpoint="latest", **kw))
    for name in ["student.safetensors", "consistency_target.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    return full


@pytest.mark.parametrize("over", [{}, {"lambda_adv": 1.0}])  # LCM, and LCM + adversarial term
def test_consistency_run_resumes_exactly(tmp_path, tiny_teacher, over):
    full = resumes_exactly(tmp_path, tiny_teacher, distill={**LCM, **over}, consistency={"solver_steps": 10, "skip": 2})
    s, t = (load_file(full / "checkpoints/checkpoint-4" / n) for n in ["student.safetensors", "consistency_target.safetensors"])
    assert any(not torch.equal(s[k], t[k]) for k in s)  # the EMA target lags the student


def test_all_terms_off_is_refused(tmp_path, tiny_teacher):
    from distill.errors import RecipeError

    with pytest.raises(RecipeError, match="every objective term has weight 0"):
        distill_recipe(tmp_path, tiny_teacher, distill={**LCM, "lambda_consistency": 0.0})
    with pytest.raises(RecipeError, match="consistency.skip"):
        distill_recipe(tmp_path, tiny_teacher, distill=LCM, consistency={"solver_steps": 4, "skip": 5})


def test_consistency_two_processes_equal_one(tmp_path, tiny_teacher):
    r = distill_recipe_dict(tmp_path, tiny_teacher, distill=LCM, consistency={"solver_steps": 10}, max_steps=2,
                            checkpoint_every=2, learning_rate=1e-3)
    one_equals_two(tmp_path, r, ["student.safetensors", "consistency_target.safetensors"])


def test_lcm_lora_on_tiny_sd_loads_into_the_teacher(tmp_path):
    """LCM-LoRA on the latent path: a LoRA student of a tiny Stable Diffusion teacher trained by the consistency term
    alone (target = the student itself), exported with an LCMScheduler on the 50-step grid, and its adapter loaded
    into the teacher pipeline with load_lora_weights samples as the exported student does."""
    from diffusers import StableDiffusionPipeline

    from distill.sd.space import train_sd_distill
    from distill.sd.tiny import build_tiny_sd

    from .test_sd import R, sd_recipe

    teacher = str(build_tiny_sd(tmp_path / "teacher", R))
    run = train_sd_distill(sd_recipe(tmp_path, teacher, distill={**LCM, "teacher_guidance": 2.0},
                                     consistency={"target_decay": 0.0}, sd={"lora_rank": 4}))
    assert [r for r in read_metrics(run / "metrics.jsonl") if "loss_consistency" in r]
    student = StableDiffusionPipeline.from_pretrained(str(run))
    assert type(student.scheduler).__name__ == "LCMScheduler" and student.scheduler.config.original_inference_steps == 50
    pipe = StableDiffusionPipeline.from_pretrained(teacher)
    pipe.scheduler = LCMScheduler.from_config(student.scheduler.config)
    pipe.load_lora_weights(str(run / "lora"))
    kw = dict(num_inference_steps=4, guidance_scale=0.0, height=R, width=R, output_type="pt")
    a = student(["a photo of the digit 1"], generator=torch.Generator().manual_seed(0), **kw).images
    b = pipe(["a photo of the digit 1"], generator=torch.Generator().manual_seed(0), **kw).images
    assert torch.allclose(a, b, atol=2e-3)


def test_lcm_lora_on_tiny_sd3_flow_teacher(tmp_path):
    """The same term on a flow-matching transformer teacher (tiny SD3): the solver step is Euler on the shifted
    grid, the student's LoRA exports with the family's flow scheduler and loads onto the teacher."""
    from diffusers import StableDiffusion3Pipeline

    from distill.config import recipe_from_dict
    from distill.sd.space import train_sd_distill
    from distill.sd.tiny_transformer import build_tiny_sd3

    from .test_sd_flow import R, flow_recipe_dict

    teacher = str(build_tiny_sd3(tmp_path / "teacher", R))
    d = flow_recipe_dict(tmp_path, teacher, "sd3", distill={**LCM, "teacher_guidance": 3.0})
    d["consistency"] = {"target_decay": 0.0, "solver_steps": 8}
    run = train_sd_distill(recipe_from_dict(d))
    assert all(r["loss_consistency"] > 0 for r in read_metrics(run / "metrics.jsonl") if "loss" in r)
    pipe = StableDiffusion3Pipeline.from_pretrained(teacher)
    pipe.load_lora_weights(str(run / "lora"))
    student = StableDiffusion3Pipeline.from_pretrained(str(run))
    for k in (1, 2, 4):
        x = student(["a cat"], num_inference_steps=k, guidance_scale=0.0, height=R, width=R, output_type="pt").images
        assert torch.isfinite(x).all()
