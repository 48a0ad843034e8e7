"""`distill bench latency --teacher PATH --student PATH --gan PATH ...`: latency of the teacher at many
step counts (with and without guidance), the distilled student, GANs and translator generators, in one
run. `distill bench compare`: teacher, student and GAN side by side (quality, latency, size, training
time; docs/bench.md)."""

from __future__ import annotations

from .arguments import check_output_path, non_negative_float, non_negative_int, positive_int

HELP = "benchmarks: `distill bench latency` (teacher vs student vs GAN), `distill bench compare`"


def add_latency_arguments(p):
    from ..bench.latency import DTYPES, BenchConfig

    d = BenchConfig()
    p.add_argument("--teacher", default=None, help="teacher pipeline folder (or shipped:<name>)")
    p.add_argument("--student", default=None, help="student pipeline folder")
    p.add_argument("--gan", action="append", default=[], metavar="[NAME=]PATH",
                   help="a GAN generator folder exported by `task: gan` (repeatable): one forward from "
                        "(z, class labels)")
    p.add_argument("--generator", action="append", default=[], metavar="[NAME=]PATH",
                   help="a translator generator to time (repeatable): TorchScript file, or "
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
                   help="skip the ratios timed in alternation (teacher over student, student over GAN)")
    p.add_argument("--fid-json", nargs="+", default=[], metavar="[MODEL=]PATH",
                   help="eval-*.json files (distill eval) for the quality-vs-latency plot")
    p.add_argument("--out", default="runs/bench", help="output folder")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_compare_arguments(p):
    from ..bench.compare import CompareConfig

    d = CompareConfig(teacher="", student="", gans=[])
    p.add_argument("--teacher", required=True, help="teacher pipeline folder, its run folder, or shipped:<name>")
    p.add_argument("--student", required=True, help="distilled student pipeline folder or its run folder")
    p.add_argument("--gan", required=True, action="append", metavar="[NAME=]PATH",
                   help="GAN generator folder (task: gan; a run folder is one), repeatable: one row pair per GAN; "
                        "NAME defaults to the folder's name")
    p.add_argument("--data", default=d.data, help="reference data source (digits, .npz, image folder, Hub name)")
    p.add_argument("--split", default=d.split, help="reference split")
    p.add_argument("--features", default=d.features, help="classifier:<name|path> | inception")
    p.add_argument("--num-samples", type=positive_int, default=d.num_samples,
                   help="samples per row evaluated here (cached rows must match it)")
    p.add_argument("--eval-batch-size", type=positive_int, default=d.eval_batch_size)
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="latents and labels of the scored samples")
    p.add_argument("--guidance", type=non_negative_float, default=d.guidance,
                   help="the teacher's guided 50-step row (besides w = 1)")
    p.add_argument("--teacher-best-steps", type=positive_int, default=None,
                   help="the teacher's best step count (default: the best row of its eval-teacher.json)")
    p.add_argument("--student-steps", type=positive_int, nargs="+", default=d.student_steps)
    p.add_argument("--truncation", type=non_negative_float, default=None,
                   help="the GANs' best truncation psi, scored besides 1 (default: the best row of each GAN's "
                        "eval-gan.json)")
    p.add_argument("--batch", type=positive_int, default=d.batch, help="latency batch")
    p.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default=d.dtype, help="fp32 | bf16 | fp16 (latency)")
    p.add_argument("--threads", type=positive_int, default=d.threads, help="torch CPU threads")
    p.add_argument("--warmup", type=positive_int, default=d.warmup)
    p.add_argument("--repeats", type=positive_int, default=d.repeats)
    p.add_argument("--budget", type=non_negative_float, default=d.budget_s,
                   help="seconds of timed calls per latency row before stopping early (>= 3 calls; 0 = no limit)")
    p.add_argument("--no-pairs", action="store_true", help="skip the ratios timed in alternation")
    p.add_argument("--no-guided-quality", action="store_true",
                   help="time the guided teacher row without scoring it (its FID costs 2x the unguided 50-step one)")
    p.add_argument("--out", default=d.out, help="output folder")


def add_arguments(p):
    sub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    lat = sub.add_parser("latency", help="latency of teacher / student / GANs / generators",
                         description=__doc__)
    add_latency_arguments(lat)
    cmp_ = sub.add_parser("compare", help="teacher vs distilled student vs GAN: FID, diversity, latency, size, "
                                          "training time", description=__doc__)
    add_compare_arguments(cmp_)
    p.set_defaults(_bench=None)
    lat.set_defaults(_bench=latency)
    cmp_.set_defaults(_bench=compare)


def config_from_args(args):
    from ..bench.latency import BenchConfig

    return BenchConfig(teacher=args.teacher, student=args.student, generators=list(args.generator), gans=list(args.gan),
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


def compare(args) -> int:
    from ..bench.compare import CompareConfig, run_compare
    from ..bench.compare_report import table, write_compare
    from ..bench.latency import BenchConfig

    cfg = CompareConfig(teacher=args.teacher, student=args.student, gans=list(args.gan), out=args.out, data=args.data,
                        split=args.split, features=args.features, num_samples=args.num_samples,
                        eval_batch_size=args.eval_batch_size, seed=args.seed, guidance=args.guidance,
                        teacher_best_steps=args.teacher_best_steps, student_steps=args.student_steps,
                        truncation=args.truncation, batch=args.batch, device=args.device, dtype=args.dtype,
                        threads=args.threads, warmup=args.warmup, repeats=args.repeats, budget_s=args.budget,
                        pairs=not args.no_pairs, guided_quality=not args.no_guided_quality)
    BenchConfig(teacher=cfg.teacher, device=cfg.device, dtype=cfg.dtype).validate()  # device, dtype: before any work
    check_output_path(args.out, "--out", "dir")
    result = run_compare(cfg)
    files = write_compare(result, args.out)
    print("\n".join(table(result["rows"])))
    print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def main(args) -> int:
    if getattr(args, "_bench", None) is None:
        from ..errors import DistillError

        raise DistillError("choose a benchmark: `distill bench latency --help`, `distill bench compare --help`")
    return args._bench(args)
