"""Train pix2pix, CycleGAN or SPADE on the training engine (distill.engine.trainer), one trainer for all.

Per step: global batch indices (EpochSampler per domain) -> uint8 images -> resize / crop / flip
drawn from rng(seed, "aug", step) -> this process's shard -> `method.step` (D and G
updates, see methods.py) -> LR schedules (the engine). Dropout and the history pool draw from
seeds that are functions of (seed, step), so a resumed run repeats an uninterrupted one exactly.
Checkpoints (networks, both Adams, both schedules, pools) every `checkpoint_every` steps;
sample grids every `sample_every`; evaluation (eval.json, report.md) at the end.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import torch

from ..errors import DistillError
from ..engine.accelerator import micro_batch_size
from ..engine.randomness import EpochSampler, rng, seed_for, shard
from ..engine.messages import get_logger
from ..engine.trainer import Engine, Trainer
from ..viz import save_grid
from .data import load_translation
from .methods import METHODS, labels_for
from .schedule import make_lr_scheduler, make_optimizer
from .weights import freeze, init_from

logger = get_logger(__name__)


def _grid_rows(columns: list[torch.Tensor]) -> torch.Tensor:
    """k columns of (n, C, H, W) -> (n * k, 3, H, W), row-major (one row per sample)."""
    cols = [c.float().cpu().expand(-1, 3, -1, -1) if c.shape[1] == 1 else c.float().cpu() for c in columns]
    return torch.stack(cols, 1).reshape(-1, *cols[0].shape[1:])


class TranslateTrainer(Trainer):
    """pix2pix / CycleGAN: one Adam "G" over the generators, one Adam "D" over the discriminators,
    an LR policy each; `step_once(step)` (the step plus the LR schedules) is the unit timed by the
    benchmark."""

    def __init__(self, recipe, method: str):
        self.recipe, self.method_name, self.name = recipe, method, method
        self.cfg, self.data_cfg, self.tc = recipe.translate, recipe.data, recipe.train
        self.labels = labels_for(method, self.cfg)  # SPADE: the input domain holds label maps

    def setup(self, engine) -> None:
        self.engine, acc, tc, cfg = engine, engine.accelerator, self.tc, self.cfg
        self.accelerator = acc
        self.data = load_translation(self.data_cfg, "train", train=True, labels=self.labels)
        micro_batch_size(tc.batch_size, 1, acc.num_processes)
        torch.manual_seed(tc.seed)  # weight init
        self.method = METHODS[self.method_name](cfg, self.data_cfg)
        nets = self.method.nets
        self.loaded = [] if engine.resume is not None else init_from(nets, cfg)
        self.frozen = sum(freeze(nets[g], cfg.freeze, g) for g in self.method.generators) if cfg.freeze else 0
        gparams = [p for g in self.method.generators for p in nets[g].parameters()]
        dparams = [p for d in self.method.discriminators for p in nets[d].parameters()]
        self.opts = {"G": make_optimizer(gparams, tc.learning_rate, tc),
                     "D": make_optimizer(dparams, tc.lr_d or tc.learning_rate, tc)}
        self.scheds = {k: make_lr_scheduler(o, tc) for k, o in self.opts.items()}
        self.schedulers = list(self.scheds.values())
        self.states = {"opt_G": self.opts["G"], "opt_D": self.opts["D"], "sched_G": self.scheds["G"],
                       "sched_D": self.scheds["D"], **self.method.state}
        engine.restore(nets, self.states)
        names = list(nets)
        prepared = acc.prepare(*[nets[n] for n in names], self.opts["G"], self.opts["D"])
        self.nets = dict(zip(names, prepared[:len(names)]))
        self.popts = {"G": prepared[-2], "D": prepared[-1]}
        for n in self.nets.values():
            n.train()
        self.models = {n: self.raw(n) for n in self.nets}
        self.samplers = (EpochSampler(len(self.data.a), tc.seed), EpochSampler(len(self.data.b), seed_for(tc.seed, "B")))
        if self.loaded or self.frozen:
            logger.info(f"fine-tuning: loaded {', '.join(self.loaded) or 'nothing'}; {self.frozen} frozen generator tensors")
        self.preview = self._preview_data() if engine.is_main else None
        self.t0, self.first = time.time(), engine.step

    def _preview_data(self):
        try:
            return load_translation(self.data_cfg, self.cfg.eval_split, train=False, labels=self.labels)
        except DistillError:
            return self.data

    def raw(self, name: str):
        return self.accelerator.unwrap_model(self.nets[name])

    def batch(self, step: int):
        """Global batch of `step` -> this process's (real_A, real_B) on the device."""
        bs, acc = self.tc.batch_size, self.accelerator
        ia = self.samplers[0].indices(step * bs, bs)
        ib = self.samplers[1].indices(step * bs, bs)
        real_A, real_B = self.data.batch(ia, ib, self.data_cfg, rng(self.tc.seed, "aug", step), train=True)
        P, r = acc.num_processes, acc.process_index
        return shard(real_A, r, P).to(acc.device), shard(real_B, r, P).to(acc.device)

    def step(self, step: int) -> dict:
        """Step `step` -> `step + 1`; gradient norms only when step + 1 is a logging step."""
        real_A, real_B = self.batch(step)
        torch.manual_seed(seed_for(self.tc.seed, "dropout", step, self.accelerator.process_index))
        return self.method.step(self.nets, self.popts, real_A, real_B, self.accelerator.backward,
                                rng(self.tc.seed, "pool", step), norms=self.engine.logs_at(step + 1))

    def step_once(self, step: int) -> dict:
        """The step and the LR schedules, as the engine runs them (without the engine's bookkeeping)."""
        out = self.step(step)
        for s in self.schedulers:
            s.step()
        return out

    def it_per_s(self) -> float:
        return (self.engine.step - self.first) / max(1e-9, time.time() - self.t0)

    def log_extras(self) -> dict:
        return {"lr": self.scheds["G"].get_last_lr()[0], "lr_d": self.scheds["D"].get_last_lr()[0],
                "it_per_s": self.it_per_s()}

    def postfix(self, vals: dict) -> dict:
        return {"loss_g": f"{vals['loss_g']:.3f}", "loss_d": f"{vals['loss_d']:.3f}"}

    def checkpoint_extra(self) -> dict:
        return {"method": self.method_name, "translate": dataclasses.asdict(self.cfg),
                "data": dataclasses.asdict(self.data_cfg)}

    @torch.no_grad()
    def sample_grid(self, path: Path, data) -> Path:
        k = min(self.cfg.sample_count, len(data.a), len(data.b))
        idx = torch.arange(k)
        real_A, real_B = data.batch(idx, idx, self.data_cfg, train=False)
        dev = self.accelerator.device
        for n in self.nets.values():
            n.eval()
        cols = self.method.preview({n: self.raw(n) for n in self.nets}, real_A.to(dev), real_B.to(dev))
        for n in self.nets.values():
            n.train()
        return save_grid(_grid_rows(cols), path, nrow=len(cols), scale=max(1, 128 // self.data_cfg.crop_size))

    def sample(self, step: int) -> Optional[dict]:
        self.sample_grid(self.engine.run_dir / "samples" / f"step-{step:07d}.png", self.preview)
        return None

    def finish(self) -> None:
        if not self.engine.is_main:
            return
        from .export import export_translator

        export_translator(self.engine.run_dir, {n: self.raw(n) for n in self.nets}, self.method_name, self.cfg,
                          self.data_cfg)  # diffusers' layout: the generator at output_dir
        result = None
        if self.recipe.eval.num_samples > 0:
            from .evaluate import evaluate_run

            result = evaluate_run(self.engine.run_dir, {n: self.raw(n) for n in self.nets}, self.method_name, self.cfg,
                                  self.data_cfg, train_it_per_s=self.it_per_s())
        from ..cards import hardware, run_facts, translator_card

        wall, steps, _ = run_facts(self.engine.run_dir)
        params = sum(p.numel() for n in self.nets if n.startswith("G") for p in self.raw(n).parameters())
        translator_card(self.recipe, self.method_name, result, params, wall, steps, hardware()).save(
            self.engine.run_dir / "README.md")


def standalone(recipe, method: str) -> TranslateTrainer:
    """A trainer set up outside `Engine.fit` (no run folder): for tests and the step-time benchmark."""
    t = TranslateTrainer(recipe, method)
    engine = Engine(recipe, prepare_dir=False)
    engine.trainer = t
    t.setup(engine)
    return t


def train(recipe, method: str) -> Path:
    return Engine(recipe).fit(TranslateTrainer(recipe, method))


def train_pix2pix(recipe) -> Path:
    return train(recipe, "pix2pix")


def train_cyclegan(recipe) -> Path:
    return train(recipe, "cyclegan")


def train_spade(recipe) -> Path:
    return train(recipe, "spade")
