"""`distill bench latency`: statistics on a fake clock, the harness on tiny pipelines, the output
files, the derived checks and bad input."""

import csv
import json
import math

import pytest
import torch

from distill.bench import MODELS, BenchConfig, derived_checks, run_benchmark, summarize, write_report
from distill.bench.latency import load_generator, prepare_pipeline
from distill.bench.report import CSV_COLUMNS, TABLE, attach_fid, pareto_front
from distill.bench.timing import CudaEventTimer, Recorder, WallTimer, instrument, make_sync, make_timer, run_paired, run_timed
from distill.cli import main as cli
from distill.diffusion.recipe import TeacherConfig
from distill.errors import DistillError
from distill.diffusion.pipelines import DistillPipeline
from distill.diffusion.sampling import make_scheduler
from distill.diffusion.teachers import build_noise_scheduler, build_unet2d
from distill.diffusion.sampling import student_scheduler


class TinyGenerator(torch.nn.Module):
    """A stand-in for a pix2pix / CycleGAN generator: (B, 1, 8, 8) -> (B, 1, 8, 8)."""

    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(4, 1, 3, padding=1), torch.nn.Tanh())

    def forward(self, x):
        return self.net(x)


def tiny_generator():
    return TinyGenerator()


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    """A tiny class-conditional teacher (DDIM) and 'student' (same net, LCMScheduler) on 8x8 digits."""
    root = tmp_path_factory.mktemp("pipes")
    torch.manual_seed(0)
    cfg = TeacherConfig(block_out_channels=[8, 16], norm_num_groups=4)
    ns = build_noise_scheduler(cfg)
    unet = build_unet2d(cfg, 8, 1, 10)
    DistillPipeline(unet=unet, scheduler=make_scheduler("ddim", ns.config)).save_pretrained(str(root / "teacher"))
    DistillPipeline(unet=unet, scheduler=student_scheduler(ns, [999, 749, 499, 249])).save_pretrained(str(root / "student"))
    return root / "teacher", root / "student"


# ---------------------------------------------------------------- statistics on a fake clock


