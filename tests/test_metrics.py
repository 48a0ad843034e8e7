import pytest
import torch

from distill.engine.checkpoint import weights_fingerprint
from distill.config import DataConfig
from distill.data import load_images
from distill.eval.classifier import accuracy, load_classifier
from distill.eval.fid import extract, feature_extractor, fid_kid, pairwise_distance


def test_shipped_digits_classifier_accuracy():
    clf = load_classifier("digits")
    te = load_images(DataConfig(source="digits", split="test", resolution=16))
    assert accuracy(clf, te.images, te.labels) >= 0.97


def test_shipped_mnist_classifier_accuracy(mnist_npz):
    clf = load_classifier("mnist")
    te = load_images(DataConfig(source=str(mnist_npz), split="test", resolution=28))
    acc = accuracy(clf, te.images, te.labels)
    assert acc >= 0.98, acc
    assert abs(acc - clf.info["test_accuracy"]) < 1e-6  # the model card's number is the file's


def test_fid_self_zero_noise_large():
    ext = feature_extractor("classifier:digits")
    real = load_images(DataConfig(source="digits", split="train", resolution=16)).images
    test = load_images(DataConfig(source="digits", split="test", resolution=16)).images
    f_real = extract(ext, real)
    same = fid_kid(f_real, f_real)
    assert abs(same["fid"]) < 1e-3
    held_out = fid_kid(f_real, extract(ext, test))
    noise = torch.rand(len(test), 1, 16, 16) * 2 - 1
    bad = fid_kid(f_real, extract(ext, noise))
    assert bad["fid"] > 20 * max(held_out["fid"], 1e-3)
    # KID is unbiased: about 0 (it can dip below) for matching sets, large for noise
    assert abs(same["kid"]) < 0.02 * bad["kid"] and abs(held_out["kid"]) < 0.02 * bad["kid"]


def test_pairwise_distance_detects_collapse():
    f = torch.randn(200, 16)
    labels = torch.arange(200) % 4
    collapsed = f[labels].clone()  # every sample of class c is the same vector
    assert pairwise_distance(collapsed, labels) < 1e-6 < pairwise_distance(f, labels)


def test_evaluation_batches_are_shardable():
    """Any subset of batches (a shard of scripts/eval_sharded.py) equals the single-process samples."""
    from distill.diffusion.recipe import TeacherConfig
    from distill.eval.evaluate import generate, sample_batch
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import make_scheduler
    from distill.diffusion.teachers import build_noise_scheduler, build_unet2d

    tc = TeacherConfig(block_out_channels=[8, 8], norm_num_groups=4)
    torch.manual_seed(0)
    pipe = DistillPipeline(unet=build_unet2d(tc, 8, 1, 3).eval(), scheduler=build_noise_scheduler(tc))
    x, labels = generate(pipe, n=5, steps=2, batch=2, seed=7)
    assert x.shape == (5, 1, 8, 8) and labels.tolist() == [0, 1, 2, 0, 1]
    sched = make_scheduler("ddim", pipe.scheduler.config)
    for i in (2, 0, 1):  # out of order, as a second shard would run them
        part = sample_batch(pipe.unet, sched, i, labels, 2 * i, min(2, 5 - 2 * i), 2, 1.0, 7)
        assert torch.equal(part.float() / 127.5 - 1, x[2 * i:2 * i + 2])


