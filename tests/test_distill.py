"""End-to-end distillation on tiny models: files, losses, resume, export, backbones."""


import math

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

import distill  # noqa: F401
from distill.config import recipe_from_dict
from distill.errors import DistillError
from distill.engine.run_dir import read_metrics
from distill.distillation.draws import StepDraws
from distill.distillation.loop import student_timestep_index, train_distill
from distill.diffusion.train import train_teacher

from .conftest import tiny_recipe_dict


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    d = tmp_path_factory.mktemp("teacher")
    run_dir = train_teacher(recipe_from_dict(tiny_recipe_dict(d, max_steps=30, learning_rate=3e-3, checkpoint_every=30)))
    return str(run_dir)


def distill_recipe(tmp_path, teacher, distill=None, discriminator=None, dmd=None, experimental=None, consistency=None,
                   **train):
    return recipe_from_dict(distill_recipe_dict(tmp_path, teacher, distill, discriminator, dmd, experimental,
                                                consistency, **train))


def distill_recipe_dict(tmp_path, teacher, distill=None, discriminator=None, dmd=None, experimental=None,
                        consistency=None, **train) -> dict:
    r = tiny_recipe_dict(tmp_path, max_steps=4, checkpoint_every=2, learning_rate=1e-4, lr_scheduler="constant",
                         lr_warmup_steps=0)
    del r["teacher"], r["data"]["resolution"]  # the distillation task takes both from the teacher
    r["task"] = "distill"
    r["distill"] = {"teacher": teacher, "coverage_classifier": None, **(distill or {})}
    r["discriminator"] = {"head_channels": 8, **(discriminator or {})}
    r["dmd"], r["experimental"] = dmd or {}, experimental or {}
    if consistency:
        r["consistency"] = consistency
    r["train"].update(train)
    return r


def test_distill_run_files_and_metrics(tmp_path, tiny_teacher):
    rec = distill_recipe(tmp_path, tiny_teacher, distill={"coverage_classifier": "digits"}, sample_every=2)
    run_dir = train_distill(rec)
    for f in ["recipe.yaml", "metrics.jsonl", "model_index.json", "checkpoints/checkpoint-4/student.safetensors",
              "checkpoints/checkpoint-4/heads.safetensors", "samples/step-0000002.png"]:
        assert (run_dir / f).exists(), f
    rows = read_metrics(run_dir / "metrics.jsonl")
    train_rows = [r for r in rows if "loss_d" in r]
    assert len(train_rows) == 4
    for key in ["loss_d", "loss_g", "loss_distill", "d_acc_real", "d_acc_fake", "grad_norm_g", "grad_norm_d", "r1", "lr"]:
        assert all(key in r for r in train_rows), key
    cov = [r for r in rows if "class_coverage" in r]
    assert cov and 0 <= cov[-1]["class_coverage"] <= 1 and "diversity_ratio" in cov[-1]
    # the student samples in 1 step with no guidance through plain diffusers
    pipe = DiffusionPipeline.from_pretrained(str(run_dir))
    assert type(pipe.scheduler).__name__ == "LCMScheduler"
    pipe.scheduler.set_timesteps(4)
    assert pipe.scheduler.timesteps.tolist() == [999, 749, 499, 249]
    x = pipe(class_labels=[0, 1, 2], num_inference_steps=1, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()


def test_student_starts_from_teacher_and_moves(tmp_path, tiny_teacher):
    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=2, checkpoint_every=2))
    w_t = load_file(f"{tiny_teacher}/unet/diffusion_pytorch_model.safetensors")
    w_s = load_file(run_dir / "checkpoints/checkpoint-2/student.safetensors")
    diffs = [float((w_s[k] - w_t[k]).abs().max()) for k in w_t]
    assert max(diffs) > 0 and max(diffs) < 0.05  # initialised from the teacher, a few small steps


