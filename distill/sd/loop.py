"""Latent Adversarial Diffusion Distillation of a Stable Diffusion teacher (SD 1.x/2.x, SDXL) into
a 1-4 step text-to-image student (SD-Turbo style). Same structure as `training/distill.py`.

Per optimizer step, with z0 latents (real images encoded by the VAE, or cached teacher samples),
c their captions' text conditioning, s a student timestep, z_s = alpha_s z0 + sigma_s eps:
  D phase (d_steps times): fake = sg(student_z0(z_s, s, c));
      L_D = adv.d_loss(D(z0, c), D(fake, c)) + gamma/2 * R1
  G phase: fake = student_z0(z_s, s, c);
      L_adv = adv.g_loss(D(fake, c))
      z_t = alpha_t sg(fake) + sigma_t eps',  target = teacher_cfg_z0(z_t, t, c, w)
      L_distill = c(t) || dec(fake) - dec(sg(target)) ||^2   (dec = VAE decoder: loss_space pixel,
                                                              as ADD; identity: loss_space latent)
      L_G = adv_weight * L_adv + lambda * L_distill
D = frozen features (teacher UNet encoder at a sampled noise level, text-conditioned (LADD), or a
timm model on decoded images (ADD)) + trainable patch heads conditioned on the pooled text
embedding by projection. With LoRA (sd.lora_rank > 0) the student is the teacher UNet plus
adapters; the teacher and the discriminator features run the same UNet with adapters disabled,
so the UNet is held in memory once. All randomness is drawn for the global batch from
generator(seed, step, ...) and sharded: resuming, or running on P processes, takes the same steps.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from diffusers import DDPMScheduler

from ..discriminator import NUM_RANDOM, Discriminator, build_backbone
from ..errors import DistillError, RecipeError
from ..gan.losses import get_adv_loss
from ..diffusion.losses import DISTILL_WEIGHTINGS, alpha_sigma, distillation_loss, nfsd_target, pred_x0
from ..engine.run_dir import MetricsLog, prepare_run_dir
from .data import LatentSet, encode_images, load_captioned_images, prompt_list, synthetic_latents
from .export import export_student
from .features import DecodedFeatures, SDTeacherFeatures
from .lora import LoraWeights, as_teacher, add_lora, unsharded_copy
from .teacher import TextCond, cfg_out, encode_prompts, load_sd_teacher, make_decoder, null_cond, unet_out
from ..distillation.adversarial import check_finite, d_update, g_metrics, log_step, r1_gamma_at
from ..engine.checkpoint import gathered, is_fsdp, load_checkpoint, load_optimizers, resolve_resume, save_all
from ..engine.accelerator import (
    EpochSampler, generator, make_accelerator, make_ema, make_lr_scheduler, micro_batch_size, progress, shard,
    whole_fsdp_unit)
from ..distillation.loop import eps_from_output

DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def student_z0(student, ns, z_s, s, cond: TextCond):
    return pred_x0(ns, z_s, s, unet_out(student, z_s, s, cond).float())


@torch.no_grad()
def teacher_target(teacher, ns, fake, cond, uncond, t, eps, guidance, weighting):
    """(target z0, c(t)) with the teacher's classifier-free guided estimate at z_t."""
    z_t = ns.add_noise(fake, eps, t)
    alpha, sigma = alpha_sigma(ns, t, fake.device, fake.dtype)
    c_t = DISTILL_WEIGHTINGS[weighting](alpha, sigma)
    if weighting == "nfsd":
        out = unet_out(teacher, torch.cat([z_t, z_t]), torch.cat([t, t]), TextCond.cat(cond, uncond)).float()
        e_c, e_u = eps_from_output(ns, torch.cat([z_t, z_t]), torch.cat([t, t]), out).chunk(2)
        return nfsd_target(fake, z_t, alpha, sigma, e_c, e_u, guidance, t), c_t
    return pred_x0(ns, z_t, t, cfg_out(teacher, z_t, t, cond, uncond, guidance).float()), c_t


def load_latents(recipe, tpipe, run_dir: Path, is_main: bool) -> LatentSet:
    sc, R = recipe.sd, recipe.data.resolution
    if sc.input == "real":
        images, caps = load_captioned_images(recipe.data, sc)
        return LatentSet(encode_images(tpipe.vae, images), caps)
    prompts = prompt_list(recipe.data, sc)
    cache = Path(sc.synthetic_cache) if sc.synthetic_cache else run_dir / "cache"
    return synthetic_latents(tpipe, prompts, sc.synthetic_count, sc.synthetic_steps, recipe.distill.teacher_guidance,
                             R, recipe.train.seed, cache, recipe.distill.teacher)


