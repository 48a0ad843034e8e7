"""Time before work: after the first few steps of a run, the projected wall time of the training, of the
end-of-run evaluation and of the report's latency table, and one warning line when the total is more than a
few hours, naming the recipe keys that cut it.

Evaluation work is counted in network evaluations (one image through the network once): samples x sampler
steps x the guidance factor (2 with classifier-free guidance: a conditional and an unconditional pass), from
the recipe's `eval` and `report` sections. Its time is that count times one network evaluation's, measured on
the run's own network at the evaluation batch size (no gradients).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

WARN_HOURS = 3.0  # "more than a few hours"
LATENCY_TEACHER_NFE = 50 + 100  # the report's latency table: the teacher at 50 steps, without and with guidance
LATENCY_WARMUP = 2


@dataclass
class Work:
    """Network evaluations of one part of the end-of-run work, and the recipe keys that scale it."""

    what: str  # "evaluation", "latency table"
    evaluations: int
    keys: tuple[str, ...]


def teacher_settings(ec, steps, conditional: bool = True) -> list[tuple[int, float]]:
    """The steps sweep at eval.guidance_scale, then the guidance sweep's settings not already among them (as
    distill.eval.evaluate.eval_settings scores them)."""
    settings = [(s, float(ec.guidance_scale)) for s in steps]
    if conditional:
        settings += [(ec.guidance_steps, float(g)) for g in ec.guidance_sweep
                     if (ec.guidance_steps, float(g)) not in settings]
    return settings


def teacher_table_cached(teacher: str, ec, steps) -> bool:
    """Whether the teacher's folder already holds its evaluation rows for these settings (a shipped teacher's
    eval/eval-teacher.json): the report reuses them instead of sampling."""
    from ..diffusion.teachers import resolve_teacher_path
    from ..eval.evaluate import cached_rows

    folder = Path(resolve_teacher_path(teacher))
    if not folder.is_dir():
        return False
    return any(cached_rows(folder, "teacher", ec, steps, ec.guidance_scale, sampler, sweep_guidance=True) is not None
               for sampler in ("ddim", "flow-euler"))


def end_of_run_work(recipe, conditional: bool = True) -> list[Work]:
    """The evaluation (and latency table) a run does after its last step, for the teacher and the pixel
    distillation tasks; [] for a task whose end-of-run work is not counted here."""
    from ..eval.evaluate import sweep_evaluations

    ec = getattr(recipe, "eval", None)
    if ec is None or not hasattr(ec, "guidance_sweep") or ec.num_samples <= 0:
        return []
    rc, dc = getattr(recipe, "report", None), getattr(recipe, "distill", None)
    if recipe.task == "teacher":
        n = sweep_evaluations(ec.num_samples, teacher_settings(ec, ec.steps, conditional), conditional)
        return [Work("evaluation", n, ("eval.num_samples", "eval.steps", "eval.guidance_sweep"))]
    if rc is None or dc is None or not hasattr(rc, "teacher_steps"):
        return []
    n = sweep_evaluations(ec.num_samples, [(s, 1.0) for s in rc.student_steps])
    if not teacher_table_cached(dc.teacher, ec, rc.teacher_steps):
        n += sweep_evaluations(ec.num_samples, teacher_settings(ec, rc.teacher_steps, conditional), conditional)
    lat = rc.latency_batch * (LATENCY_WARMUP + rc.latency_repeats) * (LATENCY_TEACHER_NFE + sum(rc.student_steps))
    return [Work("evaluation", n, ("eval.num_samples", "report.teacher_steps", "eval.guidance_sweep")),
            Work("latency table", lat, ("report.latency_repeats", "report.latency_batch"))]


def network_of(models: dict):
    """The first checkpointed network that denoises images (a config with sample_size and in_channels)."""
    for m in models.values():
        cfg = getattr(m, "config", None)
        if isinstance(m, torch.nn.Module) and getattr(cfg, "sample_size", None) and getattr(cfg, "in_channels", None):
            return m
    return None


@torch.no_grad()
def seconds_per_evaluation(net, batch: int, repeats: int = 2) -> Optional[float]:
    """Seconds of one network evaluation of one image: the fastest of `repeats` forward passes at `batch`
    (after one warm-up), divided by `batch`. None where the network does not take (x, t, labels)."""
    from ..diffusion.denoiser import LabelCond

    cfg = net.config
    p = next(net.parameters())
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, device=p.device, dtype=p.dtype)
    t = torch.full((batch,), 500, device=p.device, dtype=torch.long)
    was_training = net.training
    net.eval()
    try:
        cond = LabelCond.of(net)
        y = torch.zeros(batch, dtype=torch.long, device=p.device) if cond.null_label is not None else None
        best = float("inf")
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            cond.call(net, x, t, y)
            if p.device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                best = min(best, time.perf_counter() - t0)
        return best / batch
    except Exception:  # a network of another signature (latent, trajectory): its evaluation is counted, not timed
        return None
    finally:
        net.train(was_training)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 2 * 3600 else f"{seconds / 3600:.1f} h"


def count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e4 else str(n)


def projection_lines(step_seconds: float, steps_left: int, work: list[Work], per_eval: Optional[float],
                     warn_hours: Optional[float] = None) -> tuple[str, Optional[str]]:
    """(the projection line, the warning line or None) from the measured seconds per training step, the
    steps left, the end-of-run work and the seconds of one network evaluation (None: not measured); the warning
    when the total passes `warn_hours` (default WARN_HOURS)."""
    warn_hours = WARN_HOURS if warn_hours is None else warn_hours
    train = step_seconds * steps_left
    parts = [f"training {duration(train)} ({steps_left} steps at {step_seconds:.2f} s/step)"]
    spans = [(train, ("train.max_steps",))]
    for w in work:
        if per_eval is None:
            parts.append(f"{w.what} {count(w.evaluations)} network evaluations (time not measured)")
            continue
        secs = w.evaluations * per_eval
        parts.append(f"{w.what} {duration(secs)} ({count(w.evaluations)} network evaluations)")
        spans.append((secs, w.keys))
    total = sum(s for s, _ in spans)
    line = "projected: " + ", ".join(parts) + f"; total {duration(total)}"
    if total <= warn_hours * 3600:
        return line, None
    keys = [k for _, ks in sorted(spans, key=lambda s: -s[0]) for k in ks]
    return line, (f"warning: this run is projected to take {duration(total)} (over {warn_hours:g} h); "
                  f"cut it with {', '.join(dict.fromkeys(keys))}")


class StepClock:
    """Times the first few optimizer steps of a run (the first one, with its warm-up, left out of the mean)
    and says when the projection is due: after `steps` steps, or at the last step of a shorter run."""

    def __init__(self, start_step: int, max_steps: int, steps: int = 4):
        self.start, self.due = start_step, min(max_steps, start_step + steps)
        self.times = [time.perf_counter()]

    def tick(self, step: int) -> bool:
        """Record the end of `step`; True once, when the projection is due."""
        if step > self.due:
            return False
        self.times.append(time.perf_counter())
        return step == self.due

    def seconds_per_step(self) -> float:
        d = [b - a for a, b in zip(self.times, self.times[1:])]
        return sum(d[1:]) / len(d[1:]) if len(d) > 1 else d[0]