def test_distill_resume_exact(tmp_path, tiny_teacher):
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher))
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest"))
    for name in ["student.safetensors", "heads.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name



def test_resume_against_other_teacher_weights_is_refused(tmp_path, tiny_teacher):
    """A checkpoint names the teacher weights it was trained against: resuming it with a teacher whose weights
    changed (retrained in place, another model at the same path) is a one-line error, nothing is written."""
    import shutil

    from safetensors.torch import save_file

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    run_dir = train_distill(distill_recipe(tmp_path, str(teacher), interrupt_at=2))
    w = load_file(teacher / "unet" / "diffusion_pytorch_model.safetensors")
    save_file({k: v + 1e-3 if k == next(iter(w)) else v for k, v in w.items()},
              str(teacher / "unet" / "diffusion_pytorch_model.safetensors"))
    before = (run_dir / "metrics.jsonl").read_bytes()
    with pytest.raises(DistillError, match="checkpoint-2: trained against other teacher weights"):
        train_distill(distill_recipe(tmp_path, str(teacher), resume_from_checkpoint="latest"))
    assert (run_dir / "metrics.jsonl").read_bytes() == before
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-2"]
    save_file(w, str(teacher / "unet" / "diffusion_pytorch_model.safetensors"))  # the teacher it was trained with
    train_distill(distill_recipe(tmp_path, str(teacher), resume_from_checkpoint="latest"))
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir()

@pytest.mark.parametrize("over", [
    {"discriminator": {"loss": "ns", "r1_gamma": 0.0, "augment": ""}},
    {"distill": {"lambda_adv": 0.0}},  # regression term alone
    {"distill": {"lambda_distill": 0.0}, "discriminator": {"loss": "lsgan"}},  # adversarial term alone
    {"distill": {"distill_weighting": "sds"}},
    {"distill": {"distill_weighting": "nfsd"}},
    {"discriminator": {"steps": 2}},
])
def test_distill_variants_run(tmp_path, tiny_teacher, over):
    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=2, **over))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_g" in r]
    assert len(rows) == 2 and all(isinstance(r["loss"], float) for r in rows)


def test_timm_backbone_warns_when_random(tmp_path, tiny_teacher):
    with pytest.warns(UserWarning, match="RANDOM features"):
        run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=1, discriminator={
            "backbone": "timm:test_vit", "backbone_pretrained": "none", "backbone_img_size": 32, "backbone_layers": [1, 3]}))
    assert (run_dir / "model_index.json").exists()


def test_bad_inputs(tmp_path, tiny_teacher):
    with pytest.raises(DistillError, match="distill.teacher"):
        train_distill(distill_recipe(tmp_path / "a", ""))
    with pytest.raises(DistillError, match="unknown backbone"):
        train_distill(distill_recipe(tmp_path / "b", tiny_teacher, discriminator={"backbone": "clip"}))
    with pytest.raises(DistillError, match="cannot load a pipeline"):
        train_distill(distill_recipe(tmp_path / "c", str(tmp_path / "nowhere")))


def test_nonfinite_guard_keeps_checkpoint(tmp_path, tiny_teacher):
    rec = distill_recipe(tmp_path, tiny_teacher, max_steps=6, checkpoint_every=2, learning_rate=1e6, max_grad_norm=1e9,
                         distill={"lambda_distill": 1e30})
    with pytest.raises(DistillError, match="non-finite"):
        train_distill(rec)


