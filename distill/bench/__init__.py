"""Benchmarks people can trust: `distill bench latency` (teacher vs student vs GANs) and `distill bench compare`.

- `timing`: injectable-clock timers (CUDA events on GPU), statistics, memory, component recorder
- `config`: `BenchConfig`, what to time and how
- `models`: the `MODELS` registry of what to time (teacher, student, translator generators, GANs)
- `latency`: the runs, the split of time by component, the ratios timed in alternation
- `report`: JSON / CSV / markdown / plots and the derived teacher-vs-student checks
- `compare`, `compare_report`: teacher vs distilled student vs GAN (quality, latency, size, training time)
"""

from .latency import MODELS, BenchConfig, BenchResult, run_benchmark
from .report import derived_checks, write_report
from .timing import Stats, WallTimer, make_timer, summarize

__all__ = ["MODELS", "BenchConfig", "BenchResult", "run_benchmark", "derived_checks", "write_report", "Stats",
           "WallTimer", "make_timer", "summarize"]
