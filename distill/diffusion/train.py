"""Train a pixel-space diffusion teacher on the training engine (distill.engine.trainer).

Data flow per optimizer step: global batch indices (EpochSampler) -> images/labels -> noise,
timesteps (integers uniform in [0, T) for a DDPM schedule; for flow, t = T shift(sigma) with sigma from
`teacher.timestep_sampling`, distill.diffusion.flow) and label dropout drawn for the whole global batch from
rng(seed, step) ->
this process's shard -> `Denoiser.loss` (B,) -> backward under `accelerator.accumulate` ->
clip, AdamW, LR schedule, EMA. Checkpoints every `checkpoint_every` steps; sample grids every
`sample_every` (with the schedule's default sampler: DDIM, or flow-matching Euler); the EMA weights are
exported as a `DistillPipeline` with that sampler and evaluated at the end.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import torch

from ..data import load_images
from ..errors import DistillError
from .denoiser import Denoiser
from .pipelines import DistillPipeline
from .flow import training_timesteps
from .sampling import default_sampler, make_scheduler, noise_scheduler_from, sample
from .teachers import TEACHERS, build_noise_scheduler, load_teacher
from ..viz import save_grid, upscale_for_view
from ..engine.accelerator import micro_batch_size
from ..engine.optim import make_ema, make_lr_scheduler
from ..engine.randomness import EpochSampler, rng, shard
from ..engine.messages import get_logger
from ..engine.trainer import Engine, Trainer

logger = get_logger(__name__)


def build_teacher(recipe, num_classes):
    """(unet, noise_scheduler) from scratch or from `teacher.pretrained`."""
    cfg = recipe.teacher
    if cfg.pretrained:
        pipe = load_teacher(cfg.pretrained)
        return pipe.unet, noise_scheduler_from(pipe.scheduler.config)
    if cfg.kind not in TEACHERS:
        raise DistillError(f"teacher.kind: unknown teacher '{cfg.kind}' (choose from {', '.join(TEACHERS)})")
    unet = TEACHERS[cfg.kind](cfg, recipe.data.resolution, recipe.data.channels, num_classes)
    return unet, build_noise_scheduler(cfg)


@torch.no_grad()
def sample_grid(unet, noise_scheduler, num_classes, resolution, channels, path, steps=25, seed=0, per_class=8,
                class_names=None):
    """A grid with one column per class (rows: seeds, `class_names` over the columns), sampled with the
    schedule's default sampler."""
    k = num_classes or 10
    labels = torch.arange(k).repeat(per_class) if num_classes else None
    device = next(unet.parameters()).device
    noise = torch.randn(k * per_class, channels, resolution, resolution, generator=rng(seed, "grid"))
    sched = make_scheduler(default_sampler(noise_scheduler), noise_scheduler.config)
    x = sample(unet, sched, noise.to(device), labels.to(device) if labels is not None else None, steps)
    return save_grid(x, path, nrow=k, scale=upscale_for_view(resolution), column_names=class_names if num_classes else None)


def export_pipeline(unet, noise_scheduler, path: Path, class_names: Optional[list] = None) -> DistillPipeline:
    pipe = DistillPipeline(unet=unet, scheduler=make_scheduler(default_sampler(noise_scheduler), noise_scheduler.config),
                           class_names=class_names)
    pipe.save_pretrained(str(path))
    return pipe


