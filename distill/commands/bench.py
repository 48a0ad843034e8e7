"""`distill bench latency --teacher PATH --student PATH ...`: latency of the teacher at many step
counts (with and without guidance), the distilled student and GAN generators, in one run."""

from __future__ import annotations

from .arguments import check_output_path, non_negative_float, non_negative_int, positive_int

HELP = "benchmarks: `distill bench latency` (teacher vs student vs generators)"


def add_latency_arguments(p):
    from ..bench.latency import DTYPES, BenchConfig

    d = BenchConfig()
    p.add_argument("--teacher", default=None, help="teacher pipeline folder")
    p.add_argument("--student", default=None, help="student pipeline folder")
    p.add_argument("--generator", action="append", default=[], metavar="[NAME=]PATH",
                   help="a generator to time (repeatable): TorchScript file, or "
                        "py:module:factory returning an nn.Module")
    p.add_argument("--generator-input", type=positive_int, nargs=3, default=None, metavar=("C", "H", "W"),
                   help="generator input shape (default: its `input_shape` attribute, else 3 256 256)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=d.batch_sizes)
    p.add_argument("--teacher-steps", type=positive_int, nargs="+", default=d.teacher_steps)
    p.add_argument("--student-steps", type=positive_int, nargs="+", default=d.student_steps)
    p.add_argument("--guidance", type=non_negative_float, default=d.guidance, help="teacher guidance scale timed besides 1 (off)")
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=d.dtype, choices=list(DTYPES))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (compile time reported apart)")
    p.add_argument("--warmup", type=positive_int, default=d.warmup)
    p.add_argument("--repeats", type=positive_int, default=d.repeats)
    p.add_argument("--profile-repeats", type=non_negative_int, default=d.profile_repeats,
                   help="instrumented calls for the component split")
    p.add_argument("--budget", type=non_negative_float, default=d.budget_s,
                   help="seconds of timed calls per configuration before stopping early (>= 3 calls; 0 = no limit)")
    p.add_argument("--threads", type=positive_int, default=d.threads, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-pair-headline", action="store_true",
                   help="skip timing the teacher-over-student headline ratio in alternation")
    p.add_argument("--fid-json", nargs="+", default=[], metavar="[MODEL=]PATH",
                   help="eval-*.json files (distill eval) for the quality-vs-latency plot")
    p.add_argument("--out", default="runs/bench", help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(p):
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    lat = sub.add_parser("latency", help="latency of teacher / student / generators",
                         description=__doc__)
    add_latency_arguments(lat)
    p.set_defaults(_bench=None)
    lat.set_defaults(_bench=latency)


def config_from_args(args):
    from ..bench.latency import BenchConfig

    return BenchConfig(teacher=args.teacher, student=args.student, generators=list(args.generator),
                       generator_input=args.generator_input, batch_sizes=args.batch_sizes,
                       teacher_steps=args.teacher_steps, student_steps=args.student_steps, guidance=args.guidance,
                       device=args.device, dtype=args.dtype, channels_last=args.channels_last, compile=args.compile,
                       warmup=args.warmup, repeats=args.repeats, profile_repeats=args.profile_repeats,
                       budget_s=args.budget, threads=args.threads, seed=args.seed,
                       pair_headline=not args.no_pair_headline)


def latency(args) -> int:
    from ..bench import run_benchmark, write_report
    from ..bench.report import load_fid, markdown_table

    cfg = config_from_args(args)
    cfg.validate()
    check_output_path(args.out, "--out", "dir")  # before any timing
    fid_rows = load_fid(args.fid_json)  # bad files fail before any timing
    result = run_benchmark(cfg, progress=not args.quiet)
    files = write_report(result, args.out, fid_rows, plots=not args.no_plots)
    print(markdown_table(result.rows))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def main(args) -> int:
    if getattr(args, "_bench", None) is None:
        from ..errors import DistillError

        raise DistillError("choose a benchmark: `distill bench latency --help`")
    return args._bench(args)