class FakeClock:
    """now() is the clock; work(d) is a call that takes exactly d seconds."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def work(self, d):
        self.t += d


def test_stats_on_fake_clock():
    clock = FakeClock()
    timer = WallTimer(clock=clock)
    durations = iter([9.0, 8.0] + [3.0, 7.0, 1.0, 10.0, 5.0, 2.0, 8.0, 4.0, 9.0, 6.0])  # 2 warm-up, then 1..10
    m = run_timed(lambda: clock.work(next(durations)), timer, warmup=2, repeats=10)
    assert m.warmup_s == [9.0, 8.0]
    s = summarize(m.samples_s, batch=4)
    assert s.n == 10 and s.min_s == 1.0 and s.max_s == 10.0
    assert s.median_s == pytest.approx(5.5) and s.mean_s == pytest.approx(5.5)
    assert s.p90_s == pytest.approx(9.1) and s.p95_s == pytest.approx(9.55) and s.p99_s == pytest.approx(9.91)
    assert s.std_s == pytest.approx(math.sqrt(82.5 / 9))  # sample std of 1..10
    assert s.iqr_s == pytest.approx(7.75 - 3.25)
    assert s.images_per_s == pytest.approx(4 / 5.5) and s.ms_per_image == pytest.approx(5500 / 4)
    one = summarize([0.25])
    assert one.std_s == 0 and one.p99_s == 0.25


def test_budget_stops_repeats_but_keeps_three():
    clock = FakeClock()
    m = run_timed(lambda: clock.work(1.0), WallTimer(clock=clock), warmup=1, repeats=50, budget_s=0.5)
    assert len(m.samples_s) == 3
    m = run_timed(lambda: clock.work(1.0), WallTimer(clock=clock), warmup=1, repeats=50, budget_s=4.5)
    assert len(m.samples_s) == 5


def test_paired_runs_alternate():
    clock = FakeClock()
    order = []
    a = lambda: (order.append("a"), clock.work(2.0))  # noqa: E731
    b = lambda: (order.append("b"), clock.work(1.0))  # noqa: E731
    ma, mb = run_paired(a, b, WallTimer(clock=clock), warmup=1, repeats=3)
    assert order == ["a", "b"] * 4 and ma.samples_s == [2.0] * 3 and mb.samples_s == [1.0] * 3


def test_recorder_counts_components_once_and_restores():
    clock = FakeClock()

    class Obj:
        def inner(self):
            clock.work(1.0)

        def outer(self):
            clock.work(2.0)
            self.inner()

    o = Obj()
    rec = Recorder(clock=clock)
    with instrument(rec, [("a", o, "outer"), ("b", o, "inner")]):
        o.outer()
        o.inner()
    assert rec.seconds == {"a": 3.0, "b": 1.0} and rec.calls == {"a": 1, "b": 1}  # nested inner counted by outer
    assert "outer" not in o.__dict__ and "inner" not in o.__dict__


def test_cpu_never_touches_cuda(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("CUDA touched on a CPU run")

    monkeypatch.setattr(torch.cuda, "synchronize", boom)
    monkeypatch.setattr(torch.cuda, "Event", boom)
    assert isinstance(make_timer("cpu"), WallTimer)
    make_timer("cpu").measure(lambda: None)
    make_sync("cpu")()
    assert isinstance(make_timer("cuda"), CudaEventTimer)  # constructing it touches nothing
    assert make_timer("cuda", clock=FakeClock()).sync is not None


# ---------------------------------------------------------------- the harness on tiny pipelines


def test_harness_on_tiny_pipelines(pipes):
    teacher, student = pipes
    cfg = BenchConfig(teacher=str(teacher), student=str(student), generators=["py:tests.test_bench:tiny_generator"],
                      batch_sizes=[2], teacher_steps=[3, 1], student_steps=[1, 2], warmup=1, repeats=2,
                      profile_repeats=1)
    res = run_benchmark(cfg, progress=False)
    rows = {(r["model"], r["steps"], r["guidance"]): r for r in res.rows}
    assert set(rows) == {("teacher", 3, 1.0), ("teacher", 1, 1.0), ("teacher", 3, 2.0), ("teacher", 1, 2.0),
                         ("student", 1, 1.0), ("student", 2, 1.0), ("generator", 1, 1.0)}
    assert not [r for r in res.rows if "error" in r]
    g = rows[("teacher", 3, 2.0)]
    assert g["nfe"] == 6 and g["denoiser_calls"] == 3 and g["bare_forward_batch"] == 4 and g["scheduler"] == "DDIMScheduler"
    assert g["denoiser_calls_seen"] == 3  # the instrumented pass saw one forward per step
    s = rows[("student", 1, 1.0)]
    assert s["scheduler"] == "LCMScheduler" and s["nfe"] == 1 and s["bare_forward_batch"] == 2
    for r in res.rows:
        assert 0 < r["median_s"] <= r["p90_s"] <= r["p99_s"] <= r["max_s"]
        assert r["network_s"] > 0 and r["overhead_s"] == pytest.approx(r["profiled_total_s"] - r["network_s"])
        assert r["mem_rss_peak_mb"] > 0
    assert rows[("generator", 1, 1.0)]["generator_s"] > 0
    (p,) = res.paired  # the headline timed in alternation: teacher 3 steps with guidance over student 1 step
    assert (p["batch"], p["teacher_steps"], p["teacher_guidance"], p["student_steps"], p["nfe_ratio"]) == (2, 3, 2.0, 1, 6)
    assert p["latency_ratio"] > 0 and p["efficiency"] == pytest.approx(p["latency_ratio"] / 6) and p["n"] >= 2
    for k in ["device_name", "cpu_model", "torch", "diffusers", "distill", "git_commit", "torch_threads"]:
        assert k in res.env
    # models are one registry entry each
    assert set(MODELS) == {"teacher", "student", "generator", "gan"}


def test_pipeline_call_is_what_users_get(pipes):
    teacher, _ = pipes
    cfg = BenchConfig(teacher=str(teacher))
    pipe = MODELS["teacher"].load(str(teacher), cfg)
    prep = prepare_pipeline(pipe, 2, 2.0, 3, cfg)
    out = prep.call()
    assert out.shape == (3, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
    assert prep.bare().shape == (6, 1, 8, 8)  # cond + uncond batch


def test_cli_writes_json_csv_markdown_plots(pipes, tmp_path, capsys):
    teacher, student = pipes
    fid = tmp_path / "eval-student.json"
    fid.write_text(json.dumps([{"model": "student", "steps": 1, "guidance_scale": 1.0, "fid": 12.0},
                               {"model": "student", "steps": 2, "guidance_scale": 1.0, "fid": 9.0}]))
    fid_t = tmp_path / "eval-teacher.json"
    fid_t.write_text(json.dumps([{"model": "teacher", "steps": 2, "guidance_scale": 2.0, "fid": 5.0}]))
    out = tmp_path / "bench"
    rc = cli(["bench", "latency", "--teacher", str(teacher), "--student", str(student), "--batch-sizes", "1", "2",
              "--teacher-steps", "2", "--student-steps", "1", "2", "--warmup", "1", "--repeats", "2",
              "--profile-repeats", "1", "--fid-json", str(fid), str(fid_t), "--out", str(out), "--quiet"])
    assert rc == 0
    data = json.loads((out / "latency.json").read_text())
    assert set(data) == {"config", "env", "rows", "paired", "paired_gan", "checks", "fid"}
    assert len(data["rows"]) == 2 * (2 + 2)
    assert {r["fid"] for r in data["rows"] if "fid" in r} == {12.0, 9.0, 5.0}
    checks = data["checks"]
    assert {h["batch"] for h in checks["headline"]} == {1, 2}
    h = checks["headline"][0]
    assert h["teacher_nfe"] == 4 and h["nfe_ratio"] == 4 and h["efficiency"] == pytest.approx(h["latency_ratio"] / 4)
    assert len(checks["student_overhead"]) == 2
    with open(out / "latency.csv") as f:
        reader = csv.reader(f)
        assert next(reader) == CSV_COLUMNS
        assert len(list(reader)) == 8
    md = (out / "latency.md").read_text()
    assert "| " + " | ".join(h for h, _ in TABLE) + " |" in md and "## Derived checks" in md and "efficiency" in md
    for png in ["latency-vs-steps.png", "latency-pareto.png"]:
        assert (out / png).stat().st_size > 1000, png
    assert "| teacher | 2 |" in capsys.readouterr().out


# ---------------------------------------------------------------- derived checks, FID, Pareto


def test_derived_checks_on_synthetic_rows():
    rows = [{"model": "teacher", "kind": "teacher", "steps": 50, "guidance": 2.0, "nfe": 100, "batch": 64, "median_s": 0.95},
            {"model": "teacher", "kind": "teacher", "steps": 50, "guidance": 1.0, "nfe": 50, "batch": 64, "median_s": 0.5},
            {"model": "student", "kind": "student", "steps": 1, "guidance": 1.0, "nfe": 1, "batch": 64, "median_s": 0.01,
             "expected_network_s": 0.0095, "overhead_vs_bare_frac": 0.01 / 0.0095 - 1},
            {"model": "student", "kind": "student", "steps": 4, "guidance": 1.0, "nfe": 4, "batch": 64, "error": "x"}]
    c = derived_checks(rows)
    (h,) = c["headline"]
    assert h["latency_ratio"] == pytest.approx(95) and h["nfe_ratio"] == 100 and h["efficiency"] == pytest.approx(0.95)
    assert h["pass"] is True
    (o,) = c["student_overhead"]
    assert o["pass"] is True and o["overhead_vs_bare_frac"] == pytest.approx(0.0526, abs=1e-3)
    assert len(c["teacher_vs_student"]) == 2
    # a ratio timed in alternation replaces the ratio of two rows as the headline
    alt = {"batch": 64, "teacher_steps": 50, "teacher_guidance": 2.0, "teacher_nfe": 100, "student_steps": 1,
           "student_nfe": 1, "latency_ratio": 80.0, "nfe_ratio": 100, "efficiency": 0.8, "n": 3, "paired": True}
    (h,) = derived_checks(rows, [alt])["headline"]
    assert h["paired"] and h["efficiency"] == 0.8 and h["pass"] is False


def test_fid_attach_and_pareto_front():
    rows = [{"model": "student", "steps": 1, "guidance": 1.0}, {"model": "teacher", "steps": 1, "guidance": 2.0}]
    n = attach_fid(rows, [{"model": "student", "steps": 1, "guidance": 1.0, "fid": 3.0},
                          {"model": "teacher", "steps": 1, "guidance": 1.0, "fid": 9.0}])  # guidance differs: no match
    assert n == 1 and rows[0]["fid"] == 3.0 and "fid" not in rows[1]
    assert pareto_front([(1, 10), (2, 12), (3, 5), (4, 5), (5, 1)]) == [(1, 10), (3, 5), (5, 1)]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, msg", [
    (["--teacher", "{tmp}/missing"], "no such pipeline folder"),
    ([], "nothing to time"),
    (["--teacher", "{teacher}", "--device", "cuda"], "cuda"),
    (["--teacher", "{teacher}", "--batch-sizes", "0"], "--batch-sizes"),
    (["--teacher", "{teacher}", "--fid-json", "{tmp}/nope.json"], "no such file"),
    (["--generator", "{tmp}/missing.pt"], "no such generator file"),
])
def test_bad_input_is_one_line_exit_2(pipes, tmp_path, capsys, argv, msg):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    argv = [a.format(tmp=tmp_path, teacher=pipes[0]) for a in argv]
    rc = cli(["bench", "latency", *argv, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_generator_loader_rejects_non_module(tmp_path):
    p = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1)}, p)
    with pytest.raises(DistillError, match="not a TorchScript module"):  # never unpickled
        load_generator(str(p), BenchConfig())
    scripted = tmp_path / "g.ts"
    torch.jit.script(TinyGenerator()).save(str(scripted))
    g = load_generator(f"pix=jit:{scripted}".split("=", 1)[1], BenchConfig())
    assert g.input_shape in ((1, 8, 8), (3, 256, 256))


def test_paired_overhead_cancels_drift_within_pairs():
    from distill.bench.latency import paired_overhead

    # load doubles halfway through: each pair stays 5% apart, while the medians of the two lists
    # (taken over different halves' mixes) need not be
    calls = [0.0105, 0.0105, 0.021, 0.021, 0.021]
    bare = [0.010, 0.010, 0.020, 0.020, 0.020]
    assert paired_overhead(calls, bare, denoiser_calls=1) == pytest.approx(0.05)
    assert paired_overhead([0.025], [0.010], denoiser_calls=2, fixed_s=0.005) == pytest.approx(0.0)
    assert paired_overhead([], [], denoiser_calls=1) is None


def test_wall_ratio_table_has_one_row_per_result(tmp_path, monkeypatch):
    """benchmarks/distill_wall_ratio.py's markdown table: a row per result JSON, the machine where recorded."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "distill_wall_ratio", Path(__file__).resolve().parent.parent / "benchmarks" / "distill_wall_ratio.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path)
    base = {"threads": 2, "teacher_s_per_step": [0.5, 0.6], "distill_s_per_step": [0.9, 1.0],
            "teacher_projected_min": 40.0, "distill_projected_min": 18.0, "ratio": 0.45,
            "distill_recipe": "recipes/mnist_1step.yaml", "distill_overrides": []}
    (tmp_path / "distill_a_wall_ratio.json").write_text(json.dumps({"machine": mod.machine(), **base}))
    (tmp_path / "distill_b_wall_ratio.json").write_text(json.dumps({**base, "distill_overrides": ["train.seed=1"]}))
    rows = [line for line in mod.write_table().read_text().splitlines() if line.startswith("| distill_")]
    assert len(rows) == 2 and all("**0.45x**" in r and "0.50-0.60" in r for r in rows)
    assert "cores" in rows[0] and "not recorded" in rows[1] and "(train.seed=1)" in rows[1]
