"""Reports that judge: report.md of a teacher run and of a distillation run opens with a verdict (the coverage
check's thresholds in words, the student against the teacher's best setting), the cost, and the data's class names
(stored in the exported pipelines, over the columns of grids, in `distill sample`)."""

import json

import numpy as np
import pytest
from PIL import Image

from distill.config import recipe_from_dict
from distill.eval.verdict import COVERAGE_MIN, DIVERSITY_MIN, cost_line, shortfalls, student_verdict

from .conftest import tiny_recipe_dict
from .test_distill import distill_recipe_dict

NAMES = ["0-zero", "1-one", "2-two", "3-three", "4-four", "5-five", "6-six", "7-seven", "8-eight", "9-nine"]
EVAL = {"num_samples": 40, "batch_size": 40, "steps": [1, 2], "guidance_sweep": [2.0], "guidance_steps": 2}


def row(fid, coverage=1.0, dist=9.0, real=10.0, steps=1, guidance=1.0):
    return {"fid": fid, "steps": steps, "guidance_scale": guidance, "class_coverage": coverage,
            "intra_class_dist": dist, "real_intra_class_dist": real}


def test_verdict_words_at_the_coverage_checks_thresholds():
    best = row(10.0, steps=25, guidance=2.0)
    ok = student_verdict(row(15.0), best, 10)
    assert "FAILED" not in ok and "1.50x the teacher's best (25 steps at guidance 2, FID 10.000)" in ok
    # one class of two, within-class distance a quarter of the real data's (the student)
    bad = student_verdict(row(30.0, coverage=0.5, dist=2.5), best, 2)
    assert bad.startswith("**Verdict: FAILED, mode collapse")
    assert "only 1 of 2 classes generated" in bad and "within-class diversity 0.25x" in bad
    assert "teacher fails" not in bad
    # just at the thresholds passes, just below fails: the monitor's own numbers
    assert shortfalls(row(1.0, coverage=COVERAGE_MIN, dist=DIVERSITY_MIN * 10)) == []
    assert len(shortfalls(row(1.0, coverage=COVERAGE_MIN - 0.01, dist=DIVERSITY_MIN * 10 - 0.01), 10)) == 2
    # the warning of training's last coverage check is named even when the evaluation passes
    assert "warned: only 6 of 10" in student_verdict(row(15.0), best, 10, "only 6 of 10 classes generated")
    assert cost_line(600, 90.0, 1800.0, "teacher/metrics.jsonl") == \
        "Training: 600 steps, wall time 90 s; the teacher trained 30.0 min (teacher/metrics.jsonl): " \
        "distillation/teacher time ratio 0.05."


@pytest.fixture(scope="module")
def named_digits(tmp_path_factory):
    """sklearn's digits as an image folder whose class folders carry names (12 images a class)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("named") / "digits"
    d = load_digits()
    for c, name in enumerate(NAMES):
        (root / name).mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == c][:12]):
            Image.fromarray((img * 255 / 16).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def named_teacher(tmp_path_factory, named_digits):
    from distill.diffusion.train import train_teacher

    r = tiny_recipe_dict(tmp_path_factory.mktemp("teacher"), max_steps=30, learning_rate=3e-3, checkpoint_every=30,
                         sample_every=30)
    r["data"] = {"source": str(named_digits), "resolution": 8, "channels": 1}
    r["eval"] = dict(EVAL)
    return train_teacher(recipe_from_dict(r))


def test_teacher_run_writes_a_report_with_class_names(named_teacher):
    md = (named_teacher / "report.md").read_text().splitlines()
    assert md[0] == "# Teacher report: tiny" and md[2].startswith("**Verdict:")
    rows = json.loads((named_teacher / "eval" / "eval-teacher.json").read_text())
    best = min(rows, key=lambda r: r["fid"])
    assert f"FID {best['fid']:.3f}" in md[2]
    assert md[4].startswith("Training: 30 steps, wall time ")
    assert "2 2-two" in md[6] and "9 9-nine" in md[6]
    assert json.loads((named_teacher / "model_index.json").read_text())["class_names"] == NAMES
    # grids carry a caption strip over the columns: 10 columns of 8 px x 8 + padding, 8 rows, + 14 px
    grid = Image.open(named_teacher / "samples" / "step-0000030.png")
    assert grid.size == (10 * 66 + 2, 8 * 66 + 2 + 14)
    assert np.asarray(grid.convert("L"))[:14].min() < 100  # text drawn in the strip


def test_collapsed_student_report_says_so_first(tmp_path, named_teacher, named_digits, capsys):
    """A deliberately collapsed run (learning rate 1 for 4 steps from a 30-step teacher): report.md's first lines say
    FAILED and why, against the teacher's best setting, with the cost and the class names."""
    from distill.cli import main as cli
    from distill.distillation.loop import run_distill

    r = distill_recipe_dict(tmp_path, str(named_teacher), distill={"coverage_classifier": "digits"},
                            max_steps=4, learning_rate=1.0, sample_every=2)
    r["data"] = {"source": str(named_digits), "channels": 1}
    r["eval"] = dict(EVAL)
    r["report"] = {"teacher_steps": [1, 2], "student_steps": [1, 2], "latency_batch": 4, "latency_repeats": 2}
    run_dir = run_distill(recipe_from_dict(r))
    md = (run_dir / "report.md").read_text().splitlines()
    assert md[2].startswith("**Verdict: FAILED, mode collapse: only ") and "classes generated" in md[2]
    rep = json.loads((run_dir / "report.json").read_text())
    best = rep["teacher_best"]
    assert f"the teacher's best ({best['steps']} steps" in md[2] and f"FID {best['fid']:.3f})" in md[2]
    assert rep["shortfalls"] and rep["class_names"] == NAMES and rep["training_steps"] == 4
    assert md[4].startswith("Training: 4 steps, wall time ") and "distillation/teacher time ratio" in md[4]
    assert str(named_teacher / "metrics.jsonl") in md[4]
    assert md[6].startswith("Classes (grid columns, left to right): 0 0-zero, 1 1-one")
    assert json.loads((run_dir / "model_index.json").read_text())["class_names"] == NAMES
    # `distill sample` names the columns, in the grid and on its line
    out = tmp_path / "s.png"
    assert cli(["sample", str(run_dir), "--steps", "1", "--classes", "3", "7", "--per-class", "2",
                "--out", str(out)]) == 0
    assert "(columns: 3-three, 7-seven)" in capsys.readouterr().out
    assert Image.open(out).size == (2 * 66 + 2, 2 * 66 + 2 + 14)


def test_names_that_restate_the_label_ids_are_not_shown(tmp_path):
    import torch

    from distill.viz import save_grid, telling_names

    assert telling_names(["0", "1", "2"]) is None and telling_names([0, 1]) is None and telling_names(None) is None
    assert telling_names(["0", "cat"]) == ["0", "cat"]
    x = torch.zeros(4, 1, 8, 8)
    assert Image.open(save_grid(x, tmp_path / "a.png", nrow=2, column_names=["0", "1"])).size == (22, 22)


def test_pipelines_without_class_names_load(tmp_path):
    from diffusers import DDIMScheduler, UNet2DModel

    from distill.diffusion.pipelines import DistillPipeline

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    DistillPipeline(unet=unet, scheduler=DDIMScheduler()).save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    index.pop("class_names")  # as pipelines exported before class names were stored
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    pipe = DistillPipeline.from_pretrained(tmp_path / "p")
    assert pipe.config.get("class_names") is None and pipe.class_name(1) == "1"
