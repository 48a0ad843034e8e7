"""Flow-matching teachers: the shift against diffusers' schedulers, the training-time sigma densities, the flow
samplers on an exact velocity field, DDPM/flow samplers kept apart, and UNet / DiT teachers trained with the flow
objective, saved and sampled again in a fresh process."""

import json
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from safetensors.torch import load_file

import distill  # noqa: F401  (registers DistillPipeline with diffusers)
from distill.config import recipe_from_dict
from distill.diffusion.denoiser import Denoiser, DiTLabelCond, LabelCond, parameterisation_for, prediction_type_of
from distill.diffusion.flow import dynamic_shift, euler_sigmas, shift_sigma, training_timesteps
from distill.diffusion.recipe import TeacherConfig
from distill.diffusion.sampling import SCHEDULERS, family_of, make_scheduler, noise_scheduler_from, sample
from distill.diffusion.teachers import build_dit, load_teacher
from distill.diffusion.train import train_teacher
from distill.errors import DistillError, RecipeError

from .conftest import tiny_recipe_dict

FLOW_SAMPLERS = [k for k, v in SCHEDULERS.items() if v.family == "flow"]


# ---------------------------------------------------------------- the shift


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_shift_is_diffusers_schedule(shift):
    """shift_sigma on the training grid equals the scheduler's sigmas; euler_sigmas equals set_timesteps(k)."""
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    grid = np.linspace(1, 1000, 1000)[::-1] / 1000
    np.testing.assert_allclose(shift_sigma(grid, shift), sched.sigmas.numpy(), rtol=1e-6)
    for k in (1, 2, 3, 4, 28, 50):
        sched.set_timesteps(k)
        np.testing.assert_allclose(euler_sigmas(k, shift, 1000), sched.sigmas[:-1].numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(euler_sigmas(k, shift, 1000) * 1000, sched.timesteps.numpy(), rtol=1e-5)
    assert shift_sigma(0.0, shift) == 0.0 and shift_sigma(1.0, shift) == 1.0


@pytest.mark.parametrize("seq_len", [64, 256, 1024, 4096])
def test_dynamic_shift_is_flux_exponential_time_shift(seq_len):
    """Flux: use_dynamic_shifting with mu = calculate_shift(seq_len) is shift_sigma with shift = dynamic_shift(seq_len)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    mu = calculate_shift(seq_len, 256, 4096, 0.5, 1.15)
    assert dynamic_shift(seq_len) == pytest.approx(math.exp(mu), rel=1e-12)
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    sched.set_timesteps(8, mu=mu)
    want = shift_sigma(np.linspace(1.0, 1 / 1000, 8), dynamic_shift(seq_len))  # the grid is not shifted at init here
    np.testing.assert_allclose(sched.sigmas[:-1].numpy(), want, rtol=1e-5)


def test_training_densities_and_shift():
    """logit_normal: the median sigma is sigmoid(m) and after the shift shift(sigmoid(m)); uniform: U(0, 1)."""
    g = torch.Generator().manual_seed(0)
    cfg = TeacherConfig(prediction_type="flow", timestep_sampling="logit_normal", logit_mean=0.5, logit_std=1.0)
    t = training_timesteps(20000, g, cfg, 3.0, 1000)
    assert t.dtype == torch.float32 and 0 < t.min() and t.max() < 1000
    assert float(t.median()) / 1000 == pytest.approx(shift_sigma(1 / (1 + math.exp(-0.5)), 3.0), abs=0.01)
    logit = torch.logit(t.double() / 1000)  # the shift adds log(shift) in logit space: N(m + log 3, s^2)
    assert float(logit.mean()) == pytest.approx(0.5 + math.log(3.0), abs=0.03)
    assert float(logit.std()) == pytest.approx(1.0, abs=0.03)
    cfg.timestep_sampling = "uniform"
    u = training_timesteps(20000, g, cfg, 1.0, 1000) / 1000
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01) and float((u < 0.25).float().mean()) == pytest.approx(0.25, abs=0.01)


def test_flow_teacher_recipe_checks(tmp_path):
    def rec(**teacher):
        r = tiny_recipe_dict(tmp_path)
        r["teacher"].update(teacher)
        return recipe_from_dict(r)

    assert rec(prediction_type="flow", timestep_sampling="logit_normal").teacher.flow_shift == 1.0
    with pytest.raises(RecipeError, match="teacher.timestep_sampling.*prediction_type flow"):
        rec(prediction_type="v_prediction", timestep_sampling="logit_normal")
    with pytest.raises(RecipeError, match="unknown 'beta'"):
        rec(prediction_type="flow", timestep_sampling="beta")
    with pytest.raises(RecipeError, match="teacher.flow_shift"):
        rec(prediction_type="flow", flow_shift=0)
    with pytest.raises(RecipeError, match="teacher.dit_width"):
        rec(kind="dit", dit_width=30, dit_heads=4)
    with pytest.raises(RecipeError, match="teacher.dit_patch_size"):
        rec(kind="dit", dit_patch_size=3)


# ---------------------------------------------------------------- samplers


class GaussianVelocity(torch.nn.Module):
    """The exact velocity of rectified flow for data x0 ~ N(m, c^2) per pixel: with s = t / T,
    x_t ~ N((1 - s) m, (1 - s)^2 c^2 + s^2), E[x0 | x_t] = m + (1 - s) c^2 (x_t - (1 - s) m) / var,
    v = (x_t - E[x0 | x_t]) / s. Its ODE carries noise z to m + c z."""

    def __init__(self, m=0.5, c=0.3):
        super().__init__()
        self.m, self.c = m, c
        self.config = SimpleNamespace(num_class_embeds=None)

    def forward(self, x, t, class_labels=None):
        s = (torch.as_tensor(t, dtype=torch.float64) / 1000).clamp_min(1e-6)
        var = (1 - s) ** 2 * self.c ** 2 + s ** 2
        x0 = self.m + (1 - s) * self.c ** 2 * (x.double() - (1 - s) * self.m) / var
        return SimpleNamespace(sample=((x.double() - x0) / s).to(x.dtype))


@pytest.mark.parametrize("name,tol", [("flow-euler", 0.02), ("flow-heun", 1e-3), ("flow-dpm++", 5e-3)])
def test_flow_samplers_integrate_the_exact_velocity(name, tol):
    """Every flow sampler, with the exact velocity field and shift 3, converges to the ODE's endpoint m + c z
    (Euler first order, Heun second): units (t = sigma T), sign (v = eps - x0) and shift agree between the
    Denoiser and diffusers. (DPM-Solver's integer timesteps lie up to one unit off its sigmas: its floor.)"""
    assert set(FLOW_SAMPLERS) == {"flow-euler", "flow-heun", "flow-dpm++"}
    net = GaussianVelocity()
    sched = make_scheduler(name, FlowMatchEulerDiscreteScheduler(shift=3.0).config)
    z = torch.randn(4, 1, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    err = [float((sample(net, sched, z, None, n) - (net.m + net.c * z)).abs().max()) for n in (10, 200)]
    assert err[1] < tol and err[1] < err[0] / 4, err


def test_samplers_of_the_other_family_refuse():
    flow, ddpm = FlowMatchEulerDiscreteScheduler(shift=2.0).config, DDPMScheduler().config
    for name, spec in SCHEDULERS.items():
        wrong = ddpm if spec.family == "flow" else flow
        with pytest.raises(DistillError, match=f"scheduler '{re.escape(name)}' is for"):
            make_scheduler(name, wrong)
    assert type(make_scheduler("auto", flow)).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert type(make_scheduler("auto", ddpm)).__name__ == "DDIMScheduler"
    dpm = make_scheduler("flow-dpm++", flow)  # its config says flow_shift: the noise schedule comes back
    assert noise_scheduler_from(dpm.config).config.shift == 2.0
    assert parameterisation_for(dpm).name == "flow" and parameterisation_for(dpm).shift == 2.0



@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_one_rule_decides_flow_for_schedulers_and_their_saved_configs(name, tmp_path):
    """The parameterisation (prediction_type_of) and the sampler family (family_of) read the same rule, on a
    scheduler object, its config, and the JSON diffusers saves (with `_class_name`, without the object)."""
    base = FlowMatchEulerDiscreteScheduler(shift=3.0) if SCHEDULERS[name].family == "flow" else DDPMScheduler(prediction_type="v_prediction")
    sched = make_scheduler(name, base.config)
    sched.save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    for view in (sched, sched.config, saved):
        kind = prediction_type_of(view)
        assert (kind == "flow") == (SCHEDULERS[name].family == "flow"), (name, kind)
        assert family_of(view) == SCHEDULERS[name].family
        if kind != "flow":
            assert kind == "v_prediction"

# ---------------------------------------------------------------- DiT conditioning


def test_dit_drops_labels_only_through_the_trainer():
    """A DiT in train mode gives the same output whatever the global RNG (its own LabelEmbedding dropout is off);
    the null label is index num_classes; after save/load the dropout stays off."""
    torch.manual_seed(0)
    net = build_dit(TeacherConfig(kind="dit", dit_depth=2, dit_width=16, dit_heads=2), 8, 1, 10).train()
    cond = LabelCond.of(net)
    assert isinstance(cond, DiTLabelCond) and cond.null_label == 10
    x, t, y = torch.randn(6, 1, 8, 8), torch.full((6,), 500.0), torch.arange(6)
    torch.manual_seed(1)
    a = cond.call(net, x, t, y)
    torch.manual_seed(2)
    b = cond.call(net, x, t, y)
    assert torch.equal(a, b)
    u = cond.call(net, x, torch.tensor(500.0), None)  # a sampler's scalar t, unconditional: the null label
    assert torch.equal(u, cond.call(net, x, t, cond.null(y)))


# ---------------------------------------------------------------- teachers end to end


def flow_teacher(tmp_path, kind="unet2d", **train):
    r = tiny_recipe_dict(tmp_path, **{"max_steps": 4, "checkpoint_every": 2, **train})
    r["teacher"].update(kind=kind, prediction_type="flow", timestep_sampling="logit_normal", flow_shift=2.0,
                        dit_depth=2, dit_width=16, dit_heads=2)
    return train_teacher(recipe_from_dict(r))


@pytest.mark.parametrize("kind", ["unet2d", "dit"])
def test_flow_teacher_trains_exports_and_resumes_exactly(tmp_path, kind):
    full = flow_teacher(tmp_path / "a", kind)
    part = flow_teacher(tmp_path / "b", kind, interrupt_at=3)
    flow_teacher(tmp_path / "b", kind, resume_from_checkpoint="latest")
    wa, wb = (load_file(d / "checkpoints/checkpoint-4/unet.safetensors") for d in (full, part))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    cfg = json.loads((full / "scheduler/scheduler_config.json").read_text())
    assert cfg["_class_name"] == "FlowMatchEulerDiscreteScheduler" and cfg["shift"] == 2.0
    assert not cfg["stochastic_sampling"]
    pipe = load_teacher(str(full))
    assert pipe.num_classes == 10 and Denoiser.from_scheduler(pipe.unet, pipe.scheduler).param.name == "flow"
    x = pipe(class_labels=[0, 5], num_inference_steps=3, guidance_scale=2.0, output_type="pt").images
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_dit_trains_with_the_ddpm_objective(tmp_path):
    """teacher.kind dit with v-prediction: a DDPM schedule, exported with DDIM, sampled with guidance."""
    r = tiny_recipe_dict(tmp_path, max_steps=2, checkpoint_every=2)
    r["teacher"].update(kind="dit", prediction_type="v_prediction", dit_depth=2, dit_width=16, dit_heads=2)
    pipe = load_teacher(str(train_teacher(recipe_from_dict(r))))
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.config.prediction_type == "v_prediction"
    x = pipe(class_labels=[4], num_inference_steps=2, guidance_scale=2.0, output_type="pt").images
    assert x.shape == (1, 1, 8, 8) and torch.isfinite(x).all()


def test_flow_teacher_loss_falls(tmp_path):
    from distill.engine.run_dir import read_metrics

    run = flow_teacher(tmp_path, max_steps=40, learning_rate=3e-3, checkpoint_every=40)
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_flow_dit_teacher_samples_and_evaluates_after_reloading(tmp_path, capsys):
    """Saved, then loaded in a new process (plain DiffusionPipeline.from_pretrained: the same samples as here) and by
    `distill sample` / `distill eval`: the default sampler is flow-euler, another flow sampler runs, a DDPM sampler
    is a one-line error."""
    from distill.cli import main as cli

    run = flow_teacher(tmp_path, "dit")
    pipe = str(run)
    code = ("import torch, distill; from diffusers import DiffusionPipeline; p = DiffusionPipeline.from_pretrained("
            f"{pipe!r}); x = p(class_labels=[1, 2], num_inference_steps=4, guidance_scale=1.5, "
            "generator=torch.Generator().manual_seed(3), output_type='pt').images; torch.save(x, "
            f"{str(tmp_path / 'x.pt')!r})")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    here = load_teacher(pipe)(class_labels=[1, 2], num_inference_steps=4, guidance_scale=1.5,
                              generator=torch.Generator().manual_seed(3), output_type="pt").images
    # not bitwise: the new process may run another thread count
    torch.testing.assert_close(torch.load(tmp_path / "x.pt", weights_only=True), here, rtol=1e-5, atol=1e-5)
    for name in [None, "flow-dpm++"]:
        out = tmp_path / f"{name}.png"
        assert cli(["sample", pipe, "--steps", "3", "--per-class", "1", "--out", str(out)]
                   + (["--scheduler", name] if name else [])) == 0 and out.is_file()
    capsys.readouterr()
    assert cli(["sample", pipe, "--scheduler", "ddim", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("flow-matching model: use flow-euler, flow-heun, flow-dpm++") and "Traceback" not in err
    assert cli(["eval", pipe, "--steps", "1", "2", "--num-samples", "20", "--batch-size", "10",
                "--guidance-sweep", "2", "--guidance-steps", "2", "--out", str(tmp_path / "eval")]) == 0
    rows = json.loads((tmp_path / "eval/eval-model.json").read_text())
    assert [r["scheduler"] for r in rows] == ["flow-euler"] * 3 and all(math.isfinite(r["fid"]) for r in rows)
    assert [(r["steps"], r["guidance_scale"]) for r in rows] == [(1, 1.0), (2, 1.0), (2, 2.0)]
