"""The GAN beside the diffusion models: `distill bench latency --gan`, `distill bench compare` and
`distill eval GAN_FOLDER`, on a tiny teacher, a tiny distilled student and a tiny GAN, each trained a
few steps by its own task."""

import json
import math

import pytest

from distill.bench import BenchConfig, run_benchmark
from distill.bench.compare import CompareConfig, cached, plan, resolve_all
from distill.bench.compare_report import COLUMNS
from distill.cli import main as cli
from distill.config import EvalConfig, recipe_from_dict
from distill.diffusion.teachers import load_teacher
from distill.diffusion.train import train_teacher
from distill.errors import DistillError
from distill.distillation.loop import train_distill
from distill.engine.run_dir import read_metrics, wall_seconds
from distill.eval.evaluate import evaluate_pipeline
from distill.gan.architectures import load_generator
from distill.gan.train import train_gan

from .conftest import tiny_recipe_dict
from .test_gan_train import tiny_gan

SAMPLES = ["--data", "digits", "--features", "classifier:digits", "--num-samples", "20", "--seed", "3"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders of a teacher (3 steps, with an eval-teacher.json at 1 and 2 steps), a student
    distilled from it (2 steps) and a GAN (2 steps)."""
    root = tmp_path_factory.mktemp("gan_vs_diffusion")
    teacher = train_teacher(recipe_from_dict(tiny_recipe_dict(root / "t", max_steps=3, checkpoint_every=3)))
    ec = EvalConfig(num_samples=20, batch_size=20, features="classifier:digits", seed=3)
    from distill.config import DataConfig

    evaluate_pipeline(load_teacher(str(teacher)), ec, DataConfig(source="digits"), teacher / "eval",
                      tag="teacher", scheduler="ddim", steps=[1, 2])
    r = tiny_recipe_dict(root / "s", max_steps=2, checkpoint_every=2, learning_rate=1e-4, lr_scheduler="constant",
                         lr_warmup_steps=0)
    del r["teacher"], r["data"]["resolution"]
    r.update(task="distill", distill={"teacher": str(teacher), "coverage_classifier": None},
             discriminator={"head_channels": 8})
    student = train_distill(recipe_from_dict(r))
    g = tiny_gan(root / "g", max_steps=2, checkpoint_every=2, sample_every=1000)
    gan = train_gan(recipe_from_dict(g))
    return {"teacher": teacher, "student": student, "gan": gan}


def test_latency_bench_times_the_gan_beside_teacher_and_student(runs, tmp_path):
    out = tmp_path / "bench"
    rc = cli(["bench", "latency", "--teacher", str(runs["teacher"]), "--student",
              str(runs["student"]), "--gan", str(runs["gan"]), "--batch-sizes", "1", "3",
              "--teacher-steps", "2", "--student-steps", "1", "--warmup", "1", "--repeats", "3",
              "--profile-repeats", "1", "--out", str(out), "--quiet", "--no-plots"])
    assert rc == 0
    data = json.loads((out / "latency.json").read_text())
    gans = [r for r in data["rows"] if r["kind"] == "gan"]
    assert [(r["model"], r["batch"], r["nfe"]) for r in gans] == [("gan", 1, 1), ("gan", 3, 1)]
    G = load_generator(runs["gan"])
    for r in gans:
        assert "error" not in r and 0 < r["median_s"] <= r["p95_s"] < math.inf
        assert r["images_per_s"] == pytest.approx(r["batch"] / r["median_s"])
        assert r["params"] == sum(p.numel() for p in G.parameters()) and r["generator_s"] > 0
    teacher = next(r for r in data["rows"] if r["kind"] == "teacher")
    assert teacher["params"] == sum(p.numel() for p in load_teacher(str(runs["teacher"])).unet.parameters())
    # the student's fewest steps against the GAN, timed in alternation at each batch
    assert [(p["batch"], p["gan"], p["student_steps"]) for p in data["paired_gan"]] == [(1, "gan", 1), (3, "gan", 1)]
    assert all(p["student_over_gan"] > 0 and p["n"] == 3 for p in data["paired_gan"])
    md = (out / "latency.md").read_text()
    assert "| gan | 1 |" in md and "student 1 step(s) / gan" in md and "| params |" in md


def test_gan_call_is_one_forward_to_unit_range(runs):
    cfg = BenchConfig(gans=[str(runs["gan"])], batch_sizes=[4], warmup=1, repeats=1, profile_repeats=1)
    res = run_benchmark(cfg, progress=False)
    (row,) = res.rows
    assert row["denoiser_calls_seen"] == 1  # the instrumented call ran the generator's forward once
    from distill.bench.models import MODELS

    prep = MODELS["gan"].prepare(MODELS["gan"].load(str(runs["gan"]), cfg), 1, 1.0, 4, cfg)
    x = prep.call()
    assert x.shape == (4, 1, 8, 8) and x.min() >= 0 and x.max() <= 1


def test_compare_writes_json_markdown_plot(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = cli(["bench", "compare", "--teacher", str(runs["teacher"]), "--student", str(runs["student"]),
              "--gan", f"g1={runs['gan']}", "--gan", f"g2={runs['gan']}", *SAMPLES, "--eval-batch-size", "20",
              "--student-steps", "1", "2", "--truncation", "0.5", "--batch", "2", "--warmup", "1", "--repeats", "2", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "compare.json").read_text())
    rows = {r["label"]: r for r in res["rows"]}
    t_eval = json.loads((runs["teacher"] / "eval" / "eval-teacher.json").read_text())
    best = min(t_eval, key=lambda r: r["fid"])
    assert list(rows) == ["teacher 50 steps", "teacher 50 steps w=2", f"teacher {best['steps']} step"
                          + ("s" if best["steps"] > 1 else "") + " (best)", "student 1 step", "student 2 steps",
                          "GAN g1 psi=1", "GAN g1 psi=0.5", "GAN g2 psi=1", "GAN g2 psi=0.5"]
    b = rows[next(k for k in rows if k.endswith("(best)"))]
    assert b["fid"] == best["fid"] and b["quality_source"].endswith("eval-teacher.json")  # reused, not re-sampled
    for r in res["rows"]:
        assert math.isfinite(r["fid"]) and r["intra_class_dist"] > 0 and r["num_samples"] == 20, r["label"]
        assert 0 < r["latency_p50_s"] <= r["latency_p95_s"] and r["images_per_s"] > 0 and r["params"] > 0, r["label"]
        assert r["latency_error"] is None and r["batch"] == 2
    assert rows["teacher 50 steps w=2"]["nfe"] == 100 and rows["GAN g1 psi=1"]["nfe"] == 1
    assert rows["GAN g1 psi=1"]["latency_p50_s"] == rows["GAN g1 psi=0.5"]["latency_p50_s"]
    assert rows["GAN g1 psi=1"]["fid"] == rows["GAN g2 psi=1"]["fid"]  # one generator under two names: same samples
    assert rows["teacher 50 steps"]["quality_source"] == "evaluated"
    # training wall time from each run's metrics.jsonl
    for kind, label in [("teacher", "teacher 50 steps"), ("student", "student 1 step"), ("gan", "GAN g2 psi=1")]:
        assert rows[label]["train_wall_s"] == pytest.approx(wall_seconds(read_metrics(runs[kind] / "metrics.jsonl")))
    assert {p["gan"] for p in res["paired_gan"]} == {"g1", "g2"} and res["paired_gan"][0]["student_over_gan"] > 0
    md = (out / "compare.md").read_text()
    header = "| " + " | ".join(h for h, _ in COLUMNS) + " |"
    assert header in md and sum(line.startswith("| teacher") or line.startswith("| student")
                                or line.startswith("| GAN") for line in md.splitlines()) == 9
    assert (out / "compare-fid-vs-latency.png").stat().st_size > 1000
    assert header in capsys.readouterr().out
    # what was evaluated here is found again by the cache: a second run re-samples nothing
    ec = EvalConfig(num_samples=20, features="classifier:digits", seed=3)
    again = cached([out / "eval" / "eval-student.json"], ec, "steps", [1, 2], scheduler="pipeline", guidance_scale=1.0)
    assert {s: r["fid"] for s, r in again.items()} == {1: rows["student 1 step"]["fid"], 2: rows["student 2 steps"]["fid"]}


def test_compare_times_the_guided_row_without_scoring_it(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = cli(["bench", "compare", "--teacher", str(runs["teacher"]), "--student", str(runs["student"]),
              "--gan", str(runs["gan"]), *SAMPLES, "--eval-batch-size", "20", "--student-steps", "1",
              "--batch", "2", "--warmup", "1", "--repeats", "2", "--no-pairs", "--no-guided-quality", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "compare.json").read_text())
    rows = {r["label"]: r for r in res["rows"]}
    guided = rows["teacher 50 steps w=2"]
    assert guided["fid"] is None and guided["nfe"] == 100 and guided["latency_p50_s"] > 0
    assert math.isfinite(rows["teacher 50 steps"]["fid"]) and math.isfinite(rows["student 1 step"]["fid"])
    assert not (out / "eval" / "eval-teacher-w2.json").exists()  # nothing sampled for it
    assert any("timed, not scored" in n for n in res["notes"])


def test_compare_plan_without_a_teacher_eval(runs, tmp_path):
    cfg = CompareConfig(teacher=str(runs["student"]), student=str(runs["student"]),
                        gans=[str(runs["gan"])], teacher_best_steps=None, out=str(tmp_path))
    rows, notes = plan(cfg, resolve_all(cfg), conditional=True)
    gan = f"GAN {runs['gan'].name}"  # a GAN's name defaults to its folder's
    assert [r["label"] for r in rows] == ["teacher 50 steps", "teacher 50 steps w=2", "student 1 step",
                                          "student 2 steps", "student 4 steps", f"{gan} psi=1"]
    assert any("no best-steps row" in n for n in notes)
    cfg.teacher_best_steps, cfg.truncation = 50, 0.7
    rows, _ = plan(cfg, resolve_all(cfg), conditional=False)  # unconditional: no guided row; 50 steps is the best
    assert [r["label"] for r in rows][:1] == ["teacher 50 steps (best)"] and rows[-1]["label"] == f"{gan} psi=0.7"
    with pytest.raises(DistillError, match="given twice"):
        resolve_all(CompareConfig(teacher=cfg.teacher, student=cfg.student, gans=[f"a={runs['gan']}", f"a={runs['gan']}"]))


@pytest.mark.parametrize("argv, msg", [
    (["bench", "latency", "--gan", "{teacher}"], "not a GAN generator folder"),
    (["bench", "latency", "--gan", "{tmp}/none"], "no such GAN generator folder"),
    (["bench", "compare", "--teacher", "{teacher}", "--student", "{student}", "--gan", "{teacher}"],
     "--gan"),
    (["bench", "compare", "--teacher", "{gan}", "--student", "{student}", "--gan", "{gan}"], "--teacher"),
    (["eval", "{gan}", "--steps", "4"], "--steps: for diffusion pipelines"),
    (["eval", "{gan}", "--guidance-sweep", "2"], "--guidance-sweep: for diffusion pipelines"),
    (["eval", "{teacher}", "--truncation", "0.7"], "--truncation: for GAN generator folders"),
])
def test_bad_input_is_one_line(runs, tmp_path, capsys, argv, msg):
    argv = [a.format(tmp=tmp_path, **runs) for a in argv]
    rc = cli([*argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_eval_scores_a_gan_folder(runs, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = cli(["eval", str(runs["gan"]), *SAMPLES, "--batch-size", "20", "--truncation", "1", "0.5",
              "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "eval-gan.json").read_text())
    assert [r["truncation"] for r in rows] == [1.0, 0.5]
    assert all(r["num_samples"] == 20 and r["seed"] == 3 and r["fid"] > 0 and r["intra_class_dist"] > 0 for r in rows)
    assert "psi=0.5 fid=" in capsys.readouterr().out


def test_compare_refuses_more_steps_than_the_student_has(runs, tmp_path, capsys):
    from distill.diffusion.pipelines import DistillPipeline
    from distill.diffusion.sampling import student_scheduler

    t = load_teacher(str(runs["teacher"]))
    DistillPipeline(unet=t.unet, scheduler=student_scheduler(t.scheduler, [999])).save_pretrained(str(tmp_path / "s1"))
    capsys.readouterr()  # loading the teacher above drew a progress bar
    rc = cli(["bench", "compare", "--teacher", str(runs["teacher"]), "--student", str(tmp_path / "s1"), "--gan",
              str(runs["gan"]), *SAMPLES, "--student-steps", "1", "4", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--student-steps 4" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