def test_run_distill_writes_report(tmp_path, tiny_teacher):
    """`distill run` for a distill recipe: train, evaluate teacher and student, time them, report.md."""
    import json

    from distill.distillation.loop import run_distill

    r = distill_recipe(tmp_path, tiny_teacher, max_steps=2)
    r.eval.num_samples, r.eval.batch_size = 60, 30
    r.report.teacher_steps, r.report.student_steps = [1, 2], [1, 2]
    r.report.latency_batch, r.report.latency_repeats = 4, 2
    run_dir = run_distill(r)
    for f in ["report.md", "report.json", "side_by_side.png", "fid_vs_steps.png", "eval/eval-student.json"]:
        assert (run_dir / f).is_file(), f
    rep = json.loads((run_dir / "report.json").read_text())
    assert set(rep["student"]) == {"1", "2"} and rep["teacher_best"]["steps"] in (1, 2)
    lat = {(x["model"], x["steps"]): x for x in rep["latency_s"]}
    assert lat[("teacher + guidance", 50)]["nfe"] == 100 and lat[("student", 1)]["nfe"] == 1
    assert lat[("teacher", 50)]["seconds"] > lat[("student", 1)]["seconds"] > 0
    md = (run_dir / "report.md").read_text()
    assert "| teacher + guidance | 50 | 2.0 | 100 |" in md and "![side by side](side_by_side.png)" in md
    # the exported student's model card: Hub metadata with the report's numbers (a local teacher: no base_model)
    from huggingface_hub import ModelCard

    card = ModelCard.load(run_dir / "README.md").data
    assert card.library_name == "diffusers" and card.base_model is None
    assert card.to_dict()["distill"]["teacher"] == tiny_teacher
    assert {r.metric_name: r.metric_value for r in card.eval_results} == \
        {f"FID, {s} steps": round(fid, 4) for s, fid in rep["student"].items()}
    assert card.to_dict()["distill"]["teacher_best_fid"] == round(rep["teacher_best"]["fid"], 4)
    # the finished run folder is the pipeline, as diffusers' training scripts leave output_dir
    pipe = DiffusionPipeline.from_pretrained(str(run_dir))
    assert type(pipe).__name__ == "DistillPipeline" and set(pipe.components) == {"unet", "scheduler"}
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir() and (run_dir / "model_index.json").is_file()


def test_dmd_loss_gradient_is_the_normalised_score_difference():
    from distill.distillation.objectives import dmd_loss

    torch.manual_seed(0)
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    real, fake = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    dmd_loss(x, real, fake).sum().backward()
    w = 1 / (x.detach() - real).abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    assert torch.allclose(x.grad, (fake - real) * w / 16, atol=1e-6)  # mean over the 16 pixels
    assert float(dmd_loss(x, real, real).detach().abs().max()) == 0  # fake score = teacher: no force


def test_distill_with_dmd_resumes_exactly(tmp_path, tiny_teacher):
    dmd = {"distill": {"lambda_dmd": 1.0}, "dmd": {"learning_rate": 1e-3}}
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, **dmd))
    rows = [r for r in read_metrics(full / "metrics.jsonl") if "loss_dmd" in r]
    assert len(rows) == 4 and all("loss_fake_score" in r for r in rows)
    w_t = load_file(f"{tiny_teacher}/unet/diffusion_pytorch_model.safetensors")
    w_f = load_file(full / "checkpoints/checkpoint-4/fake_score.safetensors")
    assert max(float((w_f[k] - w_t[k]).abs().max()) for k in w_t) > 0  # the fake score trained on student samples
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3, **dmd))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest", **dmd))
    for name in ["student.safetensors", "fake_score.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(DistillError, match="lambda_dmd"):
        distill_recipe(tmp_path / "c", tiny_teacher, distill={"lambda_dmd": 1.0, "distill_weighting": "nfsd"})


def test_disc_weights_drop_pairs_from_the_discriminator_loss():
    """Pairs with weight 0 (outputs of student steps outside distill.disc_timesteps) give the heads no
    gradient, and the logged accuracy counts only the kept pairs."""
    from distill.gan.losses import get_adv_loss
    from distill.distillation.adversarial import d_loss_and_metrics

    logits = torch.tensor([[2.0], [-3.0], [-2.0], [3.0]], requires_grad=True)  # real (2), fake (2)
    w = torch.tensor([1.0, 0.0])
    loss, m = d_loss_and_metrics(get_adv_loss("hinge"), logits, None, 2, 0.0, w)
    loss.backward()
    assert logits.grad[1].item() == 0 and logits.grad[3].item() == 0  # the dropped pair
    assert logits.grad[0].item() == 0 and logits.grad[2].item() == 0  # kept pair beyond the hinge margin
    assert m["d_acc_real"].item() == 1 and m["d_acc_fake"].item() == 1  # the dropped pair was misclassified
    assert m["loss_d"].item() == 0


def test_disc_timesteps_run_and_validation(tmp_path, tiny_teacher):
    run_dir = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, max_steps=2,
                                           experimental={"disc_timesteps": [999]}))
    assert (run_dir / "model_index.json").exists()
    with pytest.raises(DistillError, match="disc_timesteps"):
        distill_recipe(tmp_path / "b", tiny_teacher, experimental={"disc_timesteps": [500]})


