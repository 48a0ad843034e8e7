"""Adversarial Diffusion Distillation (Sauer et al. 2023): one readable loop on accelerate.

Per optimizer step, with x0 real images, y labels, s a student timestep, x_s = alpha_s x0 + sigma_s eps:
  D phase (d_steps times): fake = sg(student_x0(x_s, s));
      L_D = adv.d_loss(D(x0), D(fake)) + gamma/2 * R1(D, features of x0)          (Eq. 2-3, ADD)
  G phase: fake = student_x0(x_s, s);
      L_adv = adv.g_loss(D(fake))
      x_t = alpha_t sg(fake) + sigma_t eps',  target = teacher_cfg_x0(x_t, t)
      L_distill = c(t) || fake - sg(target) ||^2                                     (Eq. 4-5, ADD)
      L_G = adv_weight * L_adv + lambda * L_distill [+ lambda_dmd * L_dmd]
  Optional distribution matching (DMD2, Yin et al. 2024), lambda_dmd > 0: a fake score network
  mu_fake (initialised from the teacher) takes one denoising step on sg(fake) per D update, and
      L_dmd = 0.5 || fake - sg(fake - grad) ||^2,  grad = (mu_fake(x_t) - target) / mean|fake - target|
  With backbone fake_score (DMD2 Sec. 4.3) the heads sit on mu_fake's encoder, and L_D (weighted
  fake_score_disc_weight) trains that encoder beside its denoising loss, in the same optimizer step.
All randomness is drawn for the global batch from generator(seed, step, ...) and sharded, so a
run on P processes takes the same step as one process on the same global batch.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path

import torch
from diffusers import DDPMScheduler, LCMScheduler

from ..data import load_images
from ..discriminator import NUM_RANDOM, Discriminator, build_backbone
from ..errors import DistillError, RecipeError
from ..gan.losses import get_adv_loss
from ..diffusion.losses import DISTILL_WEIGHTINGS, alpha_sigma, diffusion_loss, distillation_loss, dmd_loss, nfsd_target, pred_x0
from ..diffusion.pipelines import DistillPipeline
from ..engine.run_dir import MetricsLog, prepare_run_dir
from ..diffusion.sampling import model_output, null_label
from ..diffusion.teachers import load_teacher
from .adversarial import check_finite, d_update, g_metrics, log_step, r1_gamma_at
from ..engine.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
from ..engine.accelerator import (
    EpochSampler, generator, make_accelerator, make_ema, make_lr_scheduler, micro_batch_size, progress, shard)
from .monitor import coverage_check


def student_x0(student, noise_scheduler, x_s, s, y):
    """The student's clean-image estimate from x_s at student timestep s: (B, C, H, W)."""
    return pred_x0(noise_scheduler, x_s, s, student(x_s, s, class_labels=y).sample)


def student_timestep_index(k: int, weights, n: int, g) -> torch.Tensor:
    """(n,) indices into the k student timesteps: uniform (ADD) or drawn by `weights` (k,). The uniform
    draw is a randint, the random stream of runs made before the option existed."""
    if weights is None:
        return torch.randint(0, k, (n,), generator=g)
    return torch.multinomial(weights, n, replacement=True, generator=g)


def eps_from_output(noise_scheduler, x_t, t, out):
    alpha, sigma = alpha_sigma(noise_scheduler, t, x_t.device, x_t.dtype)
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return out
    if kind == "v_prediction":  # eps = alpha v + sigma x_t
        return alpha * out + sigma * x_t
    return (x_t - alpha * out) / sigma


@torch.no_grad()
def teacher_target(teacher, noise_scheduler, fake, y, t, eps, guidance, weighting):
    """(target x0 (B, C, H, W), c(t) (B, 1, 1, 1), x_t (B, C, H, W)) for the distillation loss; x_t, the
    noised sample the teacher saw, is returned for the DMD term, which queries the fake score there."""
    x_t = noise_scheduler.add_noise(fake, eps, t)
    alpha, sigma = alpha_sigma(noise_scheduler, t, fake.device, fake.dtype)
    c_t = DISTILL_WEIGHTINGS[weighting](alpha, sigma)
    if weighting == "nfsd" and y is not None:
        out = teacher(torch.cat([x_t, x_t]), torch.cat([t, t]), class_labels=torch.cat([y, torch.full_like(y, null_label(teacher))])).sample
        e_c, e_u = eps_from_output(noise_scheduler, torch.cat([x_t, x_t]), torch.cat([t, t]), out).chunk(2)
        return nfsd_target(fake, x_t, alpha, sigma, e_c, e_u, guidance, t), c_t, x_t
    out = model_output(teacher, x_t, t, y, guidance)
    return pred_x0(noise_scheduler, x_t, t, out), c_t, x_t


