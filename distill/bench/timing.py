"""Timers, statistics and memory for latency benchmarks.

Every timer takes an injectable `clock` (seconds, monotonic), so the statistics can be tested on
a fake clock. On CUDA the default timer records CUDA events around the call and synchronises on
the end event (GPU time of the work the call launched, queued work excluded by a sync first); on
CPU it is `time.perf_counter` around the call. CPU runs never touch `torch.cuda`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

Clock = Callable[[], float]  # seconds


def _noop() -> None:
    return None


def cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


@dataclass
class WallTimer:
    """`clock()` around `fn()`, with `sync()` before and after (a no-op on CPU)."""

    clock: Clock = time.perf_counter
    sync: Callable[[], None] = _noop

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        self.sync()
        t0 = self.clock()
        out = fn()
        self.sync()
        return out, self.clock() - t0


@dataclass
class CudaEventTimer:
    """CUDA events around `fn()`: elapsed GPU time between the two records, after a full sync
    so that work queued before the call is not counted."""

    clock: Clock = time.perf_counter  # unused; kept so every timer has the same fields
    sync: Callable[[], None] = cuda_sync

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        import torch

        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return out, start.elapsed_time(end) / 1e3  # ms -> s


TIMERS: dict[str, Callable[[], Any]] = {"cpu": WallTimer, "cuda": CudaEventTimer}


def device_type(device: str) -> str:
    return str(device).split(":")[0]


def make_timer(device: str = "cpu", clock: Optional[Clock] = None):
    """The device's timer; with `clock` given, a wall timer on that clock (synchronised on CUDA)."""
    kind = device_type(device)
    if clock is not None:
        return WallTimer(clock=clock, sync=cuda_sync if kind == "cuda" else _noop)
    return TIMERS[kind]()


def make_sync(device: str) -> Callable[[], None]:
    return cuda_sync if device_type(device) == "cuda" else _noop


# ---------------------------------------------------------------- statistics