def check_distributed(accelerator, tc) -> None:
    """Fail early on launches this loop does not support (one line each)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise DistillError("DeepSpeed is not supported by sd-distill (it prepares two models and two optimizers; "
                           "accelerate needs one DeepSpeed engine per model): use DDP or FSDP")
    if is_fsdp(accelerator):
        if not accelerator.is_fsdp2:
            raise DistillError("sd-distill under FSDP needs fsdp_version: 2 (see recipes/accelerate/fsdp.yaml)")
        if tc.ema_decay > 0:
            raise DistillError("train.ema_decay > 0 is not supported under FSDP (the EMA would hold sharded "
                               "parameters): set train.ema_decay: 0")


def train_sd_distill(recipe) -> Path:
    tc, dc, sc = recipe.train, recipe.distill, recipe.sd
    if not dc.teacher:
        raise RecipeError("recipe key 'distill.teacher' is required (a Stable Diffusion pipeline: Hub id or folder)")
    pixel_only = {"lambda_dmd": dc.lambda_dmd > 0, "disc_timesteps": bool(dc.disc_timesteps),
                  "disc_heads_per_timestep": dc.disc_heads_per_timestep,
                  "student_timestep_weights": bool(dc.student_timestep_weights), "backbone": dc.backbone == "fake_score"}
    if unsupported := [k for k, on in pixel_only.items() if on]:
        raise RecipeError(f"distill.{unsupported[0]} is implemented in the pixel loop (task: distill) only, not sd-distill")
    run_dir = Path(recipe.output_dir)
    accelerator = make_accelerator(tc, run_dir)
    check_distributed(accelerator, tc)
    resume = resolve_resume(run_dir, tc.resume_from_checkpoint)
    prepare_run_dir(recipe, resuming=bool(tc.resume_from_checkpoint), is_main=accelerator.is_main_process)
    if sc.build_tiny:
        if accelerator.is_main_process:
            from .tiny import build_tiny_sd, build_tiny_sdxl

            (build_tiny_sdxl if sc.tiny_kind == "sdxl" else build_tiny_sd)(dc.teacher, recipe.data.resolution)
        accelerator.wait_for_everyone()
    dev, wdt = accelerator.device, DTYPES[tc.mixed_precision]
    tpipe = load_sd_teacher(dc.teacher, sc.revision, sc.variant)
    tpipe.to(dev)
    for name in ("text_encoder", "text_encoder_2"):  # frozen: held in the compute dtype
        if getattr(tpipe, name, None) is not None:
            getattr(tpipe, name).to(dtype=wdt)
    if wdt == torch.bfloat16:  # fp16 VAEs overflow (SDXL); bf16 is safe
        tpipe.vae.to(dtype=wdt)
    ns = DDPMScheduler.from_config(tpipe.scheduler.config)
    T, R = ns.config.num_train_timesteps, recipe.data.resolution
    if any(not 0 <= s < T for s in dc.student_timesteps):
        raise RecipeError(f"distill.student_timesteps must lie in [0, {T - 1}]")
    if dc.r1_every < 1:
        raise RecipeError(f"distill.r1_every must be >= 1, got {dc.r1_every}")
    f = 2 ** (len(tpipe.vae.config.block_out_channels) - 1)
    if R % f:
        raise RecipeError(f"data.resolution={R} must be a multiple of the VAE factor {f}")
    decode = make_decoder(tpipe, sc.taesd)
    with accelerator.autocast():  # bf16 text encoders / VAE with the fp32 UNet (synthetic samples)
        data = load_latents(recipe, tpipe, run_dir, accelerator.is_main_process)
    P, rank, A = accelerator.num_processes, accelerator.process_index, tc.gradient_accumulation_steps
    micro_batch_size(tc.batch_size, A, P)

    torch.manual_seed(tc.seed)
    if sc.lora_rank > 0:  # one UNet: frozen base = teacher, base + adapters = student
        student = teacher = tpipe.unet.to(dtype=wdt)
        add_lora(student, sc.lora_rank, sc.lora_alpha, sc.lora_target_modules, sc.lora_dropout)
        for p in student.parameters():
            if p.requires_grad:
                p.data = p.data.float()  # trainable adapters in fp32 (mixed precision)
    else:
        teacher = tpipe.unet
        student = copy.deepcopy(teacher).float().requires_grad_(True)
        teacher.to(dtype=wdt)
    if sc.gradient_checkpointing:
        student.enable_gradient_checkpointing()
    student.train()
    trainable = [p for p in student.parameters() if p.requires_grad]
    if dc.backbone == "teacher":
        backbone = SDTeacherFeatures(teacher, ns)
    else:
        backbone = DecodedFeatures(build_backbone(dc.backbone, None, ns, dc.backbone_layers or None,
                                                  dc.backbone_pretrained, dc.backbone_img_size), decode).to(dev)
    with accelerator.autocast():
        uncond1 = null_cond(tpipe, 1, R, dev)  # the teacher's unconditional input, encoded once
    disc = Discriminator(backbone, None, dc.head_channels, dc.spectral_norm, dc.augment,
                         uncond1.pooled.shape[-1] if sc.disc_text_cond else None, dc.head_norm)
    ema = make_ema(trainable, tc) if tc.ema_decay > 0 else None
    betas = (dc.adam_beta1, dc.adam_beta2)
    opt_g = torch.optim.AdamW(trainable, lr=tc.learning_rate, betas=betas, weight_decay=tc.weight_decay)
    opt_d = torch.optim.AdamW(disc.heads.parameters(), lr=dc.d_learning_rate, betas=betas)
    lr_sched = make_lr_scheduler(opt_g, tc)
    states = {"optimizer_g": opt_g, "optimizer_d": opt_d, "lr_scheduler": lr_sched, **({"ema": ema} if ema else {})}
    weights = {"student": LoraWeights(student) if sc.lora_rank > 0 else student, "heads": disc.heads}
    step, fsdp = 0, is_fsdp(accelerator)
    if resume is not None:  # weights into the unsharded modules; under FSDP the optimizers after prepare
        step = load_checkpoint(resume, weights, {k: v for k, v in states.items() if not (fsdp and k.startswith("optimizer"))})["step"]
        accelerator.print(f"resumed from {resume} at step {step}")
    student_w, opt_g = accelerator.prepare(student, opt_g)  # one model per call (FSDP2)
    with whole_fsdp_unit(accelerator):
        disc, opt_d = accelerator.prepare(disc, opt_d)
    owners = {"optimizer_g": (student_w, opt_g), "optimizer_d": (disc, opt_d)}
    if resume is not None and fsdp:
        load_optimizers(accelerator, resume, owners)
    trainable = [p for p in student_w.parameters() if p.requires_grad]  # FSDP swaps in sharded parameters
    if ema is not None:
        ema.to(dev)
    adv = get_adv_loss(dc.adv_loss)
    ts = torch.tensor(dc.student_timesteps, dtype=torch.long)

    log = MetricsLog(run_dir / "metrics.jsonl", resume_step=step, enabled=accelerator.is_main_process)
    if accelerator.is_main_process:
        accelerator.init_trackers("logs")
        if step == 0:
            log.log(0, dataset_size=len(data), processes=accelerator.num_processes, lr=tc.learning_rate, lr_d=dc.d_learning_rate,
                    trainable_params=sum(p.numel() for p in trainable))
    sampler = EpochSampler(len(data), tc.seed)
    n = tc.batch_size // A
    bar = progress(tc.max_steps, step, accelerator.is_local_main_process, f"sd-distill {recipe.name}")
    last_ckpt = None

    def draw(tag, k, a):
        g = generator(tc.seed, "sd-distill", step, tag, k, a)
        z0, caps = data.batch(sampler.indices((step * (dc.d_steps + 1) + k) * tc.batch_size + a * n, n))
        out = dict(z0=z0, s=ts[torch.randint(0, len(ts), (n,), generator=g)], eps=torch.randn(z0.shape, generator=g),
                   t_d=torch.randint(dc.disc_t_min, dc.disc_t_max + 1, (n,), generator=g),
                   noise_d=torch.randn((2,) + z0.shape, generator=g).transpose(0, 1),
                   u=torch.rand(2, n, NUM_RANDOM, generator=g).transpose(0, 1),
                   t=torch.randint(dc.distill_t_min, dc.distill_t_max + 1, (n,), generator=g),
                   eps2=torch.randn(z0.shape, generator=g))
        b = {key: shard(v, rank, P).to(dev) for key, v in out.items()}
        m_ = n // P
        b["cond"] = encode_prompts(tpipe, caps[rank * m_:(rank + 1) * m_], R, dev)
        return b

    def D(x, cond, t_d, noise, u, **kw):
        return disc(x, cond, t_d, noise, u, c=cond.pooled.float() if sc.disc_text_cond else None, **kw)

    while step < tc.max_steps:
        m = {}
        with accelerator.autocast():
            # ---- discriminator phase
            for k in range(dc.d_steps):
                opt_d.zero_grad(set_to_none=True)
                for a in range(A):
                    b = draw("d", k, a)
                    with torch.no_grad():
                        fake = student_z0(student_w, ns, ns.add_noise(b["z0"], b["eps"], b["s"]), b["s"], b["cond"])
                    with accelerator.accumulate(disc):
                        d_update(accelerator, D, accelerator.unwrap_model(disc).heads, opt_d, adv, b["z0"], fake,
                                 TextCond.cat(b["cond"], b["cond"]), b, r1_gamma_at(dc, step), m)
            # ---- student phase
            opt_g.zero_grad(set_to_none=True)
            for a in range(A):
                b = draw("g", dc.d_steps, a)
                with accelerator.accumulate(student_w):
                    fake = student_z0(student_w, ns, ns.add_noise(b["z0"], b["eps"], b["s"]), b["s"], b["cond"])
                    loss_adv = torch.zeros(fake.shape[0], device=dev)
                    if dc.adv_weight > 0:
                        loss_adv = adv.g_loss(D(fake, b["cond"], b["t_d"], b["noise_d"][:, 1], b["u"][:, 1])[0].float())
                    with as_teacher(teacher):
                        uncond = uncond1.map(lambda x: x.expand(fake.shape[0], *x.shape[1:]))
                        target, c_t = teacher_target(teacher, ns, fake.detach(), b["cond"], uncond, b["t"], b["eps2"],
                                                     dc.teacher_guidance, dc.distill_weighting)
                    if sc.loss_space == "pixel":  # through the VAE decoder (ADD)
                        with torch.no_grad():
                            target = decode(target)
                        fake_d = decode(fake)
                    else:
                        fake_d = fake
                    loss_distill = distillation_loss(fake_d, target, c_t)
                    loss_g = (dc.adv_weight * loss_adv + dc.lambda_distill * loss_distill).mean()
                    accelerator.backward(loss_g)
                    if accelerator.sync_gradients:
                        m["grad_norm_g"] = float(accelerator.clip_grad_norm_(trainable, tc.max_grad_norm))
                    opt_g.step()
                opt_d.zero_grad(set_to_none=True)
        m.update(g_metrics(loss_adv, loss_distill, loss_g))
        check_finite(m, step, last_ckpt)
        lr_sched.step()
        if ema is not None:
            ema.step(trainable)
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == tc.max_steps:
            log_step(accelerator, log, bar, step, m, lr_sched.get_last_lr()[0], dc.d_learning_rate)
        interrupted = tc.interrupt_at is not None and step >= tc.interrupt_at
        if step % tc.checkpoint_every == 0 or step == tc.max_steps or interrupted:
            last_ckpt = save_all(accelerator, run_dir, step, weights, {**states, "optimizer_g": opt_g.optimizer,
                                 "optimizer_d": opt_d.optimizer}, {k: m for k, (m, _) in owners.items()},
                                 tc.checkpoints_total_limit)
        if interrupted:
            bar.close()
            accelerator.end_training()
            return run_dir
    bar.close()
    accelerator.wait_for_everyone()
    if fsdp:  # every process gathers the shards; the main one exports a plain copy
        full = gathered(accelerator, student_w)
        student = unsharded_copy(student, full) if accelerator.is_main_process else None
    if accelerator.is_main_process:
        if ema is not None:
            ema.store(trainable)
            ema.copy_to(trainable)
        student.eval()
        export_student(run_dir / "pipeline", tpipe, student, dc.student_timesteps, sc.export_dtype)
        if ema is not None:
            ema.restore(trainable)
    accelerator.end_training()
    return run_dir


def run_sd_distill(recipe) -> Path:
    """`distill run` for task: sd-distill -> train, export, then a sample grid and report.md."""
    from accelerate import PartialState

    run_dir = train_sd_distill(recipe)
    if (run_dir / "pipeline").is_dir() and PartialState().is_main_process:
        from .report import write_sd_report

        print(f"report: {write_sd_report(recipe, run_dir)}")
    return run_dir
