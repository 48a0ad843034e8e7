"""The training engine: one outer loop for every trainer (teacher, distillation, translators).

The engine owns the accelerator, the run folder (resolved recipe, metrics.jsonl, TensorBoard logs,
sample grids, checkpoints), resume, the progress bar, the LR schedules' and the EMA's steps, the
non-finite guard, logging, periodic samples, atomic checkpoints, `interrupt_at` and the end of
training. A task supplies a `Trainer`: its models and optimizers (`setup`) and one optimizer step
(`step`), which returns that step's metrics.

Per step:  m = trainer.step(step) -> guard -> LR schedules, EMA -> step += 1 -> log (means over
processes) -> samples (main process, EMA weights) -> checkpoint -> interrupt?
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..errors import DistillError
from .accelerator import make_accelerator
from .checkpoint import load_checkpoint, resolve_resume, save_all
from .run_dir import MetricsLog, prepare_run_dir


def progress(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar with rate and ETA."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)


class Trainer:
    """What a task supplies to the engine; see the module docstring."""

    name: str = "train"  # progress-bar label
    models: dict = {}  # checkpointed weights: raw modules or objects with state_dict/load_state_dict
    states: dict = {}  # raw optimizers, LR schedulers, EMA: anything with state_dict
    owners: dict = {}  # optimizer name -> the prepared model it steps (FSDP gathers its state)
    schedulers: list = []  # stepped once per optimizer step
    ema = None  # diffusers EMAModel or None

    def ema_parameters(self):
        raise NotImplementedError

    def setup(self, engine: "Engine") -> None:
        raise NotImplementedError

    def header(self) -> dict:
        return {}

    def step(self, step: int) -> dict:
        raise NotImplementedError

    def log_extras(self) -> dict:
        return {}

    def postfix(self, vals: dict) -> dict:
        return {}

    def sample(self, step: int) -> Optional[dict]:
        return None

    def checkpoint_extra(self) -> dict:
        return {}

    def finish(self) -> None:
        pass


def check_finite(m: dict, step: int, last_ckpt) -> None:
    """Stop with a one-line error naming the non-finite metrics and the last good checkpoint."""
    bad = [k for k, v in m.items() if not torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all()]
    if bad:
        where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else "; no checkpoint was written yet"
        raise DistillError(f"non-finite {', '.join(bad)} at step {step + 1}: stopped{where} (lower the learning rates)")


class Engine:
    def __init__(self, recipe):
        self.recipe, self.tc = recipe, recipe.train
        self.run_dir = Path(recipe.output_dir)
        self.accelerator = make_accelerator(self.tc, self.run_dir)
        self.device, self.is_main = self.accelerator.device, self.accelerator.is_main_process
        self.resume = resolve_resume(self.run_dir, self.tc.resume_from_checkpoint)
        prepare_run_dir(recipe, resuming=bool(self.tc.resume_from_checkpoint), is_main=self.is_main)
        self.step = 0

    def restore(self, models: dict, states: dict) -> int:
        """Load the resume checkpoint (if any) into `models` and `states`; the step it was written at."""
        if self.resume is not None:
            self.step = load_checkpoint(self.resume, models, states)["step"]
            self.accelerator.print(f"resumed from {self.resume} at step {self.step}")
        return self.step

    def _with_ema(self, trainer, fn):
        if trainer.ema is None:
            return fn()
        params = list(trainer.ema_parameters())
        trainer.ema.store(params)
        trainer.ema.copy_to(params)
        try:
            return fn()
        finally:
            trainer.ema.restore(params)

    def _log(self, log, bar, trainer, step: int, m: dict) -> None:
        acc = self.accelerator
        vals = {k: acc.reduce(torch.as_tensor(v, device=self.device, dtype=torch.float32), reduction="mean").item()
                for k, v in sorted(m.items())}
        row = log.log(step, **vals, **trainer.log_extras())
        acc.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
        bar.set_postfix(**trainer.postfix(vals))

    def fit(self, trainer: Trainer) -> Path:
        acc, tc, run_dir = self.accelerator, self.tc, self.run_dir
        trainer.setup(self)
        step = self.step
        log = MetricsLog(run_dir / "metrics.jsonl", resume_step=step, enabled=self.is_main)
        if self.is_main:
            acc.init_trackers("logs")
            if step == 0:
                log.log(0, **trainer.header())
        bar = progress(tc.max_steps, step, acc.is_local_main_process, trainer.name)
        last_ckpt = None
        while step < tc.max_steps:
            m = trainer.step(step)
            check_finite(m, step, last_ckpt)
            for s in trainer.schedulers:
                s.step()
            if trainer.ema is not None:
                trainer.ema.step(trainer.ema_parameters())
            step = self.step = step + 1
            bar.update(1)
            if step % tc.log_every == 0 or step == tc.max_steps:
                self._log(log, bar, trainer, step, m)
            if self.is_main and (step % tc.sample_every == 0 or step == tc.max_steps):
                out = self._with_ema(trainer, lambda: trainer.sample(step))
                if out:
                    log.log(step, **out)
            interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
            if step % tc.checkpoint_every == 0 or step == tc.max_steps or interrupted:
                last_ckpt = save_all(acc, run_dir, step, trainer.models, trainer.states, trainer.owners,
                                     tc.checkpoints_total_limit, extra=trainer.checkpoint_extra()) or last_ckpt
            if interrupted:
                bar.close()
                acc.print(f"interrupted at step {step} (train.interrupt_at); resume with "
                          "train.resume_from_checkpoint=latest")
                acc.end_training()
                return run_dir
        bar.close()
        acc.wait_for_everyone()
        trainer.finish()
        acc.end_training()
        return run_dir
