"""Time before work: the projection's arithmetic (network evaluations of the end-of-run evaluation and latency
table), the warning that names the keys, the line in a real run, and evaluation bars counting network evaluations."""

import torch

from distill.config import load_recipe, recipe_from_dict
from distill.engine import projection
from distill.engine.projection import Work, end_of_run_work, projection_lines, teacher_settings
from distill.eval.evaluate import sweep_evaluations

from .conftest import tiny_recipe_dict


def test_teacher_evaluation_counts_steps_and_guidance():
    r = load_recipe("recipes/teacher-digits.yaml", ["eval.num_samples=2000", "eval.guidance_sweep=[1.5,2,3]",
                                                     "eval.steps=[1,2,4,8,25,50]", "eval.guidance_steps=25"])
    assert teacher_settings(r.eval, r.eval.steps)[-3:] == [(25, 1.5), (25, 2.0), (25, 3.0)]
    (w,) = end_of_run_work(r)
    # 2000 x (1+2+4+8+25+50) unguided + 2000 x 25 steps x 2 passes x 3 scales
    assert w.evaluations == 2000 * 90 + 2000 * 25 * 2 * 3 == 480_000 and "eval.num_samples" in w.keys
    # an unconditional model has nothing to guide: the sweep adds no row
    assert end_of_run_work(r, conditional=False)[0].evaluations == 2000 * 90
    # a guidance setting already among the steps sweep is scored once
    assert sweep_evaluations(10, teacher_settings(r.eval, [25], True)) == 10 * 25 * (1 + 2 + 2 + 2)


def test_distillation_counts_student_teacher_and_latency(tmp_path):
    over = ["eval.num_samples=2000", "report.student_steps=[1,2,4]", "report.latency_batch=64",
            "report.latency_repeats=5"]
    ev, lat = end_of_run_work(load_recipe("recipes/digits.yaml", over))
    # the shipped digits teacher's table already holds these rows: only the student is sampled
    assert ev.evaluations == 2000 * (1 + 2 + 4)
    assert lat.evaluations == 64 * (2 + 5) * (50 + 100 + 1 + 2 + 4)
    # a teacher without a table is sampled at every report.teacher_steps setting
    ev2, _ = end_of_run_work(load_recipe("recipes/digits.yaml", over + [f"distill.teacher={tmp_path}",
                                                                        "report.teacher_steps=[1,50]"]))
    assert ev2.evaluations == 2000 * 7 + 2000 * 51


def test_projection_line_and_warning_name_the_keys():
    work = [Work("evaluation", 480_000, ("eval.num_samples", "eval.steps")), Work("latency table", 70_000,
                                                                                   ("report.latency_repeats",))]
    line, warning = projection_lines(2.0, 100, work, per_eval=0.001)
    assert line == ("projected: training 3 min (100 steps at 2.00 s/step), evaluation 8 min (480k network "
                    "evaluations), latency table 70 s (70k network evaluations); total 12 min")
    assert warning is None
    line, warning = projection_lines(30.0, 3000, work, per_eval=0.03)  # the photo folder: 25 h + 4 h
    assert "training 25.0 h" in line and "evaluation 4.0 h" in line
    assert warning.startswith("warning: this run is projected to take 29.6 h (over 3 h); cut it with "
                              "train.max_steps, eval.num_samples, eval.steps, report.latency_repeats")
    line, _ = projection_lines(1.0, 10, work, per_eval=None)
    assert "evaluation 480k network evaluations (time not measured)" in line


def test_run_prints_the_projection_after_the_first_steps(tmp_path, capsys, monkeypatch):
    from distill.diffusion.train import train_teacher

    r = tiny_recipe_dict(tmp_path, max_steps=6)
    r["eval"] = {"num_samples": 20, "batch_size": 20, "steps": [1, 2]}
    monkeypatch.setattr(projection, "WARN_HOURS", 1e-9)  # any run is long: the warning line appears
    train_teacher(recipe_from_dict(r))
    out = capsys.readouterr()
    lines = [l for l in (out.out + out.err).splitlines() if l.startswith(("projected:", "warning: this run"))]
    assert len(lines) == 2, lines
    assert lines[0].startswith("projected: training ") and "(2 steps at " in lines[0]  # after 4 of 6 steps
    assert "evaluation " in lines[0] and "(60 network evaluations)" in lines[0]  # 20 x (1 + 2)
    assert "cut it with" in lines[1] and "train.max_steps" in lines[1] and "eval.num_samples" in lines[1]


def test_evaluation_progress_counts_network_evaluations():
    from diffusers import DDIMScheduler, UNet2DModel

    from distill.diffusion.pipelines import DistillPipeline
    from distill.eval.evaluate import generate

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       num_class_embeds=4)
    pipe = DistillPipeline(unet=unet, scheduler=DDIMScheduler())

    class Count:
        n = 0

        def update(self, k):
            self.n += k

    for g, want in [(1.0, 10 * 3), (2.0, 10 * 3 * 2)]:
        c = Count()
        generate(pipe, 10, 3, "ddim", g, batch=4, progress=c)
        assert c.n == want
    from distill.diffusion.guided import GuidanceUNet2DModel

    told_w = DistillPipeline(unet=GuidanceUNet2DModel.from_unet(unet), scheduler=DDIMScheduler())
    c = Count()
    generate(told_w, 10, 3, "ddim", 2.0, batch=4, progress=c)
    assert c.n == 10 * 3  # a w-conditioned student guides in one pass
    torch.manual_seed(0)
