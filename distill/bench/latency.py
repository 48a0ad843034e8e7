"""What to time and how: the `MODELS` registry, the runs, and the split of time by component.

For each model given (teacher, student, generators), each batch size and each case (steps,
guidance) one *configuration* is timed:

1. `warmup` calls (the first includes lazy init and `torch.compile` compilation: reported apart),
2. `repeats` synchronised end-to-end calls (what a user calls: the diffusers pipeline with
   `output_type="pt"`; for a generator, `G(x)`) -> median/p90/p95/p99/mean/std/IQR, images/s,
3. `profile_repeats` instrumented calls: each network component's `forward` (denoiser, text
   encoder), the decoder's `decode` and the scheduler's `set_timesteps`/`scale_model_input`/`step`
   timed (synchronised on CUDA); overhead = total - network time,
4. the bare denoiser forward at the batch the pipeline feeds it (2B with guidance), timed in
   alternation with the calls of 2 (a, b, a, b, ...) so both see the same machine load.

A new thing to time is one `MODELS` entry: how to load it, its cases, and how to call it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..diffusion.denoiser import LabelCond
from ..errors import DistillError
from .timing import (Clock, MemoryTracker, Recorder, device_type, instrument, make_sync, make_timer, percentile,
                     run_paired, run_timed, summarize)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchConfig:
    teacher: Optional[str] = None  # pipeline folder
    student: Optional[str] = None  # pipeline folder
    generators: list[str] = field(default_factory=list)  # [NAME=]PATH | [NAME=]py:module:factory
    generator_input: Optional[list[int]] = None  # C H W of a generator's input (default: its `input_shape`, else 3 256 256)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64])
    teacher_steps: list[int] = field(default_factory=lambda: [50, 25, 8, 4, 2, 1])
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    guidance: float = 2.0  # the teacher is timed at guidance 1 (off) and at this scale
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = 5
    repeats: int = 20
    profile_repeats: int = 3  # instrumented calls for the component split
    budget_s: float = 0.0  # > 0: stop timed calls of a configuration past this many seconds (>= 3 calls)
    threads: int = 1
    seed: int = 0
    pair_headline: bool = True  # time the teacher-over-student headline ratio in alternation too

    def validate(self) -> None:
        if not (self.teacher or self.student or self.generators):
            raise DistillError("nothing to time: give --teacher, --student and/or --generator")
        if self.dtype not in DTYPES:
            raise DistillError(f"unknown --dtype '{self.dtype}' (choose from {', '.join(DTYPES)})")
        if device_type(self.device) not in ("cpu", "cuda"):
            raise DistillError(f"unknown --device '{self.device}' (cpu or cuda)")
        if device_type(self.device) == "cuda" and not torch.cuda.is_available():
            raise DistillError("--device cuda: no CUDA device is available")
        for name, vals in [("--batch-sizes", self.batch_sizes), ("--teacher-steps", self.teacher_steps),
                           ("--student-steps", self.student_steps)]:
            if not vals or any(v < 1 for v in vals):
                raise DistillError(f"{name} must be positive integers")
        if self.warmup < 1 or self.repeats < 1 or self.profile_repeats < 0:
            raise DistillError("--warmup and --repeats must be >= 1")
        if self.threads < 1:
            raise DistillError("--threads must be >= 1")


@dataclass
class Prepared:
    """One configuration ready to call."""

    call: Callable[[], Any]  # one end-to-end call producing `batch` images
    nfe: int  # network (denoiser) evaluations per image: steps x (2 with guidance); 1 for a generator
    denoiser_calls: int  # denoiser forwards per end-to-end call (guidance batches cond + uncond: 2B)
    bare: Optional[Callable[[], Any]] = None  # one bare denoiser forward at `bare_batch`
    bare_batch: int = 0
    components: list[tuple[str, Any, str]] = field(default_factory=list)  # (component, object, method)
    scheduler: str = ""


@dataclass(frozen=True)
class ModelSpec:
    load: Callable[[str, BenchConfig], Any]
    cases: Callable[[Any, BenchConfig], list[tuple[int, float]]]  # (steps, guidance)
    prepare: Callable[[Any, int, float, int, BenchConfig], Prepared]  # (handle, steps, guidance, batch, cfg)


# ---------------------------------------------------------------- diffusion pipelines


def load_pipeline(path: str, cfg: BenchConfig):
    from ..diffusion.teachers import load_teacher

    if not Path(path).is_dir():
        raise DistillError(f"{path}: no such pipeline folder")
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()
    try:
        pipe = load_teacher(path)
    finally:
        dlog.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    for name in ("unet", "vae", "text_encoder"):
        mod = getattr(pipe, name, None)
        if isinstance(mod, torch.nn.Module):
            dtype = DTYPES[cfg.dtype]
            mod.to(device=cfg.device, **({"dtype": dtype} if mod.dtype != dtype else {})).eval()
            if cfg.channels_last and name != "text_encoder":
                mod.to(memory_format=torch.channels_last)
    if cfg.compile:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def teacher_cases(pipe, cfg: BenchConfig) -> list[tuple[int, float]]:
    scales = [1.0] + ([cfg.guidance] if pipe.num_classes is not None and cfg.guidance != 1.0 else [])
    return [(s, g) for g in scales for s in cfg.teacher_steps]


def student_cases(pipe, cfg: BenchConfig) -> list[tuple[int, float]]:
    return [(s, 1.0) for s in cfg.student_steps]  # the student is distilled with guidance built in


def prepare_pipeline(pipe, steps: int, guidance: float, batch: int, cfg: BenchConfig) -> Prepared:
    unet, sched = pipe.unet, pipe.scheduler
    ucfg = unet.config
    k = pipe.num_classes
    labels = (torch.arange(batch) % k).to(cfg.device) if k else None  # (B,)
    guided = labels is not None and guidance != 1.0

    def call():  # (B, C, H, W) in [0, 1]
        return pipe(class_labels=labels, batch_size=batch, num_inference_steps=steps, guidance_scale=guidance,
                    output_type="pt").images

    mult = 2 if guided else 1
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(batch * mult, ucfg.in_channels, ucfg.sample_size, ucfg.sample_size, device=cfg.device,
                    dtype=DTYPES[cfg.dtype]).to(memory_format=fmt)  # (mB, C, H, W)
    y = None
    if labels is not None:
        y = torch.cat([labels, torch.full_like(labels, k)]) if guided else labels  # (mB,)
    t = torch.tensor(sched.config.num_train_timesteps - 1, device=cfg.device)  # first step of trailing spacing
    cond = LabelCond.of(unet)  # how labels reach the network (UNet2DModel, DiT)

    def bare():
        with torch.no_grad():
            return cond.call(unet, x, t, y)

    comps = [("denoiser", unet, "forward")]
    comps += [("scheduler", sched, m) for m in ("set_timesteps", "scale_model_input", "step") if hasattr(sched, m)]
    if getattr(pipe, "vae", None) is not None:
        comps.append(("decoder", pipe.vae, "decode"))
    if getattr(pipe, "text_encoder", None) is not None:
        comps.append(("text_encoder", pipe.text_encoder, "forward"))
    return Prepared(call=call, nfe=steps * mult, denoiser_calls=steps, bare=bare, bare_batch=batch * mult,
                    components=comps, scheduler=type(sched).__name__)


# ---------------------------------------------------------------- generators (pix2pix, CycleGAN, ...)


def _load_py(spec: str):
    mod, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr or "build")
    except (ImportError, AttributeError) as e:
        raise DistillError(f"py:{spec}: cannot import ({e})") from None
    return obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj


def _load_file(path: str):
    if not Path(path).is_file():
        raise DistillError(f"{path}: no such generator file")
    try:  # TorchScript only: a pickled module would execute code from the file (never unpickled here)
        return torch.jit.load(path, map_location="cpu")
    except RuntimeError as e:
        raise DistillError(f"{path}: not a TorchScript module ({str(e).splitlines()[0]}); "
                           "use py:<module>:<builder> for a generator built in code") from None


GENERATOR_LOADERS: dict[str, Callable[[str], Any]] = {"py": _load_py, "jit": _load_file, "file": _load_file}


@dataclass
class Generator:
    module: torch.nn.Module
    input_shape: tuple[int, int, int]  # (C, H, W)


def load_generator(spec: str, cfg: BenchConfig) -> Generator:
    scheme, _, rest = spec.partition(":")
    loader = GENERATOR_LOADERS.get(scheme) if rest and scheme in GENERATOR_LOADERS else None
    module = loader(rest) if loader else _load_file(spec)
    if not isinstance(module, torch.nn.Module):
        raise DistillError(f"{spec}: loaded a {type(module).__name__}, not a torch.nn.Module")
    shape = cfg.generator_input or getattr(module, "input_shape", None) or (3, 256, 256)
    if len(shape) != 3:
        raise DistillError(f"--generator-input: expected C H W, got {list(shape)}")
    module = module.to(cfg.device, DTYPES[cfg.dtype]).eval()
    if cfg.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if cfg.compile:
        module = torch.compile(module)
    return Generator(module, tuple(int(s) for s in shape))


def prepare_generator(gen: Generator, steps: int, guidance: float, batch: int, cfg: BenchConfig) -> Prepared:
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(batch, *gen.input_shape, device=cfg.device, dtype=DTYPES[cfg.dtype]).to(memory_format=fmt)

    def call():  # (B, C', H', W')
        with torch.no_grad():
            return gen.module(x)

    scripted = isinstance(gen.module, torch.jit.ScriptModule)
    return Prepared(call=call, nfe=1, denoiser_calls=1,  # the call is the bare forward: nothing to compare
                    components=[] if scripted else [("generator", gen.module, "forward")])


MODELS: dict[str, ModelSpec] = {
    "teacher": ModelSpec(load=load_pipeline, cases=teacher_cases, prepare=prepare_pipeline),
    "student": ModelSpec(load=load_pipeline, cases=student_cases, prepare=prepare_pipeline),
    "generator": ModelSpec(load=load_generator, cases=lambda g, cfg: [(1, 1.0)], prepare=prepare_generator),
}


def model_list(cfg: BenchConfig) -> list[tuple[str, str, str]]:
    """(display name, MODELS key, path) for everything given."""
    out = [(k, k, p) for k, p in (("teacher", cfg.teacher), ("student", cfg.student)) if p]
    for i, spec in enumerate(cfg.generators):
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = f"generator{i if len(cfg.generators) > 1 else ''}", spec
        out.append((name, "generator", path))
    return out


# ---------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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

    env = {"device": cfg.device, "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
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
    loaded = []
    for name, kind, path in model_list(cfg):
        t0 = time.perf_counter()
        handle = MODELS[kind].load(path, cfg)
        loaded.append((name, kind, path, handle, time.perf_counter() - t0))
    plan = [(m, b, c) for m in loaded for b in cfg.batch_sizes for c in MODELS[m[1]].cases(m[3], cfg)]
    rows: list[dict] = []
    bar = tqdm(plan, desc="bench latency", unit="cfg", disable=not progress, dynamic_ncols=True)
    for (name, kind, path, handle, load_s), batch, (steps, guidance) in bar:
        bar.set_postfix_str(f"{name} b={batch} steps={steps} w={guidance:g}")
        row = {"model": name, "kind": kind, "path": path, "steps": steps, "guidance": guidance, "batch": batch,
               "device": cfg.device, "dtype": cfg.dtype, "channels_last": cfg.channels_last, "compile": cfg.compile,
               "threads": cfg.threads, "load_s": load_s}
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
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = list(os.getloadavg())
    env["torch_threads"] = torch.get_num_threads()
    return BenchResult(config=dataclasses.asdict(cfg), env=env, rows=rows, paired=paired)


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
            a, b = run_paired(tp.call, sp.call, timer, min(cfg.warmup, 2), cfg.repeats, cfg.budget_s)
            lat = percentile([x / y for x, y in zip(a.samples_s, b.samples_s)], 50)
            nfe = tp.nfe / sp.nfe
            out.append({"batch": batch, "teacher_steps": t_steps, "teacher_guidance": t_w, "teacher_nfe": tp.nfe,
                        "student_steps": s_steps, "student_nfe": sp.nfe, "latency_ratio": lat, "nfe_ratio": nfe,
                        "efficiency": lat / nfe, "n": len(a.samples_s), "paired": True})
    return out