class TeacherTrainer(Trainer):
    """One AdamW step of the diffusion loss over `train.gradient_accumulation_steps` slices of the
    global batch; EMA of the weights; sample grids; the EMA weights exported at the end."""

    name = "teacher"

    def __init__(self, recipe):
        self.recipe = recipe

    def ema_parameters(self):
        return self.raw.parameters()

    def setup(self, engine) -> None:
        recipe, tc, acc = self.recipe, engine.tc, engine.accelerator
        self.engine, self.tc = engine, tc
        self.data = data = load_images(recipe.data)
        self.num_classes = (data.num_classes if (recipe.teacher.class_conditional and data.labels is not None)
                            else None)
        micro_batch_size(tc.batch_size, tc.gradient_accumulation_steps, acc.num_processes)  # validates divisibility

        torch.manual_seed(tc.seed)  # weight init
        unet, self.noise_scheduler = build_teacher(recipe, self.num_classes)
        self.ema = make_ema(unet.parameters(), tc, model_cls=type(unet), model_config=unet.config)
        opt = torch.optim.AdamW(unet.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                                weight_decay=tc.weight_decay)
        self.lr_sched = make_lr_scheduler(opt, tc)
        self.schedulers = [self.lr_sched]
        self.states = {"optimizer": opt, "lr_scheduler": self.lr_sched, "ema": self.ema}
        engine.restore({"unet": unet}, self.states)
        self.unet, self.opt = acc.prepare(unet, opt)
        self.ema.to(acc.device)
        self.raw = acc.unwrap_model(self.unet)
        self.models = {"unet": self.raw}
        self.null = self.num_classes  # the null label index equals the number of real classes
        self.sampler = EpochSampler(len(data), tc.seed)
        self.T = self.noise_scheduler.config.num_train_timesteps
        self.den = Denoiser.from_scheduler(self.unet, self.noise_scheduler)
        self.unet.train()

    def draw_timesteps(self, n: int, g: torch.Generator) -> torch.Tensor:
        """(n,) training timesteps: flow t = T shift(sigma), sigma ~ teacher.timestep_sampling; else integers in [0, T)."""
        if self.den.param.name == "flow":
            return training_timesteps(n, g, self.recipe.teacher, self.den.param.shift, self.T)
        return torch.randint(0, self.T, (n,), generator=g)

    def header(self) -> dict:
        return {"dataset_size": len(self.data), "processes": self.engine.accelerator.num_processes}

    def step(self, step: int) -> dict:
        tc, acc, unet, opt = self.tc, self.engine.accelerator, self.unet, self.opt
        A = tc.gradient_accumulation_steps
        P, rank = acc.num_processes, acc.process_index
        slice_size = tc.batch_size // A  # global samples per accumulation slice
        losses = []
        grad_norm = None
        for a in range(A):
            idx = self.sampler.indices(step * tc.batch_size + a * slice_size, slice_size)
            x0, y = self.data.batch(idx)  # (n, C, H, W), (n,)
            g = rng(tc.seed, "teacher", step, a)
            noise = torch.randn(x0.shape, generator=g)
            t = self.draw_timesteps(slice_size, g)
            if y is not None and self.null is not None:  # classifier-free guidance: drop labels
                drop = torch.rand(slice_size, generator=g) < self.recipe.teacher.cond_drop_prob
                y = torch.where(drop, torch.full_like(y, self.null), y)
            else:
                y = None
            x0, noise, t, y = (shard(v, rank, P) for v in (x0, noise, t, y))
            dev = acc.device
            with acc.accumulate(unet):
                loss = self.den.loss(x0.to(dev), noise.to(dev), t.to(dev), y.to(dev) if y is not None else None).mean()
                acc.backward(loss)
                grad_norm = None
                if acc.sync_gradients:
                    grad_norm = acc.clip_grad_norm_(unet.parameters(), tc.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        gn = grad_norm.detach() if isinstance(grad_norm, torch.Tensor) else float("nan" if grad_norm is None else grad_norm)
        return {"loss": torch.stack(losses).mean(), "grad_norm": gn}

    def log_extras(self) -> dict:
        return {"lr": self.lr_sched.get_last_lr()[0]}

    def postfix(self, vals: dict) -> dict:
        return {"loss": f"{vals['loss']:.4f}"}

    def sample(self, step: int) -> Optional[dict]:
        d = self.recipe.data
        self.raw.eval()
        sample_grid(self.raw, self.noise_scheduler, self.num_classes, d.resolution, d.channels,
                    self.engine.run_dir / "samples" / f"step-{step:07d}.png", seed=self.tc.seed,
                    class_names=self.data.class_names)
        self.raw.train()
        return None

    def finish(self) -> None:
        engine, recipe = self.engine, self.recipe
        if not engine.is_main:
            return
        final = copy.deepcopy(self.raw).eval()
        self.ema.copy_to(final.parameters())
        names = self.data.class_names if self.num_classes else None
        pipe = export_pipeline(final, self.noise_scheduler, engine.run_dir, names)  # diffusers' layout: at output_dir
        rows = []
        if recipe.eval.num_samples > 0:
            from ..eval.evaluate import evaluate_pipeline

            rows = evaluate_pipeline(pipe, recipe.eval, recipe.data, engine.run_dir / "eval", sweep_guidance=True)
        from ..cards import hardware, run_facts, teacher_card

        card = teacher_card(recipe, final, rows, *run_facts(engine.run_dir), hardware())
        card.save(engine.run_dir / "README.md")
        from .report import write_teacher_report

        logger.info(f"report: {write_teacher_report(recipe, engine.run_dir, rows, self.num_classes, names)}")


def train_teacher(recipe) -> Path:
    return Engine(recipe).fit(TeacherTrainer(recipe))
