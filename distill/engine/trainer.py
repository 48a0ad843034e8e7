"""One training engine for every trainer: the outer skeleton, written once.

A task subclasses `Trainer` (what one step does, which objects are checkpointed, how samples are
drawn and what is exported at the end); `Engine(recipe).fit(trainer)` runs it:

  setup -> (resume) -> metrics.jsonl, TensorBoard, a step-0 row of run facts -> per step (after the first few,
  one line projecting the wall time of training and of the end-of-run work: distill.engine.projection):
  trainer.step(step) -> non-finite guard over every metric -> LR schedulers -> EMA -> step += 1 ->
  log (every train.log_every and at the end; metrics averaged over processes) -> sample grids
  (main process, EMA weights swapped in) -> atomic checkpoint (every train.checkpoint_every, at
  the end and at train.interrupt_at, keeping train.checkpoints_total_limit) -> trainer.finish().

Randomness is a function of (seed, step) inside each trainer, so a run resumed from a checkpoint
repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch

from ..errors import DistillError
from .accelerator import make_accelerator
from .messages import get_logger, verbosity
from .checkpoint import is_fsdp, load_checkpoint, load_optimizers, resolve_resume, save_all
from ..config import dump_recipe
from .projection import StepClock
from .threads import choose_threads, use_threads
from .run_dir import MetricsLog, check_output_dir, prepare_run_dir


logger = get_logger(__name__)


def _now(clock: str = "wall") -> float:
    """The clock of train.max_minutes in seconds: monotonic wall time, or this process's CPU time."""
    return time.process_time() if clock == "cpu" else time.monotonic()


def budget_end(step: int, step_seconds: float, budget_left: float, max_steps: int) -> int:
    """The step at which train.max_minutes will run out at `step_seconds` per step (at most max_steps)."""
    return min(max_steps, step + math.ceil(max(budget_left, 0.0) / max(step_seconds, 1e-9)))