def test_distill_timesteps_mask_the_regression_term(tmp_path, tiny_teacher, monkeypatch):
    """experimental.distill_timesteps: samples of the other student timesteps get no ADD regression term, and a
    batch with none of them (and no DMD term) costs no teacher call."""
    from distill.distillation import loop

    calls, real = [], loop.teacher_target
    monkeypatch.setattr(loop, "teacher_target", lambda *a, **k: calls.append(1) or real(*a, **k))

    def loss_distill(weights, ts):
        calls.clear()
        rec = distill_recipe(tmp_path / f"{weights}{ts}", tiny_teacher, max_steps=2, checkpoint_every=2, log_every=1,
                             distill={"timestep_weights": weights}, experimental={"distill_timesteps": ts})
        return [r["loss_distill"] for r in read_metrics(train_distill(rec) / "metrics.jsonl") if "loss_distill" in r]

    assert loss_distill([0, 1, 0, 0], [999]) == [0.0, 0.0] and not calls  # every sample at 749: masked
    rec = distill_recipe(tmp_path / "noadv", tiny_teacher, max_steps=1, checkpoint_every=1,
                         distill={"timestep_weights": [0, 1, 0, 0], "lambda_adv": 0.0},
                         experimental={"distill_timesteps": [999]})
    assert (train_distill(rec) / "model_index.json").exists()  # a loss of zeros still backpropagates
    assert all(v > 0 for v in loss_distill([0, 1, 0, 0], [749, 249])) and len(calls) >= 2
    with pytest.raises(DistillError, match="distill_timesteps"):
        distill_recipe(tmp_path / "b", tiny_teacher, experimental={"distill_timesteps": [500]})


def test_student_timestep_weights_draw_and_validation(tmp_path, tiny_teacher):
    g = torch.Generator().manual_seed(0)
    i = student_timestep_index(4, torch.tensor([3.0, 1.0, 0.0, 0.0], dtype=torch.float64), 20000, g)
    frac = torch.bincount(i, minlength=4).double() / len(i)
    assert abs(frac[0] - 0.75) < 0.02 and abs(frac[1] - 0.25) < 0.02 and frac[2:].sum() == 0
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)  # uniform: the old randint stream
    assert torch.equal(student_timestep_index(4, None, 64, g1), torch.randint(0, 4, (64,), generator=g2))
    run_dir = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, max_steps=2,
                                           distill={"timestep_weights": [2, 1, 1, 1]}))
    assert (run_dir / "model_index.json").exists()
    for bad in ([1, 1], [1, -1, 1, 1], [0, 0, 0, 0]):
        with pytest.raises(DistillError, match="timestep_weights"):
            distill_recipe(tmp_path / "b", tiny_teacher, distill={"timestep_weights": bad})


def test_lazy_r1_every_other_step(tmp_path, tiny_teacher):
    run_dir = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, max_steps=4, log_every=1,
                                           discriminator={"r1_every": 2}))
    rows = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl") if "loss_d" in r}
    assert [s for s in sorted(rows) if "r1" in rows[s]] == [1, 3]  # R1 on steps 0 and 2 (logged as 1 and 3)
    assert all(rows[s]["r1"] > 0 for s in (1, 3))
    with pytest.raises(DistillError, match="r1_every"):
        distill_recipe(tmp_path / "b", tiny_teacher, discriminator={"r1_every": 0})


