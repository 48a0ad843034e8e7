"""Distilling flow-matching teachers (task: distill, pixel): the student's timesteps are those the exported plain
FlowMatchEulerDiscreteScheduler(stochastic_sampling=True) visits, the exported 1-step student is the loop's own x0
prediction, runs train / export / reload / resume exactly, with UNet and DiT teachers, and the report and latency
bench take a flow teacher and its student."""

import json

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

import distill  # noqa: F401  (registers DistillPipeline with diffusers)
from distill.config import recipe_from_dict
from distill.diffusion.denoiser import Denoiser
from distill.diffusion.sampling import noise_scheduler_from
from distill.diffusion.teachers import load_teacher
from distill.diffusion.train import train_teacher
from distill.distillation.loop import train_distill
from distill.engine.run_dir import read_metrics
from distill.errors import RecipeError

from .conftest import tiny_recipe_dict
from .test_distill import distill_recipe

FOUR = [1000, 800, 501, 4]  # a 4-step student of a shift-2 teacher: FlowMatchEulerDiscreteScheduler(shift=2)'s grid


def train_flow_teacher(root, kind):
    r = tiny_recipe_dict(root, max_steps=6, checkpoint_every=6, learning_rate=3e-3)
    r["teacher"].update(kind=kind, prediction_type="flow", timestep_sampling="logit_normal", flow_shift=2.0,
                        dit_depth=2, dit_width=16, dit_heads=2)
    return str(train_teacher(recipe_from_dict(r)))


@pytest.fixture(scope="module")
def flow_unet(tmp_path_factory):
    return train_flow_teacher(tmp_path_factory.mktemp("flow-unet"), "unet2d")


@pytest.fixture(scope="module")
def flow_dit(tmp_path_factory):
    return train_flow_teacher(tmp_path_factory.mktemp("flow-dit"), "dit")


def test_student_timesteps_are_the_exported_schedulers(tmp_path, flow_unet):
    """A 4-step flow student trains at t = T shift(linspace(1, ., 4)); set_timesteps(k) of the exported scheduler
    visits exactly those for k = 1, 2, 4; other timesteps are a one-line error naming the right ones."""
    with pytest.raises(RecipeError, match=r"at t = \[1000, 800, 501, 4\]"):
        train_distill(distill_recipe(tmp_path / "bad", flow_unet, distill={"student_timesteps": [999, 749, 499, 249]}))
    run = train_distill(distill_recipe(tmp_path, flow_unet, max_steps=2, distill={"student_timesteps": FOUR}))
    teacher = load_teacher(flow_unet)
    ts = Denoiser.from_scheduler(teacher.unet, noise_scheduler_from(teacher.scheduler.config)).student_timesteps(FOUR)
    pipe = DiffusionPipeline.from_pretrained(str(run))
    cfg = pipe.scheduler.config
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and cfg.stochastic_sampling and cfg.shift == 2.0
    for k, idx in [(1, [0]), (2, [0, 3]), (4, [0, 1, 2, 3])]:
        pipe.scheduler.set_timesteps(k)
        torch.testing.assert_close(pipe.scheduler.timesteps, ts[idx], atol=1e-3, rtol=0)
        x = pipe(class_labels=[0, 1], num_inference_steps=k, output_type="pt").images
        assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_one_step_student_pipeline_is_the_loops_x0(tmp_path, flow_unet):
    """The exported 1-step student (fresh load through diffusers) on noise z and label y equals the loop's x0
    prediction at s = T: x_s = z, x0 = z - v(z, T, y)."""
    run = train_distill(distill_recipe(tmp_path, flow_unet, max_steps=1, checkpoint_every=1,
                                       distill={"student_timesteps": [1000], "lambda_dmd": 1.0}))
    pipe = DiffusionPipeline.from_pretrained(str(run))
    teacher = load_teacher(flow_unet)
    den = Denoiser.from_scheduler(pipe.unet, noise_scheduler_from(teacher.scheduler.config))
    s = den.student_timesteps([1000])
    assert s.tolist() == [1000.0]
    y = torch.tensor([3, 7])
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    real = torch.rand(2, 1, 8, 8) * 2 - 1  # sigma = 1: the real sample is gone from x_s
    with torch.no_grad():
        x0 = den.x0(den.add_noise(real, z, s.expand(2)), s.expand(2), y)
    got = pipe(class_labels=y, num_inference_steps=1, generator=torch.Generator().manual_seed(5), output_type="pt").images
    torch.testing.assert_close(got, (x0 / 2 + 0.5).clamp(0, 1), atol=1e-6, rtol=0)
    assert not torch.allclose(got, (z / 2 + 0.5).clamp(0, 1))  # the network did something


