"""Train pix2pix or CycleGAN: one loop on accelerate shared by both methods.

Per step: global batch indices (EpochSampler per domain) -> uint8 images -> resize / crop / flip
drawn from generator(seed, "aug", step) -> this process's shard -> `method.step` (D and G
updates, see methods.py) -> LR schedules. Dropout and the history pool draw from seeds that
are functions of (seed, step), so a resumed run repeats an uninterrupted one exactly.
Checkpoints (networks, both Adams, both schedules, pools) every `checkpoint_every` steps;
sample grids every `sample_every`; evaluation (eval.json, report.md) at the end.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from ..errors import DistillError
from ..engine.run_dir import MetricsLog, prepare_run_dir
from ..engine.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from ..engine.accelerator import EpochSampler, generator, make_accelerator, micro_batch_size, progress, seed_for, shard
from ..viz import save_grid
from .data import load_translation
from .methods import METHODS
from .schedule import make_lr_scheduler, make_optimizer
from .weights import freeze, init_from


def _grid_rows(columns: list[torch.Tensor]) -> torch.Tensor:
    """k columns of (n, C, H, W) -> (n * k, 3, H, W), row-major (one row per sample)."""
    cols = [c.float().cpu().expand(-1, 3, -1, -1) if c.shape[1] == 1 else c.float().cpu() for c in columns]
    return torch.stack(cols, 1).reshape(-1, *cols[0].shape[1:])


class TranslateSession:
    """Everything one training run holds; `step_once(step)` is the unit timed by the benchmark."""

    def __init__(self, recipe, method: str, prepare_dir: bool = True):
        self.recipe, self.cfg, self.tc = recipe, recipe.translate, recipe.train
        self.run_dir = Path(recipe.output_dir)
        tc = self.tc
        if tc.gradient_accumulation_steps != 1:
            raise DistillError("train.gradient_accumulation_steps: pix2pix / CycleGAN train without accumulation (use 1)")
        self.accelerator = acc = make_accelerator(tc, self.run_dir)
        self.resume = resolve_resume(self.run_dir, tc.resume_from_checkpoint)
        if prepare_dir:
            prepare_run_dir(recipe, resuming=bool(tc.resume_from_checkpoint), is_main=acc.is_main_process)
        self.data = load_translation(self.cfg, "train", train=True)
        micro_batch_size(tc.batch_size, 1, acc.num_processes)
        torch.manual_seed(tc.seed)  # weight init
        self.method = METHODS[method](self.cfg)
        self.method_name = method
        nets = self.method.nets
        self.loaded = [] if self.resume is not None else init_from(nets, self.cfg)
        self.frozen = sum(freeze(nets[g], self.cfg.freeze, g) for g in self.method.generators) if self.cfg.freeze else 0
        gparams = [p for g in self.method.generators for p in nets[g].parameters()]
        dparams = [p for d in self.method.discriminators for p in nets[d].parameters()]
        self.opts = {"G": make_optimizer(gparams, self.cfg.lr, self.cfg),
                     "D": make_optimizer(dparams, self.cfg.lr_d or self.cfg.lr, self.cfg)}
        self.scheds = {k: make_lr_scheduler(o, self.cfg, tc.max_steps) for k, o in self.opts.items()}
        self.step = 0
        if self.resume is not None:
            states = {"opt_G": self.opts["G"], "opt_D": self.opts["D"], "sched_G": self.scheds["G"],
                      "sched_D": self.scheds["D"], **self.method.state}
            self.step = load_checkpoint(self.resume, nets, states)["step"]
            acc.print(f"resumed from {self.resume} at step {self.step}")
        names = list(nets)
        prepared = acc.prepare(*[nets[n] for n in names], self.opts["G"], self.opts["D"])
        self.nets = dict(zip(names, prepared[:len(names)]))
        self.popts = {"G": prepared[-2], "D": prepared[-1]}
        for n in self.nets.values():
            n.train()
        self.samplers = (EpochSampler(len(self.data.a), tc.seed), EpochSampler(len(self.data.b), seed_for(tc.seed, "B")))

    def raw(self, name: str):
        return self.accelerator.unwrap_model(self.nets[name])

    def batch(self, step: int):
        """Global batch of `step` -> this process's (real_A, real_B) on the device."""
        bs, acc = self.tc.batch_size, self.accelerator
        ia = self.samplers[0].indices(step * bs, bs)
        ib = self.samplers[1].indices(step * bs, bs)
        real_A, real_B = self.data.batch(ia, ib, self.cfg, generator(self.tc.seed, "aug", step), train=True)
        P, r = acc.num_processes, acc.process_index
        return shard(real_A, r, P).to(acc.device), shard(real_B, r, P).to(acc.device)

    def logs_at(self, step: int) -> bool:
        """Whether the step that ends at `step` writes a metrics row."""
        return step % self.tc.log_every == 0 or step == self.tc.max_steps

    def step_once(self, step: int) -> dict:
        """Step `step` -> `step + 1`; gradient norms only when step + 1 is a logging step."""
        real_A, real_B = self.batch(step)
        torch.manual_seed(seed_for(self.tc.seed, "dropout", step, self.accelerator.process_index))
        out = self.method.step(self.nets, self.popts, real_A, real_B, self.accelerator.backward,
                               generator(self.tc.seed, "pool", step), norms=self.logs_at(step + 1))
        for s in self.scheds.values():
            s.step()
        return out

    def save(self, step: int) -> Path:
        raw = {n: self.raw(n) for n in self.nets}
        states = {"opt_G": self.opts["G"], "opt_D": self.opts["D"], "sched_G": self.scheds["G"],
                  "sched_D": self.scheds["D"], **self.method.state}
        extra = {"method": self.method_name, "translate": dataclasses.asdict(self.cfg)}
        return save_checkpoint(self.run_dir, step, raw, states, extra, total_limit=self.tc.checkpoints_total_limit)

    @torch.no_grad()
    def sample_grid(self, path: Path, data) -> Path:
        k = min(self.cfg.sample_count, len(data.a), len(data.b))
        idx = torch.arange(k)
        real_A, real_B = data.batch(idx, idx, self.cfg, train=False)
        dev = self.accelerator.device
        for n in self.nets.values():
            n.eval()
        cols = self.method.preview({n: self.raw(n) for n in self.nets}, real_A.to(dev), real_B.to(dev))
        for n in self.nets.values():
            n.train()
        return save_grid(_grid_rows(cols), path, nrow=len(cols), scale=max(1, 128 // self.cfg.crop_size))


def _preview_data(session):
    try:
        return load_translation(session.cfg, session.cfg.eval_split, train=False)
    except DistillError:
        return session.data


def train(recipe, method: str) -> Path:
    s = TranslateSession(recipe, method)
    tc, acc, run_dir = s.tc, s.accelerator, s.run_dir
    if s.loaded or s.frozen:
        acc.print(f"fine-tuning: loaded {', '.join(s.loaded) or 'nothing'}; {s.frozen} frozen generator tensors")
    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=s.step, enabled=acc.is_main_process)
    if acc.is_main_process:
        acc.init_trackers("logs")
    preview = _preview_data(s)
    bar = progress(tc.max_steps, s.step, acc.is_local_main_process, f"{method} {recipe.name}")
    t0, first = time.time(), s.step
    while s.step < tc.max_steps:
        out = s.step_once(s.step)
        s.step += 1
        bar.update(1)
        step = s.step
        if not torch.isfinite(out["loss_g"]) or not torch.isfinite(out["loss_d"]):
            raise DistillError(f"non-finite loss at step {step} (loss_g={float(out['loss_g'])}, loss_d={float(out['loss_d'])})")
        if s.logs_at(step):
            vals = {k: float(acc.reduce(v.detach().float().reshape(()), reduction="mean")) for k, v in out.items()}
            vals["lr"] = s.scheds["G"].get_last_lr()[0]
            vals["lr_d"] = s.scheds["D"].get_last_lr()[0]
            vals["it_per_s"] = (step - first) / max(1e-9, time.time() - t0)
            row = log.log(step, **vals)
            acc.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
            bar.set_postfix(loss_g=f"{vals['loss_g']:.3f}", loss_d=f"{vals['loss_d']:.3f}")
        if acc.is_main_process and (step % tc.sample_every == 0 or step == tc.max_steps):
            s.sample_grid(run_dir / "samples" / f"step-{step:07d}.png", preview)
        interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
        if step % tc.checkpoint_every == 0 or step == tc.max_steps or interrupted:
            acc.wait_for_everyone()
            if acc.is_main_process:
                s.save(step)
        if interrupted:
            bar.close()
            acc.print(f"interrupted at step {step} (train.interrupt_at); resume with train.resume_from_checkpoint=latest")
            acc.end_training()
            return run_dir
    bar.close()
    acc.wait_for_everyone()
    if acc.is_main_process and recipe.eval.num_samples > 0:
        from .evaluate import evaluate_run

        evaluate_run(run_dir, {n: s.raw(n) for n in s.nets}, method, s.cfg,
                     train_it_per_s=(s.step - first) / max(1e-9, time.time() - t0))
    acc.end_training()
    return run_dir


def train_pix2pix(recipe) -> Path:
    return train(recipe, "pix2pix")


def train_cyclegan(recipe) -> Path:
    return train(recipe, "cyclegan")
