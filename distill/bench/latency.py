"""The runs: each configuration timed, the split of time by component, the ratios timed in alternation.

For each model given (teacher, student, translator generators, GANs: `distill.bench.models.MODELS`),
each batch size and each case (steps, guidance) one *configuration* is timed:

1. `warmup` calls (the first includes lazy init and `torch.compile` compilation: reported apart),
2. `repeats` synchronised end-to-end calls (what a user calls: the diffusers pipeline with
   `output_type="pt"`; for a generator, `G(x)`; for a GAN, `G(z, labels)`) -> median/p90/p95/p99/mean/std/IQR,
   images/s,
3. `profile_repeats` instrumented calls: each network component's `forward` (denoiser, text
   encoder), the decoder's `decode` and the scheduler's `set_timesteps`/`scale_model_input`/`step`
   timed (synchronised on CUDA); overhead = total - network time,
4. the bare denoiser forward at the batch the pipeline feeds it (2B with guidance), timed in
   alternation with the calls of 2 (a, b, a, b, ...) so both see the same machine load.

Then, per batch, the headline ratios in alternation: the teacher's most expensive case over the
student's fewest steps (`paired`), and the student's fewest steps over each GAN's forward (`paired_gan`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..engine.hardware import cpu_model
from .config import DTYPES, BenchConfig
from .models import MODELS, Prepared, load_generator, model_list, prepare_pipeline, teacher_cases
from .timing import (Clock, MemoryTracker, Recorder, device_type, instrument, make_sync, make_timer, percentile,
                     run_paired, run_timed, summarize)

__all__ = ["DTYPES", "BenchConfig", "BenchResult", "MODELS", "load_generator", "prepare_pipeline", "run_benchmark"]


# ---------------------------------------------------------------- environment


def _git_commit() -> Optional[str]:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(cfg: BenchConfig) -> dict:
    import diffusers

    from .. import __version__

    env = {"device": cfg.device, "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
           "torch": torch.__version__, "diffusers": diffusers.__version__, "distill": __version__,
           "git_commit": _git_commit(), "python": platform.python_version(), "platform": platform.platform(),
           "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if device_type(cfg.device) == "cuda":
        env["device_name"] = torch.cuda.get_device_name(cfg.device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    else:
        env["device_name"] = env["cpu_model"]
    return env


# ---------------------------------------------------------------- the runs


@dataclass
class BenchResult:
    config: dict
    env: dict
    rows: list[dict]
    paired: list[dict] = field(default_factory=list)  # teacher-over-student ratios timed in alternation
    paired_gan: list[dict] = field(default_factory=list)  # student-over-GAN ratios timed in alternation


def _profile(prep: Prepared, n: int, clock: Clock, sync) -> dict:
    """Mean per-call seconds by component over `n` instrumented calls; overhead = total - networks."""
    if n == 0:
        return {}
    rec = Recorder(clock=clock, sync=sync)
    totals = []
    with instrument(rec, prep.components):
        for _ in range(n):
            sync()
            t0 = clock()
            prep.call()
            sync()
            totals.append(clock() - t0)
    total = sum(totals) / n
    comp = {f"{k}_s": v / n for k, v in rec.seconds.items()}
    network = sum(v for k, v in comp.items() if k != "scheduler_s")
    out = {"profiled_total_s": total, **comp, "network_s": network, "overhead_s": total - network,
           "overhead_frac": (total - network) / total if total > 0 else None}
    if "scheduler_s" in comp:
        out["python_other_s"] = total - network - comp["scheduler_s"]
    out["denoiser_calls_seen"] = rec.calls.get("denoiser", rec.calls.get("generator"))
    return out


def paired_overhead(calls_s: list[float], bare_s: list[float], denoiser_calls: int, fixed_s: float = 0.0):
    """Median over alternated pairs of call / (denoiser_calls x bare forward + fixed) - 1.

    Each pair was timed back to back, so load drifting on a shared machine cancels within a pair;
    the ratio of the two medians (kept as `overhead_vs_bare_medians_frac`) does not have that
    property and swung by +-10% between runs of a 50 ms call."""
    ratios = [a / (denoiser_calls * b + fixed_s) for a, b in zip(calls_s, bare_s) if denoiser_calls * b + fixed_s > 0]
    return percentile(ratios, 50) - 1 if ratios else None


def run_benchmark(cfg: BenchConfig, clock: Optional[Clock] = None, progress: bool = True) -> BenchResult:
    from tqdm.auto import tqdm

    cfg.validate()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    env = environment(cfg)
    timer = make_timer(cfg.device, clock)
    wall = clock or time.perf_counter
    sync = make_sync(cfg.device)
    mem = MemoryTracker(cfg.device)
    loaded, params = [], {}
    for name, kind, path in model_list(cfg):
        t0 = time.perf_counter()
        handle = MODELS[kind].load(path, cfg)
        loaded.append((name, kind, path, handle, time.perf_counter() - t0))
        params[name] = MODELS[kind].params(handle)
    plan = [(m, b, c) for m in loaded for b in cfg.batch_sizes for c in MODELS[m[1]].cases(m[3], cfg)]
    rows: list[dict] = []
    bar = tqdm(plan, desc="bench latency", unit="cfg", disable=not progress, dynamic_ncols=True)
    for (name, kind, path, handle, load_s), batch, (steps, guidance) in bar:
        bar.set_postfix_str(f"{name} b={batch} steps={steps} w={guidance:g}")
        row = {"model": name, "kind": kind, "path": path, "steps": steps, "guidance": guidance, "batch": batch,
               "device": cfg.device, "dtype": cfg.dtype, "channels_last": cfg.channels_last, "compile": cfg.compile,
               "threads": cfg.threads, "load_s": load_s, "params": params[name]}
        try:
            prep = MODELS[kind].prepare(handle, steps, guidance, batch, cfg)
            row.update(nfe=prep.nfe, denoiser_calls=prep.denoiser_calls, scheduler=prep.scheduler)
            mem.reset()
            rss0 = mem.peak().get("rss_mb")
            with torch.no_grad():
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if prep.bare is not None:  # end-to-end and bare forward alternated: compared under equal load
                    meas, bm = run_paired(prep.call, prep.bare, timer, cfg.warmup, cfg.repeats, cfg.budget_s)
                else:
                    meas, bm = run_timed(prep.call, timer, cfg.warmup, cfg.repeats, cfg.budget_s), None
                # process CPU seconds per wall second over the timed calls: ~threads when the process ran
                # undisturbed; well below on a shared machine (descheduled: latencies include waiting)
                row["cpu_util"] = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
                stats = summarize(meas.samples_s, batch)
                row.update(stats.to_dict())
                row["warmup_s"] = meas.warmup_s
                row["first_call_s"] = meas.warmup_s[0]
                # compilation (and lazy init) = what the first call took beyond a steady-state call
                row["compile_s"] = max(0.0, meas.warmup_s[0] - stats.median_s) if cfg.compile else None
                row.update({f"mem_{k}": v for k, v in mem.peak().items()})
                row["mem_rss_before_mb"] = rss0
                row.update(_profile(prep, cfg.profile_repeats, wall, sync))
                if bm is not None:
                    bs = summarize(bm.samples_s, prep.bare_batch)
                    row.update(bare_forward_median_s=bs.median_s, bare_forward_p90_s=bs.p90_s, bare_forward_n=bs.n,
                               bare_forward_batch=prep.bare_batch)
                    fixed = row.get("decoder_s", 0.0) + row.get("text_encoder_s", 0.0)
                    expected = prep.denoiser_calls * bs.median_s + fixed
                    row["expected_network_s"] = expected
                    row["overhead_vs_bare_medians_frac"] = stats.median_s / expected - 1 if expected > 0 else None
                    row["overhead_vs_bare_frac"] = paired_overhead(meas.samples_s, bm.samples_s,
                                                                   prep.denoiser_calls, fixed)
        except (RuntimeError, NotImplementedError) as e:  # e.g. a dtype the device does not implement
            row["error"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        rows.append(row)
    bar.close()
    paired = paired_headline(loaded, cfg, timer) if cfg.pair_headline else []
    paired_g = paired_gan(loaded, cfg, timer) if cfg.pair_headline else []
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = list(os.getloadavg())
    env["torch_threads"] = torch.get_num_threads()
    return BenchResult(config=dataclasses.asdict(cfg), env=env, rows=rows, paired=paired, paired_gan=paired_g)


def paired_headline(loaded: list, cfg: BenchConfig, timer) -> list[dict]:
    """The headline ratio (the teacher's most expensive case over the student's fewest steps) timed
    in alternation, per batch. Rows of the main table are timed minutes apart: on a machine whose
    speed drifts (a shared host, frequency scaling) the same network measured 1.35x apart in one run,
    which a ratio of two rows inherits; a ratio taken per back-to-back pair does not."""
    by_kind = {kind: handle for _, kind, _, handle, _ in loaded if kind in ("teacher", "student")}
    if len(by_kind) < 2:
        return []
    t_pipe, s_pipe = by_kind["teacher"], by_kind["student"]
    t_steps, t_w = max(teacher_cases(t_pipe, cfg), key=lambda c: c[0] * (2 if c[1] != 1.0 else 1))
    s_steps = min(cfg.student_steps)
    out = []
    with torch.no_grad():
        for batch in cfg.batch_sizes:
            tp = prepare_pipeline(t_pipe, t_steps, t_w, batch, cfg)
            sp = prepare_pipeline(s_pipe, s_steps, 1.0, batch, cfg)
            lat, n = alternated_ratio(tp.call, sp.call, cfg, timer)
            nfe = tp.nfe / sp.nfe
            out.append({"batch": batch, "teacher_steps": t_steps, "teacher_guidance": t_w, "teacher_nfe": tp.nfe,
                        "student_steps": s_steps, "student_nfe": sp.nfe, "latency_ratio": lat, "nfe_ratio": nfe,
                        "efficiency": lat / nfe, "n": n, "paired": True})
    return out


def paired_gan(loaded: list, cfg: BenchConfig, timer) -> list[dict]:
    """The student's fewest steps over each GAN's forward, per batch, timed in alternation (the
    distilled model against the GAN under the same machine load; > 1: the GAN is faster)."""
    student = next((h for _, kind, _, h, _ in loaded if kind == "student"), None)
    gans = [(name, h) for name, kind, _, h, _ in loaded if kind == "gan"]
    if student is None or not gans:
        return []
    s_steps = min(cfg.student_steps)
    out = []
    with torch.no_grad():
        for batch in cfg.batch_sizes:
            sp = prepare_pipeline(student, s_steps, 1.0, batch, cfg)
            for name, G in gans:
                gp = MODELS["gan"].prepare(G, 1, 1.0, batch, cfg)
                ratio, n = alternated_ratio(sp.call, gp.call, cfg, timer)
                out.append({"batch": batch, "gan": name, "student_steps": s_steps, "student_over_gan": ratio,
                            "n": n, "paired": True})
    return out


def alternated_ratio(call_a: Callable, call_b: Callable, cfg: BenchConfig, timer) -> tuple[float, int]:
    """Median over back-to-back pairs of a's time / b's time, and the number of pairs."""
    a, b = run_paired(call_a, call_b, timer, min(cfg.warmup, 2), cfg.repeats, cfg.budget_s)
    return percentile([x / y for x, y in zip(a.samples_s, b.samples_s)], 50), len(a.samples_s)