def test_flow_distillation_resumes_exactly(tmp_path, flow_unet):
    """Regression + DMD fake score + the teacher-backbone discriminator, all noising through the flow Denoiser."""
    kw = dict(distill={"student_timesteps": FOUR, "lambda_dmd": 1.0, "distill_weighting": "sds"},
              discriminator={"heads_per_timestep": True})
    full = train_distill(distill_recipe(tmp_path / "a", flow_unet, **kw))
    part = train_distill(distill_recipe(tmp_path / "b", flow_unet, interrupt_at=3, **kw))
    train_distill(distill_recipe(tmp_path / "b", flow_unet, resume_from_checkpoint="latest", **kw))
    for name in ["student.safetensors", "heads.safetensors", "fake_score.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = [r for r in read_metrics(full / "metrics.jsonl") if "loss_distill" in r]
    assert len(rows) == 4 and all(r["loss_dmd"] == r["loss_dmd"] for r in rows)  # finite, logged


@pytest.mark.parametrize("backbone", ["teacher", "fake_score"])
def test_dit_teacher_distils_with_its_own_features(tmp_path, flow_dit, backbone):
    """A flow DiT teacher: the discriminator reads the DiT's tokens (DiTFeatures); the student exports and reloads."""
    run = train_distill(distill_recipe(tmp_path, flow_dit, max_steps=2, distill={"student_timesteps": [1000, 4],
                                                                                 "lambda_dmd": 1.0},
                                       discriminator={"backbone": backbone}))
    w = load_file(run / "checkpoints/checkpoint-2/heads.safetensors")
    assert w and all(torch.isfinite(v).all() for v in w.values())
    convs = [tuple(v.shape) for k, v in w.items() if k.endswith("conv.parametrizations.weight.original")]
    assert convs == [(8, 16, 3, 3)] * 2  # one head per DiT layer read (depth 2), on its 16-wide tokens
    pipe = DiffusionPipeline.from_pretrained(str(run))
    assert type(pipe.unet).__name__ == "DiTTransformer2DModel"
    x = pipe(class_labels=[2, 9], num_inference_steps=2, output_type="pt").images
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()


def test_noise_ranges_are_checked_against_the_flow_schedule(tmp_path, flow_unet):
    with pytest.raises(RecipeError, match=r"'distill.t_max' \(1001\) lies beyond the teacher's schedule \[0, 1000\]"):
        train_distill(distill_recipe(tmp_path / "a", flow_unet, distill={"t_max": 1001, "student_timesteps": [1000]}))
    with pytest.raises(RecipeError, match="sds weighting divides by zero"):  # c(t) = alpha / sigma at sigma = 0
        train_distill(distill_recipe(tmp_path / "b", flow_unet, distill={"t_min": 0, "distill_weighting": "sds",
                                                                         "student_timesteps": [1000]}))
    with pytest.raises(RecipeError, match="nfsd weighting divides by zero"):  # NFSD's sigma / alpha at alpha = 0
        train_distill(distill_recipe(tmp_path / "c", flow_unet, distill={"t_max": 1000, "distill_weighting": "nfsd",
                                                                         "student_timesteps": [1000]}))


def test_run_distill_reports_a_flow_teacher(tmp_path, flow_unet):
    """`distill run`: the teacher evaluated with flow-euler, the student with its own scheduler, both timed."""
    from distill.distillation.loop import run_distill

    r = distill_recipe(tmp_path, flow_unet, max_steps=1, checkpoint_every=1, distill={"student_timesteps": FOUR})
    r.eval.num_samples, r.eval.batch_size = 20, 20
    r.report.teacher_steps, r.report.student_steps = [1, 2], [1, 2, 4]
    r.report.latency_batch, r.report.latency_repeats = 2, 1
    run = run_distill(r)
    rep = json.loads((run / "report.json").read_text())
    assert set(rep["student"]) == {"1", "2", "4"}
    t_rows = json.loads((run / "eval/eval-teacher.json").read_text())
    assert {x["scheduler"] for x in t_rows} == {"flow-euler"}
    lat = {(x["model"], x["steps"]): x for x in rep["latency_s"]}
    assert lat[("teacher + guidance", 50)]["nfe"] == 100 and lat[("student", 4)]["nfe"] == 4
    assert "Teacher sampled with flow-euler" in (run / "report.md").read_text()


@pytest.mark.parametrize("teacher", ["flow_unet", "flow_dit"])
def test_latency_bench_times_a_flow_teacher_and_its_student(tmp_path, teacher, request):
    """The teacher at 28 Euler steps with and without guidance and a 4-timestep student at 1, 2, 4 steps, through
    the same pipeline call; the bare forward goes through the network's conditioning (a DiT takes (B,) timesteps)."""
    from distill.bench import BenchConfig, run_benchmark
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import student_scheduler

    path = request.getfixturevalue(teacher)
    t = load_teacher(path)
    DistillPipeline(unet=t.unet, scheduler=student_scheduler(t.scheduler, FOUR)).save_pretrained(str(tmp_path / "s"))
    cfg = BenchConfig(teacher=path, student=str(tmp_path / "s"), batch_sizes=[2], teacher_steps=[28],
                      student_steps=[1, 2, 4], warmup=1, repeats=2, profile_repeats=1)
    res = run_benchmark(cfg, progress=False)
    assert not [r for r in res.rows if "error" in r]
    rows = {(r["model"], r["steps"], r["guidance"]): r for r in res.rows}
    assert set(rows) == {("teacher", 28, 1.0), ("teacher", 28, 2.0), ("student", 1, 1.0), ("student", 2, 1.0),
                         ("student", 4, 1.0)}
    g = rows[("teacher", 28, 2.0)]
    assert g["scheduler"] == "FlowMatchEulerDiscreteScheduler" and g["nfe"] == 56 and g["bare_forward_batch"] == 4
    assert g["denoiser_calls_seen"] == 28
    s4 = rows[("student", 4, 1.0)]
    assert s4["scheduler"] == "FlowMatchEulerDiscreteScheduler" and s4["nfe"] == 4 and s4["denoiser_calls_seen"] == 4
    (p,) = res.paired
    assert p["teacher_steps"] == 28 and p["student_steps"] == 1 and p["latency_ratio"] > 0