def student_scheduler(noise_scheduler, student_timesteps) -> LCMScheduler:
    """x0-then-renoise sampling at the student timesteps (as ADD samples; diffusers' LCMScheduler
    with original_inference_steps = len(student_timesteps) gives 999, 749, 499, 249 for 4)."""
    return LCMScheduler.from_config(noise_scheduler.config, original_inference_steps=len(student_timesteps),
                                    timestep_spacing="trailing")


def resolve_teacher_path(spec: str) -> str:
    if spec.startswith("shipped:"):
        from ..eval.classifier import ASSETS

        return str(ASSETS / "teachers" / spec.split(":", 1)[1])
    return spec


def train_distill(recipe) -> Path:
    tc, dc = recipe.train, recipe.distill
    if not dc.teacher:
        raise RecipeError("recipe key 'distill.teacher' is required (an exported teacher pipeline)")
    run_dir = Path(recipe.output_dir)
    accelerator = make_accelerator(tc, run_dir)
    resume = resolve_resume(run_dir, tc.resume_from_checkpoint)
    prepare_run_dir(recipe, resuming=bool(tc.resume_from_checkpoint), is_main=accelerator.is_main_process)
    tpipe = load_teacher(resolve_teacher_path(dc.teacher))
    teacher = tpipe.unet.requires_grad_(False).eval()
    ns = DDPMScheduler.from_config(tpipe.scheduler.config)
    T = ns.config.num_train_timesteps
    if any(not 0 <= s < T for s in dc.student_timesteps):
        raise RecipeError(f"distill.student_timesteps must lie in [0, {T - 1}]")
    if any(s not in dc.student_timesteps for s in dc.disc_timesteps):
        raise RecipeError(f"distill.disc_timesteps {dc.disc_timesteps} must be among distill.student_timesteps")
    if dc.r1_every < 1:
        raise RecipeError(f"distill.r1_every must be >= 1, got {dc.r1_every}")
    if (w := dc.student_timestep_weights) and (len(w) != len(dc.student_timesteps) or min(w) < 0 or sum(w) <= 0):
        raise RecipeError(f"distill.student_timestep_weights {w} must be {len(dc.student_timesteps)} non-negative "
                          "numbers (one per student timestep), not all zero")
    data_cfg = dataclasses.replace(recipe.data, resolution=teacher.config.sample_size, channels=teacher.config.in_channels)
    data = load_images(data_cfg)
    num_classes = null_label(teacher)
    if num_classes is not None and data.labels is None:
        raise DistillError(f"{data_cfg.source}: the teacher is class-conditional but the data has no labels")
    P, rank, A = accelerator.num_processes, accelerator.process_index, tc.gradient_accumulation_steps
    micro_batch_size(tc.batch_size, A, P)
    if dc.lambda_dmd > 0 and dc.distill_weighting == "nfsd":
        raise RecipeError("distill.lambda_dmd needs the teacher's x0 estimate: use distill_weighting exponential or sds")

    if dc.backbone == "fake_score" and accelerator.num_processes > 1:
        raise RecipeError("distill.backbone=fake_score runs in one process only (the fake score network would sit in two "
                          "DDP wrappers): use distill.backbone=teacher for multi-process runs")

    torch.manual_seed(tc.seed)
    student = copy.deepcopy(teacher).requires_grad_(True).train()  # initialised from the teacher
    # DMD2's fake score network: the teacher's architecture and weights (no random draws: the seed stream is unchanged)
    fake_score = copy.deepcopy(teacher).requires_grad_(True).train() if dc.lambda_dmd > 0 else None
    backbone = build_backbone(dc.backbone, teacher, ns, dc.backbone_layers or None, dc.backbone_pretrained,
                              dc.backbone_img_size, fake_score=fake_score)
    disc = Discriminator(backbone, num_classes, dc.head_channels, dc.spectral_norm, dc.augment, head_norm=dc.head_norm,
                         head_sets=len(dc.student_timesteps) if dc.disc_heads_per_timestep else 1)
    ema = make_ema(student.parameters(), tc, model_cls=type(student), model_config=student.config)
    betas = (dc.adam_beta1, dc.adam_beta2)
    opt_g = torch.optim.AdamW(student.parameters(), lr=tc.learning_rate, betas=betas, weight_decay=tc.weight_decay)
    opt_d = torch.optim.AdamW(disc.heads.parameters(), lr=dc.d_learning_rate, betas=betas)
    models, optims = {"student": student, "heads": disc.heads}, {"optimizer_g": opt_g, "optimizer_d": opt_d}
    opt_f = None
    if fake_score is not None:  # with backbone fake_score its encoder also takes the discriminator loss (DMD2)
        opt_f = torch.optim.AdamW(fake_score.parameters(), lr=dc.fake_learning_rate, betas=betas)
        models["fake_score"], optims["optimizer_fake"] = fake_score, opt_f
    lr_sched = make_lr_scheduler(opt_g, tc)
    step = 0
    if resume is not None:
        step = load_checkpoint(resume, models, {**optims, "lr_scheduler": lr_sched, "ema": ema})["step"]
        accelerator.print(f"resumed from {resume} at step {step}")
    student, disc, opt_g, opt_d = accelerator.prepare(student, disc, opt_g, opt_d)
    if fake_score is not None:
        fake_score, opt_f = accelerator.prepare(fake_score, opt_f)
    teacher.to(accelerator.device)
    ema.to(accelerator.device)
    raw_student, raw_disc = accelerator.unwrap_model(student), accelerator.unwrap_model(disc)
    adv = get_adv_loss(dc.adv_loss)
    ts = torch.tensor(dc.student_timesteps, dtype=torch.long)
    p_s = torch.tensor(dc.student_timestep_weights, dtype=torch.float64) if dc.student_timestep_weights else None
    dev = accelerator.device
    # the adversarial game on outputs of the disc_timesteps S_D only: weight |S| / |S_D| there, 0 elsewhere
    # (a constant, not a per-batch count, so P processes take the step one process takes); None: all steps
    ts_d = torch.tensor(dc.disc_timesteps, dtype=torch.long, device=dev)
    d_weight = (lambda s: torch.isin(s, ts_d).float() * (len(ts) / len(ts_d))) if dc.disc_timesteps else (lambda s: None)

    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=step, enabled=accelerator.is_main_process)
    if accelerator.is_main_process:
        accelerator.init_trackers("logs")
        if step == 0:
            log.log(0, dataset_size=len(data), processes=accelerator.num_processes, lr=tc.learning_rate,
                    lr_d=dc.d_learning_rate)
    sampler = EpochSampler(len(data), tc.seed)
    n = tc.batch_size // A  # global samples per accumulation slice
    bar = progress(tc.max_steps, step, accelerator.is_local_main_process, f"distill {recipe.name}")
    last_ckpt = None

    def draw(tag, k, a):
        """Global-batch inputs for one micro step, sharded to this process."""
        g = generator(tc.seed, "distill", step, tag, k, a)
        x0, y = data.batch(sampler.indices((step * (dc.d_steps + 1) + k) * tc.batch_size + a * n, n))
        i_s = student_timestep_index(len(ts), p_s, n, g)  # s = ts[i_s]
        s = ts[i_s]
        eps = torch.randn(x0.shape, generator=g)
        t_d = torch.randint(dc.disc_t_min, dc.disc_t_max + 1, (n,), generator=g)
        noise_d = torch.randn((2,) + x0.shape, generator=g)
        u = torch.rand(2, n, NUM_RANDOM, generator=g)
        t = torch.randint(dc.distill_t_min, dc.distill_t_max + 1, (n,), generator=g)
        eps2 = torch.randn(x0.shape, generator=g)
        out = dict(x0=x0, y=y, s=s, eps=eps, t_d=t_d, noise_d=noise_d.transpose(0, 1), u=u.transpose(0, 1), t=t, eps2=eps2,
                   head=i_s if dc.disc_heads_per_timestep else None)
        if fake_score is not None:  # drawn last: the draws above do not depend on lambda_dmd
            out.update(t_f=torch.randint(0, T, (n,), generator=g), eps_f=torch.randn(x0.shape, generator=g))
        return {k_: (shard(v, rank, P).to(dev) if v is not None else None) for k_, v in out.items()}

    while step < tc.max_steps:
        m = {}
        with accelerator.autocast():  # --mixed_precision bf16/fp16: the frozen teacher too (prepared models already are)
            # ---- discriminator phase
            for k in range(dc.d_steps):
                opt_d.zero_grad(set_to_none=True)
                if opt_f is not None:
                    opt_f.zero_grad(set_to_none=True)
                for a in range(A):
                    b = draw("d", k, a)
                    with torch.no_grad():
                        fake = student_x0(student, ns, ns.add_noise(b["x0"], b["eps"], b["s"]), b["s"], b["y"])
                    with accelerator.accumulate(disc):
                        y2 = torch.cat([b["y"], b["y"]]) if b["y"] is not None else None
                        d_update(accelerator, disc, raw_disc.heads, opt_d, adv, b["x0"], fake, y2, b,
                                 r1_gamma_at(dc, step), m, d_weight(b["s"]), dc.fake_score_disc_weight)
                    if fake_score is not None:  # the fake score learns the student's distribution (DMD2)
                        with accelerator.accumulate(fake_score):
                            loss_f = diffusion_loss(fake_score, ns, fake, b["eps_f"], b["t_f"], b["y"]).mean()
                            accelerator.backward(loss_f)
                            opt_f.step()
                        m["loss_fake_score"] = loss_f.detach()
            # ---- student phase
            opt_g.zero_grad(set_to_none=True)
            if dc.backbone == "fake_score":  # L_adv reaches the image through its encoder: no weight gradients there
                fake_score.requires_grad_(False)
            for a in range(A):
                b = draw("g", dc.d_steps, a)
                with accelerator.accumulate(student):
                    fake = student_x0(student, ns, ns.add_noise(b["x0"], b["eps"], b["s"]), b["s"], b["y"])
                    loss_adv = torch.zeros(fake.shape[0], device=dev)
                    if dc.adv_weight > 0:
                        fake_logits, _ = disc(fake, b["y"], b["t_d"], b["noise_d"][:, 1], b["u"][:, 1], head=b["head"])
                        loss_adv = adv.g_loss(fake_logits)
                        if (w_adv := d_weight(b["s"])) is not None:  # only the outputs the discriminator judges
                            loss_adv = loss_adv * w_adv
                    target, c_t, x_t = teacher_target(teacher, ns, fake.detach(), b["y"], b["t"], b["eps2"],
                                                      dc.teacher_guidance, dc.distill_weighting)
                    loss_distill = distillation_loss(fake, target, c_t)
                    loss_dmd = torch.zeros_like(loss_distill)
                    if fake_score is not None:
                        with torch.no_grad():  # at the x_t the teacher's target came from
                            fake_x0 = pred_x0(ns, x_t, b["t"], fake_score(x_t, b["t"], class_labels=b["y"]).sample)
                        loss_dmd = dmd_loss(fake, target, fake_x0)
                        m["loss_dmd"] = loss_dmd.mean().detach()
                    loss_g = (dc.adv_weight * loss_adv + dc.lambda_distill * loss_distill + dc.lambda_dmd * loss_dmd).mean()
                    accelerator.backward(loss_g)
                    if accelerator.sync_gradients:
                        m["grad_norm_g"] = float(accelerator.clip_grad_norm_(student.parameters(), tc.max_grad_norm))
                    opt_g.step()
                opt_d.zero_grad(set_to_none=True)  # the G pass left gradients on the heads
            if dc.backbone == "fake_score":
                fake_score.requires_grad_(True)
        m.update(g_metrics(loss_adv, loss_distill, loss_g))
        check_finite(m, step, last_ckpt)
        lr_sched.step()
        ema.step(raw_student.parameters())
        step += 1
        bar.update(1)

        if step % tc.log_every == 0 or step == tc.max_steps:
            log_step(accelerator, log, bar, step, m, lr_sched.get_last_lr()[0], dc.d_learning_rate)
        if accelerator.is_main_process and dc.coverage_classifier and (step % dc.coverage_every == 0 or step == tc.max_steps):
            ema.store(raw_student.parameters())
            ema.copy_to(raw_student.parameters())
            cov = coverage_check(raw_student, ns, dc, data, run_dir / "samples" / f"step-{step:07d}.png", tc.seed)
            ema.restore(raw_student.parameters())
            log.log(step, **cov)
            if cov.get("collapse_warning"):
                warnings.warn(f"step {step}: possible mode collapse: {cov['collapse_warning']}", stacklevel=1)
        interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
        if step % tc.checkpoint_every == 0 or step == tc.max_steps or interrupted:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                last_ckpt = save_checkpoint(run_dir, step, {k: accelerator.unwrap_model(v) for k, v in models.items()},
                                            {**{k: getattr(o, "optimizer", o) for k, o in optims.items()},
                                             "lr_scheduler": lr_sched, "ema": ema}, total_limit=tc.checkpoints_total_limit)
        if interrupted:
            bar.close()
            accelerator.end_training()
            return run_dir
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = copy.deepcopy(raw_student).eval()
        ema.copy_to(final.parameters())
        DistillPipeline(unet=final, scheduler=student_scheduler(ns, dc.student_timesteps)).save_pretrained(
            str(run_dir / "pipeline"))
    accelerator.end_training()
    return run_dir


def run_distill(recipe) -> Path:
    """`distill run` for task: distill -> train, then evaluate and write report.md (main process)."""
    from accelerate import PartialState

    run_dir = train_distill(recipe)
    if recipe.eval.num_samples > 0 and (run_dir / "pipeline").is_dir() and PartialState().is_main_process:
        from .report import write_distill_report

        print(f"report: {write_distill_report(recipe, run_dir)}")
    return run_dir
