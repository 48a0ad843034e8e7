"""Latency benchmark: teacher (50..1 steps, with and without guidance) vs distilled student (1, 2, 4
steps) vs GAN generators, through `distill bench latency` (distill.bench).

    PYTHONPATH=. python benchmarks/latency.py --teacher distill/assets/teachers/mnist \
        --student PATH --batch-sizes 1 8 64 --threads 2 --name mnist-cpu

writes benchmarks/results/<name>.json, .csv, .md and the plots. Takes every option of
`distill bench latency` (see `distill bench latency --help`); `--out` defaults to
benchmarks/results and `--name` (default: latency) names the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.bench import run_benchmark, write_report  # noqa: E402
from distill.bench.report import load_fid, markdown_table  # noqa: E402
from distill.commands.bench import add_latency_arguments, config_from_args  # noqa: E402
from distill.errors import DistillError  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_latency_arguments(p)
    p.add_argument("--name", default="latency", help="file stem under --out")
    p.set_defaults(out=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    try:
        cfg = config_from_args(args)
        cfg.validate()
        fid_rows = load_fid(args.fid_json)
        result = run_benchmark(cfg, progress=not args.quiet)
    except DistillError as e:
        print(f"benchmarks/latency.py: error: {e}", file=sys.stderr)
        return 2
    files = write_report(result, args.out, fid_rows, plots=not args.no_plots, stem=args.name)
    print(markdown_table(result.rows))
    print("wrote " + ", ".join(str(f) for f in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