def percentile(xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default): q in [0, 100]."""
    if not xs:
        return math.nan
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Stats:
    """Summary of per-call durations (seconds) for calls producing `batch` images each."""

    n: int
    mean_s: float
    median_s: float
    p90_s: float
    p95_s: float
    p99_s: float
    std_s: float  # sample standard deviation (n - 1); 0 for one sample
    iqr_s: float  # p75 - p25
    min_s: float
    max_s: float
    images_per_s: float  # batch / median
    ms_per_image: float  # median / batch, in ms

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(samples: list[float], batch: int = 1) -> Stats:
    if not samples:
        raise ValueError("no timing samples")
    n = len(samples)
    mean = sum(samples) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in samples) / (n - 1)) if n > 1 else 0.0
    med = percentile(samples, 50)
    return Stats(n=n, mean_s=mean, median_s=med, p90_s=percentile(samples, 90), p95_s=percentile(samples, 95),
                 p99_s=percentile(samples, 99), std_s=std, iqr_s=percentile(samples, 75) - percentile(samples, 25),
                 min_s=min(samples), max_s=max(samples),
                 images_per_s=batch / med if med > 0 else math.inf, ms_per_image=1e3 * med / batch)


@dataclass
class Measurement:
    warmup_s: list[float] = field(default_factory=list)  # the first one includes compilation, lazy init
    samples_s: list[float] = field(default_factory=list)


def run_timed(fn: Callable[[], Any], timer, warmup: int, repeats: int, budget_s: float = 0.0,
              min_repeats: int = 3) -> Measurement:
    """`warmup` untimed-for-stats calls, then up to `repeats` timed calls; with `budget_s > 0` the
    timed calls stop once their sum passes the budget (never fewer than `min_repeats`)."""
    m = Measurement()
    for _ in range(warmup):
        m.warmup_s.append(timer.measure(fn)[1])
    for i in range(repeats):
        m.samples_s.append(timer.measure(fn)[1])
        if budget_s > 0 and i + 1 >= min_repeats and sum(m.samples_s) > budget_s:
            break
    return m


def run_paired(fn_a: Callable[[], Any], fn_b: Callable[[], Any], timer, warmup: int, repeats: int,
               budget_s: float = 0.0, min_repeats: int = 3) -> tuple[Measurement, Measurement]:
    """`run_timed` for two calls alternated a, b, a, b, ...: a ratio of their medians then compares
    them under the same machine conditions (load on a shared machine drifts between blocks)."""
    a, b = Measurement(), Measurement()
    for _ in range(warmup):
        a.warmup_s.append(timer.measure(fn_a)[1])
        b.warmup_s.append(timer.measure(fn_b)[1])
    for i in range(repeats):
        a.samples_s.append(timer.measure(fn_a)[1])
        b.samples_s.append(timer.measure(fn_b)[1])
        if budget_s > 0 and i + 1 >= min_repeats and sum(a.samples_s) + sum(b.samples_s) > budget_s:
            break
    return a, b


# ---------------------------------------------------------------- component split


@dataclass
class Recorder:
    """Accumulated time per component name over instrumented calls."""

    clock: Clock = time.perf_counter
    sync: Callable[[], None] = _noop
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _depth: int = 0

    def wrap(self, name: str, fn: Callable) -> Callable:
        def timed(*a, **kw):
            if self._depth:  # a component called inside another: counted once, by the outer one
                return fn(*a, **kw)
            self._depth += 1
            try:
                self.sync()
                t0 = self.clock()
                out = fn(*a, **kw)
                self.sync()
                dt = self.clock() - t0
            finally:
                self._depth -= 1
            self.seconds[name] = self.seconds.get(name, 0.0) + dt
            self.calls[name] = self.calls.get(name, 0) + 1
            return out

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


@contextlib.contextmanager
def instrument(recorder: Recorder, targets: list[tuple[str, Any, str]]):
    """Time `obj.method` for each (component, obj, method) by shadowing the bound method with an
    instance attribute (`forward` of an nn.Module: nn.Module.__call__ looks it up per call;
    `step` of a scheduler, `decode` of a VAE); restored on exit."""
    saved = []
    try:
        for name, obj, method in targets:
            had = method in obj.__dict__
            orig = obj.__dict__.get(method)
            bound = getattr(obj, method)
            object.__setattr__(obj, method, recorder.wrap(name, bound))
            saved.append((obj, method, had, orig))
        yield recorder
    finally:
        for obj, method, had, orig in reversed(saved):
            if had:
                object.__setattr__(obj, method, orig)
            else:
                object.__delattr__(obj, method)


# ---------------------------------------------------------------- memory


def _read_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class MemoryTracker:
    """Peak memory over a configuration. CUDA: max allocated / reserved since `reset()`. CPU:
    peak RSS since `reset()` where Linux lets us reset it (/proc/self/clear_refs, VmHWM), else
    the process's lifetime peak (`ru_maxrss`, marked `rss_peak_is_lifetime`)."""

    device: str = "cpu"
    resettable: bool = False

    def reset(self) -> None:
        if device_type(self.device) == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = _read_status_kb("VmHWM") is not None
        except OSError:
            self.resettable = False

    def peak(self) -> dict:
        if device_type(self.device) == "cuda":
            import torch

            return {"cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
                    "cuda_max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
                    "rss_mb": _rss_mb()}
        if self.resettable:
            return {"rss_peak_mb": _read_status_kb("VmHWM") / 1024, "rss_mb": _rss_mb(), "rss_peak_is_lifetime": False}
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return {"rss_peak_mb": ru / (2**20 if sys.platform == "darwin" else 1024), "rss_mb": _rss_mb(),
                "rss_peak_is_lifetime": True}


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:
        kb = _read_status_kb("VmRSS")
        return kb / 1024 if kb is not None else math.nan
