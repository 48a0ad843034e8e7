"""Train a pixel-space diffusion teacher: one readable loop on accelerate.

Data flow per optimizer step: global batch indices (EpochSampler) -> images/labels -> noise,
timesteps and label dropout drawn for the whole global batch from generator(seed, step) ->
this process's shard -> `Denoiser.loss` (B,) -> backward under `accelerator.accumulate` ->
clip, AdamW, LR schedule, EMA. Checkpoints every `checkpoint_every` steps; sample grids every
`sample_every`; the EMA weights are exported as a `DistillPipeline` and evaluated at the end.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from ..data import load_images
from ..errors import DistillError
from .denoiser import Denoiser
from .pipelines import DistillPipeline
from ..engine.run_dir import MetricsLog, prepare_run_dir
from .sampling import make_scheduler, sample
from .teachers import TEACHERS, build_noise_scheduler, load_teacher
from ..viz import save_grid, upscale_for_view
from ..engine.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from ..engine.accelerator import (
    EpochSampler, generator, make_accelerator, make_ema, make_lr_scheduler, micro_batch_size, progress, shard)


def build_teacher(recipe, num_classes):
    """(unet, noise_scheduler) from scratch or from `teacher.pretrained`."""
    cfg = recipe.teacher
    if cfg.pretrained:
        pipe = load_teacher(cfg.pretrained)
        return pipe.unet, DDPMScheduler.from_config(pipe.scheduler.config)
    if cfg.kind not in TEACHERS:
        raise DistillError(f"teacher.kind: unknown teacher '{cfg.kind}' (choose from {', '.join(TEACHERS)})")
    unet = TEACHERS[cfg.kind](cfg, recipe.data.resolution, recipe.data.channels, num_classes)
    return unet, build_noise_scheduler(cfg)


@torch.no_grad()
def sample_grid(unet, noise_scheduler, num_classes, resolution, channels, path, steps=25, seed=0, per_class=8):
    """A grid with one column per class (rows: seeds), sampled with DDIM."""
    k = num_classes or 10
    labels = torch.arange(k).repeat(per_class) if num_classes else None
    device = next(unet.parameters()).device
    noise = torch.randn(k * per_class, channels, resolution, resolution, generator=generator(seed, "grid"))
    sched = make_scheduler("ddim", noise_scheduler.config)
    x = sample(unet, sched, noise.to(device), labels.to(device) if labels is not None else None, steps)
    return save_grid(x, path, nrow=k, scale=upscale_for_view(resolution))


def export_pipeline(unet, noise_scheduler, path: Path) -> DistillPipeline:
    pipe = DistillPipeline(unet=unet, scheduler=make_scheduler("ddim", noise_scheduler.config))
    pipe.save_pretrained(str(path))
    return pipe


def train_teacher(recipe) -> Path:
    tc = recipe.train
    run_dir = Path(recipe.output_dir)
    accelerator = make_accelerator(tc, run_dir)
    resume = resolve_resume(run_dir, tc.resume_from_checkpoint)
    prepare_run_dir(recipe, resuming=bool(tc.resume_from_checkpoint), is_main=accelerator.is_main_process)
    data = load_images(recipe.data)
    num_classes = data.num_classes if (recipe.teacher.class_conditional and data.labels is not None) else None
    P, rank = accelerator.num_processes, accelerator.process_index
    A = tc.gradient_accumulation_steps
    micro_batch_size(tc.batch_size, A, P)  # validates divisibility

    torch.manual_seed(tc.seed)  # weight init
    unet, noise_scheduler = build_teacher(recipe, num_classes)
    ema = make_ema(unet.parameters(), tc, model_cls=type(unet), model_config=unet.config)
    opt = torch.optim.AdamW(unet.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                            weight_decay=tc.weight_decay)
    lr_sched = make_lr_scheduler(opt, tc)
    step = 0
    if resume is not None:
        step = load_checkpoint(resume, {"unet": unet}, {"optimizer": opt, "lr_scheduler": lr_sched, "ema": ema})["step"]
        accelerator.print(f"resumed from {resume} at step {step}")
    unet, opt = accelerator.prepare(unet, opt)
    ema.to(accelerator.device)
    raw = accelerator.unwrap_model(unet)
    null = num_classes  # the null label index equals the number of real classes

    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=step, enabled=accelerator.is_main_process)
    if accelerator.is_main_process:
        accelerator.init_trackers("logs")
        if step == 0:
            log.log(0, dataset_size=len(data), processes=accelerator.num_processes)
    sampler = EpochSampler(len(data), tc.seed)
    T = noise_scheduler.config.num_train_timesteps
    slice_size = tc.batch_size // A  # global samples per accumulation slice
    bar = progress(tc.max_steps, step, accelerator.is_local_main_process, f"teacher {recipe.name}")
    last_ckpt = None
    unet.train()
    while step < tc.max_steps:
        losses = []
        for a in range(A):
            idx = sampler.indices(step * tc.batch_size + a * slice_size, slice_size)
            x0, y = data.batch(idx)  # (n, C, H, W), (n,)
            g = generator(tc.seed, "teacher", step, a)
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, T, (slice_size,), generator=g)
            if y is not None and null is not None:  # classifier-free guidance: drop labels
                drop = torch.rand(slice_size, generator=g) < recipe.teacher.cond_drop_prob
                y = torch.where(drop, torch.full_like(y, null), y)
            else:
                y = None
            x0, noise, t, y = (shard(v, rank, P) for v in (x0, noise, t, y))
            dev = accelerator.device
            with accelerator.accumulate(unet):
                loss = Denoiser.from_scheduler(unet, noise_scheduler).loss(x0.to(dev), noise.to(dev), t.to(dev),
                                      y.to(dev) if y is not None else None).mean()
                accelerator.backward(loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(unet.parameters(), tc.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        loss = torch.stack(losses).mean()
        if not torch.isfinite(loss):
            where = f"; last good checkpoint: {last_ckpt}" if last_ckpt else ""
            raise DistillError(f"non-finite loss at step {step}{where}")
        lr_sched.step()
        ema.step(raw.parameters())
        step += 1
        bar.update(1)

        if step % tc.log_every == 0 or step == tc.max_steps:
            loss_all = accelerator.reduce(loss, reduction="mean").item()
            gn = float(grad_norm) if grad_norm is not None else float("nan")
            row = log.log(step, loss=loss_all, grad_norm=gn, lr=lr_sched.get_last_lr()[0])
            accelerator.log({k: v for k, v in row.items() if isinstance(v, float)}, step=step)
            bar.set_postfix(loss=f"{loss_all:.4f}")
        if accelerator.is_main_process and (step % tc.sample_every == 0 or step == tc.max_steps):
            ema.store(raw.parameters())
            ema.copy_to(raw.parameters())
            raw.eval()
            sample_grid(raw, noise_scheduler, num_classes, recipe.data.resolution, recipe.data.channels,
                        run_dir / "samples" / f"step-{step:07d}.png", seed=tc.seed)
            raw.train()
            ema.restore(raw.parameters())
        interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
        if step % tc.checkpoint_every == 0 or step == tc.max_steps or interrupted:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                last_ckpt = save_checkpoint(run_dir, step, {"unet": raw},
                                            {"optimizer": opt.optimizer, "lr_scheduler": lr_sched, "ema": ema},
                                            total_limit=tc.checkpoints_total_limit)
        if interrupted:
            bar.close()
            accelerator.print(f"interrupted at step {step} (train.interrupt_at); resume with "
                              f"train.resume_from_checkpoint=latest")
            accelerator.end_training()
            return run_dir
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = copy.deepcopy(raw).eval()
        ema.copy_to(final.parameters())
        pipe = export_pipeline(final, noise_scheduler, run_dir / "pipeline")
        if recipe.eval.num_samples > 0:
            from ..eval.evaluate import evaluate_pipeline

            evaluate_pipeline(pipe, recipe.eval, recipe.data, run_dir / "eval")
    accelerator.end_training()
    return run_dir