def progress(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar over optimizer steps (rate and ETA), on the local main process only; none when the
    messages are quieter than INFO (`distill --quiet`)."""
    from tqdm.auto import tqdm

    enabled = enabled and verbosity() <= logging.INFO
    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)


class Trainer:
    """What a task supplies to the engine. Set `models` / `states` (and `schedulers`, `ema`, `owners`)
    in `setup`; everything else has a do-nothing default."""

    name: str = "train"  # progress-bar label
    models: dict  # checkpointed weights: raw (unwrapped) nn.Modules or objects with state_dict/load_state_dict
    states: dict  # raw torch optimizers, LR schedulers, EMA, anything with state_dict (-> <name>.pt)
    owners: dict = {}  # optimizer name in `states` -> the prepared model it steps (FSDP gathering)
    schedulers: list = []  # LR schedulers, stepped once per optimizer step by the engine
    ema = None  # a diffusers EMAModel, stepped after the schedulers; swapped in for `sample`

    def ema_parameters(self):
        """The parameters the EMA tracks (the raw model's)."""
        raise NotImplementedError(f"{type(self).__name__}: ema is set but ema_parameters() is not defined")

    def setup(self, engine: "Engine") -> None:
        """Build data, models, optimizers; call `engine.restore(self.models, self.states)`."""
        raise NotImplementedError

    def header(self) -> dict:
        """Extra keys of the step-0 metrics row (dataset_size, processes, ...)."""
        return {}

    def step(self, step: int) -> dict:
        """One optimizer step (step -> step + 1); -> metrics (tensors or floats)."""
        raise NotImplementedError

    def log_extras(self) -> dict:
        """Extra keys of each logged row (lr, ...)."""
        return {}

    def postfix(self, vals: dict) -> dict:
        """Progress-bar postfix from the reduced metrics of a logged step."""
        return {}

    def sample(self, step: int) -> Optional[dict]:
        """Main process only, at train.sample_every and the last step (EMA weights swapped in);
        returned keys are logged at `step`."""
        return None

    def checkpoint_extra(self) -> dict:
        """Extra keys of a checkpoint's state.json."""
        return {}

    def finish(self) -> None:
        """After the last step, on every process (FSDP gathers); export on the main one."""


def _scalar(v) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.detach().float().reshape(())
    return torch.tensor(float(v), dtype=torch.float64)


class Engine:
    """Owns the accelerator, the run folder and the loop; `fit(trainer)` trains and returns the run folder.

    `prepare_dir=False` skips creating the run folder (a trainer set up only to time its steps)."""

    def __init__(self, recipe, prepare_dir: bool = True):
        self.recipe, self.tc = recipe, recipe.train
        self.run_dir = check_output_dir(recipe.output_dir) if prepare_dir else Path(recipe.output_dir)
        self.accelerator = make_accelerator(self.tc, self.run_dir)
        torch.set_num_threads(choose_threads(self.tc.num_threads)[0])  # set-up too; the line follows set-up
        self.device = self.accelerator.device
        self.is_main = self.accelerator.is_main_process
        self.resume = resolve_resume(self.run_dir, self.tc.resume_from_checkpoint)
        if prepare_dir:
            prepare_run_dir(recipe, resuming=bool(self.tc.resume_from_checkpoint), is_main=self.is_main, dump=False)
        self.prepare_dir = prepare_dir
        self.step = 0
        self.resumed_state: dict = {}  # the resumed checkpoint's state.json
        self.last_checkpoint: Optional[Path] = None
        self.trainer: Optional[Trainer] = None
        self._deferred: dict = {}
        self.trained_seconds = 0.0  # training time so far on train.budget_clock, over resumes (train.max_minutes)
        self._since: Optional[float] = None  # when this process's share of trained_seconds started
        self.spent = 0.0  # elapsed() at the last budget check

    def logs_at(self, step: int) -> bool:
        """Whether the step that ends at `step` writes a metrics row."""
        return step % self.tc.log_every == 0 or step == self.tc.max_steps

    def restore(self, models: dict, states: dict) -> int:
        """Load the resume checkpoint (if any) into `models` and `states`; -> its step (0 otherwise).
        Under FSDP the optimizers named in the trainer's `owners` are loaded after `setup`, into the
        sharded optimizers of the prepared models."""
        if self.resume is None:
            return 0
        owned = set(getattr(self.trainer, "owners", None) or {}) if is_fsdp(self.accelerator) else set()
        self._deferred = {k: states[k] for k in owned if k in states}
        self.resumed_state = load_checkpoint(self.resume, models, {k: v for k, v in states.items() if k not in owned})
        self.step = self.resumed_state["step"]
        self.trained_seconds = float(self.resumed_state.get("trained_seconds", 0.0))
        logger.info(f"resumed from {self.resume} at step {self.step}")
        return self.step

    def elapsed(self) -> float:
        """Seconds of training so far, summed over resumes."""
        return self.trained_seconds + (_now(self.tc.budget_clock) - self._since if self._since is not None else 0.0)

    def out_of_time(self) -> bool:
        """Whether train.max_minutes is spent; the main process decides for all (clocks differ)."""
        if self.tc.max_minutes is None:
            return False
        self.spent = self.elapsed()  # this reading, kept for the progress bar
        done = torch.tensor(float(self.spent >= 60 * self.tc.max_minutes), device=self.device)
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast

            done = broadcast(done, from_process=0)
        return bool(done.item())

    def save(self, trainer: Trainer) -> Optional[Path]:
        extra = {**trainer.checkpoint_extra(), "trained_seconds": round(self.elapsed(), 3)}
        path = save_all(self.accelerator, self.run_dir, self.step, trainer.models, trainer.states, trainer.owners,
                        total_limit=self.tc.checkpoints_total_limit, extra=extra)
        if path is not None:
            self.last_checkpoint = path
        return path

    def _check_finite(self, step: int, metrics: dict) -> None:
        if not metrics:
            return
        vals = torch.stack([_scalar(v).to("cpu", torch.float64) for v in metrics.values()])
        if bool(torch.isfinite(vals).all()):
            return
        bad = ", ".join(f"{k}={float(v)}" for k, v in zip(metrics, vals.tolist()) if not math.isfinite(v))
        where = f"; last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
        raise DistillError(f"non-finite {bad} at step {step}{where}")

    def _log(self, log: MetricsLog, step: int, vals: dict) -> dict:
        row = log.log(step, **vals)
        self.accelerator.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
        return row

    def fit(self, trainer: Trainer) -> Path:
        acc, tc, run_dir = self.accelerator, self.tc, self.run_dir
        self.trainer = trainer
        self._since = _now(tc.budget_clock)
        trainer.setup(self)  # bad data or teacher: a one-line error before anything in the run folder changes
        use_threads(tc.num_threads, list(trainer.models.values()), say=logger.info)  # knowing the network's size
        if self.is_main and self.prepare_dir:
            dump_recipe(self.recipe, run_dir / "recipe.yaml")
        if self._deferred:
            load_optimizers(acc, self.resume, {k: (trainer.owners[k], o) for k, o in self._deferred.items()})
            self._deferred = {}
        log = MetricsLog(run_dir / "metrics.jsonl", resume_step=self.step, enabled=self.is_main)
        if self.is_main:
            acc.init_trackers("logs")
            head = trainer.header()
            if self.step == 0 and head:
                log.log(0, **head, mixed_precision=acc.mixed_precision)
        bar = progress(tc.max_steps, self.step, acc.is_local_main_process, f"{trainer.name} {self.recipe.name}")
        clock = StepClock(self.step, tc.max_steps) if self.is_main else None
        last = tc.max_steps  # the final step: max_steps, or the step at which train.max_minutes ran out
        if self.step < last and self.out_of_time():  # resumed with the budget already spent
            last = self.step
        mark = None  # (step, seconds of training) at this process's first budget reading: the bar's rate
        while self.step < last:
            metrics = trainer.step(self.step)
            self._check_finite(self.step, metrics)
            for s in trainer.schedulers:
                s.step()
            if trainer.ema is not None:
                trainer.ema.step(trainer.ema_parameters())
            self.step += 1
            bar.update(1)
            step = self.step
            if clock is not None and clock.tick(step):
                self.project(trainer, clock.seconds_per_step())
            if step < last and self.out_of_time():
                last = step
                logger.info(f"train.max_minutes ({tc.max_minutes:g}, {tc.budget_clock} clock) spent at step {step} "
                            f"of {tc.max_steps}: training ends here")
            if tc.max_minutes is not None and step < last:  # the bar ends where the budget will, not at max_steps
                mark = mark or (step, self.spent)
                if step > mark[0] and self.logs_at(step):
                    rate = (self.spent - mark[1]) / (step - mark[0])
                    bar.total = max(step + 1, budget_end(step, rate, 60 * tc.max_minutes - self.spent, tc.max_steps))
                    bar.refresh()

            if self.logs_at(step) or step == last:
                vals = {k: acc.reduce(_scalar(metrics[k]).to(self.device), reduction="mean").item()
                        for k in sorted(metrics)}
                vals.update(trainer.log_extras())
                self._log(log, step, vals)
                post = trainer.postfix(vals)
                if post:
                    bar.set_postfix(**post)
            if self.is_main and (step % tc.sample_every == 0 or step == last):
                out = self._sample(trainer, step)
                if out:
                    self._log(log, step, out)
            interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
            if step % tc.checkpoint_every == 0 or step == last or interrupted:
                self.save(trainer)
            if interrupted:
                bar.close()
                logger.info(f"interrupted at step {step} (train.interrupt_at); resume with "
                            f"train.resume_from_checkpoint=latest")
                acc.end_training()
                return run_dir
        bar.close()
        acc.wait_for_everyone()
        trainer.finish()
        acc.wait_for_everyone()  # no process tears the group down while the main one still exports (gloo aborts)
        acc.end_training()
        return run_dir

    def project(self, trainer: Trainer, step_seconds: float) -> None:
        """One line with the projected wall time of the training left and of the end-of-run work (evaluation
        and latency table in network evaluations), and a warning line naming the keys that cut a long total."""
        from ..diffusion.denoiser import LabelCond
        from .projection import end_of_run_work, network_of, projection_lines, seconds_per_evaluation

        net = network_of(trainer.models)
        conditional = net is not None and LabelCond.of(net).null_label is not None
        work = end_of_run_work(self.recipe, conditional)
        per_eval = None
        if work and net is not None:
            batch = min(self.recipe.eval.batch_size, 512 if self.device.type == "cuda" else 64)
            per_eval = seconds_per_evaluation(net, batch)
        steps_left = self.tc.max_steps - self.step
        if self.tc.max_minutes is not None:  # the budget ends training first when it buys fewer steps
            steps_left = budget_end(self.step, step_seconds, 60 * self.tc.max_minutes - self.elapsed(),
                                    self.tc.max_steps) - self.step
        line, warning = projection_lines(step_seconds, steps_left, work, per_eval)
        logger.info(line)
        if warning:
            logger.warning(warning)

    def _sample(self, trainer: Trainer, step: int):
        ema = trainer.ema
        if ema is None:
            return trainer.sample(step)
        params = list(trainer.ema_parameters())
        ema.store(params)
        ema.copy_to(params)
        try:
            return trainer.sample(step)
        finally:
            ema.restore(params)