def test_disc_heads_per_timestep_run_resumes_exactly(tmp_path, tiny_teacher):
    over = {"discriminator": {"heads_per_timestep": True}}
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, **over))
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3, **over))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest", **over))
    one_set = load_file(train_distill(distill_recipe(tmp_path / "c", tiny_teacher, max_steps=1)) / "checkpoints/checkpoint-1/heads.safetensors")
    for name in ["student.safetensors", "heads.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    n_sets = len(distill_recipe(tmp_path / "d", tiny_teacher).distill.student_timesteps)
    assert len(a) == n_sets * len(one_set)  # one set of heads per student timestep


def test_bf16_mixed_precision_run(tmp_path, tiny_teacher):
    """--mixed_precision bf16 on CPU: the teacher's target, the discriminator features and the DMD fake
    score run under autocast; losses stay finite, R1 still gets its gradients, the fp32 export samples,
    and the student lands near the fp32 run's (same draws, bf16 rounding only)."""
    from accelerate.state import AcceleratorState

    over = dict(max_steps=2, checkpoint_every=2, distill={"lambda_dmd": 1.0}, discriminator={"r1_gamma": 1e-3})
    AcceleratorState._reset_state(True)  # accelerate keeps one process-wide state (mixed precision)
    try:
        bf = train_distill(distill_recipe(tmp_path / "bf", tiny_teacher, mixed_precision="bf16", **over))
    finally:
        AcceleratorState._reset_state(True)
    fp = train_distill(distill_recipe(tmp_path / "fp", tiny_teacher, **over))
    rows = [r for r in read_metrics(bf / "metrics.jsonl") if "loss_distill" in r]
    assert rows and all(torch.isfinite(torch.tensor(r[k])) for r in rows for k in ("loss", "loss_dmd", "r1"))
    assert rows[-1]["r1"] > 0
    a = load_file(bf / "checkpoints/checkpoint-2/student.safetensors")
    b = load_file(fp / "checkpoints/checkpoint-2/student.safetensors")
    assert all(a[k].dtype == torch.float32 for k in a)  # master weights stay fp32
    assert 0 < max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-2
    pipe = DiffusionPipeline.from_pretrained(str(bf))
    assert torch.isfinite(pipe(batch_size=2, num_inference_steps=1, output_type="pt").images).all()


def test_fake_score_backbone_trains_its_encoder_and_resumes_exactly(tmp_path, tiny_teacher):
    """DMD2's discriminator: heads on the fake score's encoder, which the discriminator loss trains too.
    After one step the fake score's decoder (reached by its denoising loss only) equals that of a run with
    the frozen teacher backbone, while its encoder differs; a resumed run ends where an unbroken one does."""
    dmd = {"distill": {"lambda_dmd": 1.0}, "dmd": {"learning_rate": 1e-3}}
    fsbb = {"r1_gamma": 1e-3, "backbone": "fake_score"}
    ref = train_distill(distill_recipe(tmp_path / "t", tiny_teacher, max_steps=1, discriminator={"r1_gamma": 1e-3}, **dmd))
    one = train_distill(distill_recipe(tmp_path / "f", tiny_teacher, max_steps=1, discriminator=fsbb, **dmd))
    w_ref = load_file(ref / "checkpoints/checkpoint-1/fake_score.safetensors")
    w_one = load_file(one / "checkpoints/checkpoint-1/fake_score.safetensors")
    enc = [k for k in w_ref if k.startswith(("down_blocks.", "mid_block.", "conv_in."))]
    dec = [k for k in w_ref if k.startswith(("up_blocks.", "conv_out."))]
    assert enc and dec
    assert all(torch.equal(w_ref[k], w_one[k]) for k in dec)
    assert any(not torch.equal(w_ref[k], w_one[k]) for k in enc)
    rows = [r for r in read_metrics(one / "metrics.jsonl") if "loss_d" in r]
    assert rows and rows[-1]["r1"] > 0
    zero = train_distill(distill_recipe(tmp_path / "z", tiny_teacher, max_steps=1,
                                        discriminator=fsbb, experimental={"fake_score_disc_weight": 0.0}, **dmd))
    w_zero = load_file(zero / "checkpoints/checkpoint-1/fake_score.safetensors")
    assert all(torch.equal(w_ref[k], w_zero[k]) for k in w_ref)  # weight 0: only the denoising loss trains it
    over = {**dmd, "discriminator": fsbb}
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, **over))
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3, **over))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest", **over))
    for name in ["student.safetensors", "heads.safetensors", "fake_score.safetensors"]:
        a, b = load_file(full / "checkpoints/checkpoint-4" / name), load_file(part / "checkpoints/checkpoint-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    with pytest.raises(DistillError, match="lambda_dmd"):
        distill_recipe(tmp_path / "c", tiny_teacher, discriminator={"backbone": "fake_score"})


def test_one_step_student_exports_a_one_step_scheduler(tmp_path, tiny_teacher):
    """student_timesteps [999]: the exported LCMScheduler samples at 999 only; asking it for more steps
    is a one-line error, not noise."""
    from distill.diffusion.sampling import sample

    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=1, checkpoint_every=1,
                                           distill={"student_timesteps": [999]}))
    pipe = DiffusionPipeline.from_pretrained(str(run_dir))
    pipe.scheduler.set_timesteps(1)
    assert pipe.scheduler.timesteps.tolist() == [999]
    x = pipe(class_labels=[0, 1], num_inference_steps=1, output_type="pt").images
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()
    with pytest.raises(DistillError, match="cannot sample in 4 steps"):
        sample(pipe.unet, pipe.scheduler, torch.randn(1, 1, 8, 8), torch.tensor([0]), 4)