def test_evaluation_reference_matches_sample_size(monkeypatch, tmp_path):
    """The real reference is loaded at the pipeline's resolution whatever the data config says."""
    from distill.config import EvalConfig
    from distill.diffusion.recipe import TeacherConfig
    from distill.eval import evaluate
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.teachers import build_noise_scheduler, build_unet2d

    tc = TeacherConfig(block_out_channels=[8, 8], norm_num_groups=4)
    pipe = DistillPipeline(unet=build_unet2d(tc, 8, 1, 10).eval(), scheduler=build_noise_scheduler(tc))
    seen = []
    real = evaluate.real_reference
    monkeypatch.setattr(evaluate, "real_reference", lambda cfg, *a: seen.append(cfg.resolution) or real(cfg, *a))
    ec = EvalConfig(num_samples=20, batch_size=10, steps=[1], features="classifier:digits")
    rows = evaluate.evaluate_pipeline(pipe, ec, DataConfig(source="digits", resolution=16), tmp_path / "eval")
    assert seen == [8] and len(rows) == 1 and rows[0]["fid"] == rows[0]["fid"]  # not NaN
    # the rows name the weights they scored: found again for these weights, not for changed ones
    fp = weights_fingerprint(pipe.unet)
    assert rows[0]["weights"] == fp
    assert evaluate.cached_rows(tmp_path, "teacher", ec, [1], 1.0, "ddim", weights=fp) == rows
    with torch.no_grad():
        next(pipe.unet.parameters()).view(-1)[0] += 1e-3
    fp2 = weights_fingerprint(pipe.unet)
    assert fp2 != fp and evaluate.cached_rows(tmp_path, "teacher", ec, [1], 1.0, "ddim", weights=fp2) is None


def test_kid_is_reproducible_and_leaves_the_global_rng_alone():
    """torchmetrics draws KID's subsets from the global RNG; fid_kid fixes them, so a score depends on the samples only."""
    real, fake = torch.randn(300, 8), torch.randn(300, 8) + 0.3
    torch.manual_seed(1)
    a = fid_kid(real, fake, kid_subset=100, kid_subsets=5)
    after = torch.rand(1)
    torch.manual_seed(2)
    b = fid_kid(real, fake, kid_subset=100, kid_subsets=5)
    assert a["kid"] == b["kid"] and a["kid_std"] == b["kid_std"]
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), after)  # the caller's stream continues as if KID drew nothing


def test_kid_buffer_warning_silenced_and_only_it():
    import warnings

    real, fake = torch.randn(50, 8, dtype=torch.float64), torch.randn(40, 8, dtype=torch.float64)
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fid_kid(real, fake)
        warnings.warn("Metric `Kernel Inception Distance` elsewhere", UserWarning)  # other warnings still pass
    messages = [str(w.message) for w in caught]
    assert not any("will save all extracted features" in m for m in messages)
    assert "Metric `Kernel Inception Distance` elsewhere" in messages
    assert warnings.filters == before  # the filter does not outlive the construction


