"""Benchmarks people can trust: `distill bench latency` (teacher vs student vs GAN generators).

- `timing`: injectable-clock timers (CUDA events on GPU), statistics, memory, component recorder
- `latency`: the `MODELS` registry of what to time, the runs, the split of time by component
- `report`: JSON / CSV / markdown / plots and the derived teacher-vs-student checks
"""

from .latency import MODELS, BenchConfig, BenchResult, run_benchmark
from .report import derived_checks, write_report
from .timing import Stats, WallTimer, make_timer, summarize

__all__ = ["MODELS", "BenchConfig", "BenchResult", "run_benchmark", "derived_checks", "write_report", "Stats",
           "WallTimer", "make_timer", "summarize"]