def test_step_subsets_sample_the_chosen_timesteps(tmp_path, tiny_teacher, monkeypatch):
    """experiments/step_subsets.py samples each subset at exactly its timesteps and writes one row per subset;
    a subset that is not decreasing is a usage error."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    import distill.eval.evaluate as evaluate

    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=1, checkpoint_every=1))
    spec = importlib.util.spec_from_file_location(
        "step_subsets", Path(__file__).resolve().parent.parent / "experiments" / "step_subsets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    visited, sample = [], evaluate.sample

    def spy(unet, sched, *a, **k):
        out = sample(unet, sched, *a, **k)
        visited.append(sched.timesteps.tolist())
        return out

    monkeypatch.setattr(evaluate, "sample", spy)
    monkeypatch.setattr(sys, "argv", ["step_subsets", str(run_dir), "--samples", "20", "--subsets", "999", "999,249"])
    mod.main()
    assert visited == [[999], [999, 249]]
    rows = json.loads((run_dir / "eval" / "step_subsets.json").read_text())
    assert [r["timesteps"] for r in rows] == [[999], [999, 249]] and all(math.isfinite(r["fid"]) for r in rows)
    monkeypatch.setattr(sys, "argv", ["step_subsets", str(run_dir), "--subsets", "249,999"])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 2


def test_backward_simulation_input_is_the_students_own_chain():
    """distill.backward_simulation: a sample at student timestep s_i gets x0 = G(x_{s_j}, s_j) renoised with
    its own noise to s_{j+1}, for j < i, starting from data noised to s_0 (DMD2 Sec. 4.5); s_0 samples
    keep the plain noised data."""
    from types import SimpleNamespace

    from diffusers import DDPMScheduler

    from distill.diffusion.denoiser import Denoiser, LabelCond
    from distill.distillation.loop import DistillTrainer

    class Net(torch.nn.Module):
        def forward(self, x, t, class_labels=None):  # depends on x, t and the label
            t = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1)
            return SimpleNamespace(sample=0.5 * x + 1e-3 * t + class_labels.view(-1, 1, 1, 1).to(x.dtype))

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    den = Denoiser.from_scheduler(Net(), sched, LabelCond(null_label=10))
    tr = DistillTrainer.__new__(DistillTrainer)
    tr.student_w, tr.ts = den, torch.tensor([999, 749, 499, 249])
    g = torch.Generator().manual_seed(0)
    n = 8
    i_s = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    none = dict.fromkeys(["t_d", "noise_d", "u", "t", "eps2"])  # the discriminator's and the teacher's draws: unused
    b = StepDraws(x0=torch.randn(n, 1, 4, 4, generator=g), eps=torch.randn(n, 1, 4, 4, generator=g), s=tr.ts[i_s],
                  cond=torch.arange(n) % 3, i_s=i_s, eps_bs=torch.randn(n, 3, 1, 4, 4, generator=g), **none)
    x = tr.student_input(b)
    for k in range(n):
        one = lambda v: v[k:k + 1]
        xk = den.add_noise(one(b.x0), one(b.eps), tr.ts[:1])
        for j in range(int(i_s[k])):
            x0 = den.x0(xk, tr.ts[j:j + 1], one(b.cond))
            xk = den.add_noise(x0, b.eps_bs[k:k + 1, j], tr.ts[j + 1:j + 2])
        if i_s[k] == 0:
            xk = den.add_noise(one(b.x0), one(b.eps), one(b.s))
        torch.testing.assert_close(x[k:k + 1], xk)
    b.eps_bs = None  # off: data noised to s, as ADD
    torch.testing.assert_close(tr.student_input(b), den.add_noise(b.x0, b.eps, b.s))


def test_backward_simulation_run_resumes_exactly(tmp_path, tiny_teacher):
    over = {"distill": {"backward_simulation": True, "lambda_dmd": 1.0}}
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, **over))
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3, **over))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest", **over))
    plain = train_distill(distill_recipe(tmp_path / "c", tiny_teacher, distill={"lambda_dmd": 1.0}))
    a, b = load_file(full / "checkpoints/checkpoint-4/student.safetensors"), load_file(part / "checkpoints/checkpoint-4/student.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(plain / "checkpoints/checkpoint-4/student.safetensors")
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the simulated inputs changed the updates


@pytest.mark.parametrize("lambda_distill,lambda_dmd,calls", [(0.0, 0.0, 0), (0.5, 0.0, 2), (0.0, 1.0, 2)])
def test_teacher_is_queried_only_for_a_teacher_term(tmp_path, tiny_teacher, monkeypatch, lambda_distill, lambda_dmd,
                                                    calls):
    """Adversarial-only training (LADD: lambda_distill = lambda_dmd = 0) makes no teacher call in the student
    phase; the regression and DMD terms each need one per step."""
    import distill.distillation.loop as loop

    seen = []
    real = loop.teacher_target
    monkeypatch.setattr(loop, "teacher_target", lambda *a, **k: seen.append(1) or real(*a, **k))
    rec = distill_recipe(tmp_path, tiny_teacher, distill={"lambda_distill": lambda_distill, "lambda_dmd": lambda_dmd},
                         max_steps=2, checkpoint_every=2)
    rows = [r for r in read_metrics(train_distill(rec) / "metrics.jsonl") if "loss_g" in r]
    assert len(seen) == calls and len(rows) == 2
    assert all(("loss_distill" in r) == (lambda_distill > 0) for r in rows)
    assert all(math.isfinite(r["loss_g"]) for r in rows)


def test_student_first_critics_judge_the_student_phase_outputs(tmp_path, tiny_teacher, monkeypatch):
    """distill.student_first (DMD2's order): one student pass per step, the discriminator and the fake score
    train on exactly the student phase's outputs, and the run resumes exactly."""
    from distill.distillation.loop import DistillTrainer

    over = {"distill": {"backward_simulation": True, "lambda_dmd": 1.0, "student_first": True}}
    passes, g_fakes, d_fakes = [], [], []
    real_input, real_phase, real_update = (DistillTrainer.student_input, DistillTrainer.student_phase,
                                           DistillTrainer.update_discriminator)
    monkeypatch.setattr(DistillTrainer, "student_input", lambda self, b: passes.append(1) or real_input(self, b))
    monkeypatch.setattr(DistillTrainer, "student_phase",
                        lambda self, step, m: [g_fakes.append(f) or (b, f) for b, f in real_phase(self, step, m)])
    monkeypatch.setattr(DistillTrainer, "update_discriminator",
                        lambda self, b, fake, step, m: d_fakes.append(fake) or real_update(self, b, fake, step, m))
    full = train_distill(distill_recipe(tmp_path / "a", tiny_teacher, **over))
    assert len(passes) == 4 and len(d_fakes) == 4  # 4 steps, one student pass each
    assert all(torch.equal(g, d) for g, d in zip(g_fakes, d_fakes))
    part = train_distill(distill_recipe(tmp_path / "b", tiny_teacher, interrupt_at=3, **over))
    train_distill(distill_recipe(tmp_path / "b", tiny_teacher, resume_from_checkpoint="latest", **over))
    passes.clear()
    critics_first = train_distill(distill_recipe(tmp_path / "c", tiny_teacher, max_steps=2, checkpoint_every=2,
                                                 distill={"backward_simulation": True, "lambda_dmd": 1.0}))
    assert len(passes) == 4  # the default order: the critics' own student pass, then the student's
    a, b = load_file(full / "checkpoints/checkpoint-4/student.safetensors"), load_file(part / "checkpoints/checkpoint-4/student.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    f_a = load_file(full / "checkpoints/checkpoint-2/fake_score.safetensors")
    f_c = load_file(critics_first / "checkpoints/checkpoint-2/fake_score.safetensors")
    assert any(not torch.equal(f_a[k], f_c[k]) for k in f_a)  # the critics trained on other samples


def test_teacher_t_below_s_rescales_the_teacher_timestep_draw(tmp_path, tiny_teacher, monkeypatch):
    """experimental.teacher_t_below_s: the teacher / DMD timestep of a sample from student timestep s lies in
    [t_min, min(t_max, s)], the same draw rescaled (samples at s >= t_max keep theirs)."""
    from distill.distillation.loop import DistillTrainer

    seen = {}
    real_draw = DistillTrainer.draw
    monkeypatch.setattr(DistillTrainer, "draw", lambda self, step, tag, k, a: seen.setdefault(
        (self.recipe.experimental.teacher_t_below_s, step, tag), real_draw(self, step, tag, k, a)))
    for on in (False, True):
        train_distill(distill_recipe(tmp_path / str(on), tiny_teacher, max_steps=2, checkpoint_every=2,
                                     batch_size=64, distill={"lambda_dmd": 1.0},
                                     experimental={"teacher_t_below_s": on}))
    dc = distill_recipe(tmp_path / "c", tiny_teacher).distill
    for step in (0, 1):
        off, on = seen[(False, step, "g")], seen[(True, step, "g")]
        assert torch.equal(off.s, on.s)
        top = on.s.clamp(max=dc.t_max)
        assert (on.t >= dc.t_min).all() and (on.t <= top).all()
        keep = on.s >= dc.t_max
        assert keep.any() and (~keep).any() and torch.equal(on.t[keep], off.t[keep])
        assert (off.t[~keep] > off.s[~keep]).any()  # off: noise levels above the student's own


@pytest.mark.parametrize("student_first", [False, True])
def test_two_time_scale_update(tmp_path, tiny_teacher, student_first):
    """discriminator.steps = k (DMD2's TTUR): the heads and the fake score take k updates per student update,
    with either phase order."""
    k = 3
    run_dir = train_distill(distill_recipe(tmp_path, tiny_teacher, max_steps=2, checkpoint_every=2,
                                           distill={"lambda_dmd": 1.0, "student_first": student_first},
                                           discriminator={"steps": k}))
    ckpt = run_dir / "checkpoints" / "checkpoint-2"
    updates = {name: {int(s["step"]) for s in torch.load(ckpt / f"{name}.pt", weights_only=True)["state"].values()}
               for name in ["optimizer_g", "optimizer_d", "optimizer_fake"]}
    assert updates == {"optimizer_g": {2}, "optimizer_d": {2 * k}, "optimizer_fake": {2 * k}}