def test_teacher_evaluation_sweeps_guidance(tmp_path):
    """eval.guidance_sweep adds rows at eval.guidance_steps; the best setting may be a guided one, the FID-vs-steps
    line keeps the steps sweep, a cached table answers only for the sweep it holds, an unconditional model has none."""
    import dataclasses
    import json

    from distill.config import EvalConfig
    from distill.diffusion.recipe import TeacherConfig
    from distill.eval import evaluate
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.teachers import build_noise_scheduler, build_unet2d

    tc = TeacherConfig(block_out_channels=[8, 8], norm_num_groups=4)
    torch.manual_seed(0)
    pipe = DistillPipeline(unet=build_unet2d(tc, 8, 1, 10).eval(), scheduler=build_noise_scheduler(tc))
    assert pipe.num_classes == 10
    ec = EvalConfig(num_samples=20, batch_size=10, steps=[1, 2], features="classifier:digits",
                    guidance_sweep=[1.0, 3.0], guidance_steps=2)  # (2, 1.0) is a row of the steps sweep already
    data = DataConfig(source="digits", resolution=8)
    rows = evaluate.evaluate_pipeline(pipe, ec, data, tmp_path / "eval", sweep_guidance=True)
    assert [(r["steps"], r["guidance_scale"]) for r in rows] == [(1, 1.0), (2, 1.0), (2, 3.0)]
    assert rows[2]["fid"] != rows[1]["fid"]  # guided samples differ
    assert (tmp_path / "eval" / "teacher-2steps-guidance3.png").is_file()
    assert json.loads((tmp_path / "eval" / "eval-teacher.json").read_text()) == rows
    assert evaluate.best_row(rows) is min(rows, key=lambda r: r["fid"])
    assert evaluate.setting_name(rows[2]) == "2 steps at guidance 3" and evaluate.setting_name(rows[0]) == "1 steps"
    assert evaluate.cached_rows(tmp_path, "teacher", ec, [1, 2], 1.0, "ddim", sweep_guidance=True) == rows
    assert evaluate.cached_rows(tmp_path, "teacher", ec, [1, 2], 1.0, "ddim") == rows[:2]
    none = dataclasses.replace(ec, guidance_sweep=[])  # the table's own guided rows follow, asked for or not
    assert evaluate.cached_rows(tmp_path, "teacher", none, [1, 2], 1.0, "ddim", sweep_guidance=True) == rows
    other = dataclasses.replace(ec, guidance_sweep=[1.5])  # a scale never measured: the table does not answer
    assert evaluate.cached_rows(tmp_path, "teacher", other, [1, 2], 1.0, "ddim", sweep_guidance=True) is None
    uncond = DistillPipeline(unet=build_unet2d(tc, 8, 1, None).eval(), scheduler=build_noise_scheduler(tc))
    rows_u = evaluate.evaluate_pipeline(uncond, ec, data, tmp_path / "u", sweep_guidance=True)
    assert [(r["steps"], r["guidance_scale"]) for r in rows_u] == [(1, 1.0), (2, 1.0)]


def test_sharded_evaluation_equals_one_process(tmp_path):
    """scripts/eval_sharded.py, two shards then --merge, scores the steps sweep and the guided rows exactly as
    evaluate_pipeline(sweep_guidance=True) does in one process."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from distill.config import load_recipe
    from distill.diffusion.recipe import TeacherConfig
    from distill.eval import evaluate
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.teachers import build_noise_scheduler, build_unet2d

    tc = TeacherConfig(block_out_channels=[8, 8], norm_num_groups=4)
    torch.manual_seed(0)
    DistillPipeline(unet=build_unet2d(tc, 8, 1, 10).eval(), scheduler=build_noise_scheduler(tc)).save_pretrained(
        tmp_path / "teacher")
    (tmp_path / "r.yaml").write_text(
        "task: teacher\ndata: {source: digits, resolution: 8}\neval: {num_samples: 30, batch_size: 10, steps: [1], "
        "scheduler: ddim, features: 'classifier:digits', guidance_sweep: [2], guidance_steps: 1}\n")
    script = [sys.executable, str(Path(__file__).resolve().parent.parent / "scripts" / "eval_sharded.py"),
              str(tmp_path / "teacher"), "--recipe", str(tmp_path / "r.yaml"), "--of", "2", "--work", str(tmp_path / "w")]
    for k in (1, 0):
        subprocess.run([*script, "--shard", str(k)], check=True, capture_output=True)
    subprocess.run([*script, "--merge", "--out", str(tmp_path / "sharded")], check=True, capture_output=True)
    sharded = json.loads((tmp_path / "sharded" / "eval-teacher.json").read_text())
    from distill.diffusion.teachers import load_teacher

    recipe = load_recipe(tmp_path / "r.yaml")
    one = evaluate.evaluate_pipeline(load_teacher(str(tmp_path / "teacher")), recipe.eval, recipe.data,
                                     tmp_path / "one", sweep_guidance=True)
    assert [(r["steps"], r["guidance_scale"]) for r in sharded] == [(1, 1.0), (1, 2.0)]
    for a, b in zip(sharded, one):
        assert a["fid"] == pytest.approx(b["fid"], rel=1e-5) and a["guidance_scale"] == b["guidance_scale"]
    assert (tmp_path / "sharded" / "teacher-1steps-guidance2.png").is_file()
