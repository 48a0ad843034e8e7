"""Adversarial diffusion distillation: the one loop, for pixel and latent students alike.

Per optimizer step, with x0 real samples (images or latents), c their conditioning, s a student
timestep, x_s = alpha_s x0 + sigma_s eps, or the student's own sampler run from noise down to s with
distill.backward_simulation (every noising and x0 estimate through the Denoiser):
  D phase (discriminator.steps times): fake = sg(student_x0(x_s, s, c));
      L_D = adv.d_loss(D(x0), D(fake)) + gamma/2 * R1(D, features of x0)          (Eq. 2-3, ADD)
      with DMD: the fake score mu_fake takes one denoising step on sg(fake)          (DMD2)
  G phase: fake = student_x0(x_s, s, c);
      L_adv = adv.g_loss(D(fake))
      x_t = alpha_t sg(fake) + sigma_t eps',  target = teacher_x0(x_t, t, c, guidance)
      L_distill = c(t) || fake - sg(target) ||^2                                     (Eq. 4-5, ADD)
      L_dmd = 0.5 || fake - sg(fake - grad) ||^2, grad = (mu_fake(x_t) - target) / mean|fake - target|
      L_CD = d(f_theta(x_{t_n}, t_n), sg(f_theta-(solver(x_{t_n}), t_{n-k})))       (consistency; LCM Eq. 10)
      L_G = lambda_adv L_adv + lambda_distill L_distill + lambda_dmd L_dmd + lambda_consistency L_CD
  With only the consistency term (LCM) there is no D phase and no student pass at the student timesteps.
  distill.student_first: the G phase runs first and the first D update takes its sg(fake) (DMD2's order):
      one student forward (and one backward simulation) per step instead of two.
The space (distill.distillation.pixel.PixelSpace, distill.sd.space.LatentSpace) supplies the
teacher, the data and its conditioning, the student's weights (a copy or LoRA adapters), the
discriminator's backbone, the codec and the export. All randomness is drawn for the global batch
from rng(seed, step, ...) and sharded, so resuming, or running on P processes, takes the
steps one uninterrupted process takes. The engine (distill.engine.trainer) runs the rest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from accelerate.utils import DistributedType

from ..discriminator import NUM_RANDOM, Discriminator
from ..diffusion.trajectory import takes_target_time
from ..engine.randomness import EpochSampler, rng, shard
from ..engine.optim import grad_norm, make_ema, make_lr_scheduler
from ..engine.accelerator import micro_batch_size, whole_fsdp_unit
from ..engine.checkpoint import weights_fingerprint
from ..engine.trainer import Engine, Trainer
from ..errors import DistillError, RecipeError
from ..gan.losses import get_adv_loss
from .draws import StepDraws
from .adversarial import d_loss_and_metrics, g_metrics, pair_logits, r1_gamma_at
from ..diffusion.guided import takes_guidance
from .consistency import TargetNetwork, consistency_loss, ddim_step
from .trajectory import denoising_loss, soft_consistency_loss
from .objectives import distillation_loss, dmd_loss, teacher_target
from .recipe import check_noise_ranges
from .space import DistillationSpace


def student_timestep_index(k: int, weights, n: int, g) -> torch.Tensor:
    """(n,) indices into the k student timesteps: uniform (ADD) or drawn by `weights` (k,). A single
    timestep is a one-outcome draw: multinomial takes one uniform per sample whatever the number of
    outcomes, so [999] draws the stream [999, 749, 499, 249] weighted [1, 0, 0, 0] draws."""
    if weights is None and k > 1:
        return torch.randint(0, k, (n,), generator=g)
    w = weights if weights is not None else torch.ones(1, dtype=torch.float64)
    return torch.multinomial(w, n, replacement=True, generator=g)


def select_cond(cond, idx: torch.Tensor):
    """The conditioning of the samples `idx`: labels (B,), None, or a structure with `map` (distill.sd.teacher.TextCond)."""
    if cond is None or torch.is_tensor(cond):
        return cond[idx] if cond is not None else None
    return cond.map(lambda v: v[idx])


class DistillTrainer(Trainer):
    def __init__(self, recipe, space: DistillationSpace):
        self.recipe, self.space = recipe, space
        self.name = space.label
        self.dc, self.disc_cfg = recipe.distill, recipe.discriminator

    # ------------------------------------------------------------------ set-up
    def setup(self, engine: Engine) -> None:
        r, sp, dc, dsc, tc = self.recipe, self.space, self.dc, self.disc_cfg, self.recipe.train
        acc = self.accelerator = engine.accelerator
        self.engine, self.dev = engine, engine.device
        if not dc.teacher:
            raise RecipeError("recipe key 'distill.teacher' is required (an exported teacher pipeline or a Hub id)")
        sp.check_launch(acc)
        sp.load(engine)
        self.ts = sp.student_timesteps(dc.student_timesteps)  # (K,) in the teacher scheduler's units, checked
        check_noise_ranges(r, sp.teacher)
        self.teacher_weights = weights_fingerprint(sp.teacher.net)  # before make_student adds LoRA adapters to it
        self.P, self.rank, self.A = acc.num_processes, acc.process_index, tc.gradient_accumulation_steps
        micro_batch_size(tc.batch_size, self.A, self.P)

        torch.manual_seed(tc.seed)
        student, trainable = sp.make_student()
        self.student = sp.teacher.with_net(student)
        fake = sp.make_fake_score() if dc.lambda_dmd > 0 else None
        disc = Discriminator(sp.backbone(fake), sp.head_classes, dsc.head_channels, dsc.spectral_norm, dsc.augment,
                             sp.head_cond_dim, dsc.head_norm,
                             head_sets=len(dc.student_timesteps) if dsc.heads_per_timestep else 1)
        self.ema = make_ema(trainable, tc) if tc.ema_decay > 0 else None
        betas = (tc.adam_beta1, tc.adam_beta2)
        opt_g = torch.optim.AdamW(trainable, lr=tc.learning_rate, betas=betas, weight_decay=tc.weight_decay)
        opt_d = torch.optim.AdamW(disc.heads.parameters(), lr=dsc.learning_rate, betas=betas)
        self.models = {"student": sp.student_weights(student), "heads": disc.heads}
        self.states = {"optimizer_g": opt_g, "optimizer_d": opt_d}
        opt_f = None
        if fake is not None:  # with backbone fake_score its encoder also takes the discriminator loss (DMD2)
            opt_f = torch.optim.AdamW(fake.parameters(), lr=r.dmd.learning_rate, betas=betas)
            self.models["fake_score"], self.states["optimizer_fake"] = fake, opt_f
        self.cd_target = None  # theta- of the consistency term, restored with the student
        if dc.lambda_consistency > 0:
            if r.consistency.target_decay > 0 and acc.distributed_type == DistributedType.FSDP:
                raise RecipeError("consistency.target_decay > 0 keeps an EMA copy of the student, which FSDP shards: "
                                  "use consistency.target_decay=0 under FSDP")
            if r.consistency.kind == "ctm" and not takes_target_time(student):
                raise RecipeError(f"consistency.kind=ctm needs a trajectory student; this space's student "
                                  f"({type(student).__name__}) takes no target time: use consistency.kind=lcm")
            if r.consistency.guidance_range and not takes_guidance(student):
                raise RecipeError(f"consistency.guidance_range needs a w-conditioned student; this space's student "
                                  f"({type(student).__name__}) takes no guidance scale (pixel UNet students do)")
            self.cd_target = TargetNetwork(student, r.consistency.target_decay)
            if self.cd_target.net is not None:
                self.models["consistency_target"] = self.cd_target.net
        self.lr_sched = make_lr_scheduler(opt_g, tc)
        self.schedulers = [self.lr_sched]
        self.states["lr_scheduler"] = self.lr_sched
        if self.ema is not None:
            self.states["ema"] = self.ema
        # the optimizers' prepared models, filled in below; under FSDP the engine loads their states after set-up
        self.owners = {"optimizer_g": None, "optimizer_d": None}
        engine.restore(self.models, self.states)  # into the unsharded modules, before prepare
        if engine.resumed_state.get("teacher_weights", self.teacher_weights) != self.teacher_weights:
            raise DistillError(f"{engine.resume}: trained against other teacher weights than distill.teacher "
                               f"'{dc.teacher}' has now; resume with that teacher, or distil into a new output_dir")
        student_w, opt_g = acc.prepare(student, opt_g)  # one model per call (FSDP2)
        with whole_fsdp_unit(acc):
            disc, opt_d = acc.prepare(disc, opt_d)
        self.owners.update(optimizer_g=student_w, optimizer_d=disc)
        if fake is not None:
            fake, opt_f = acc.prepare(fake, opt_f)
        self.trainable = [p for p in student_w.parameters() if p.requires_grad]  # FSDP swaps in sharded parameters
        self.raw_student = student
        self.student_w = sp.teacher.with_net(student_w)
        self.fake_score = sp.teacher.with_net(fake) if fake is not None else None
        self.disc, self.opt_g, self.opt_d, self.opt_f = disc, opt_g, opt_d, opt_f
        self.raw_heads = acc.unwrap_model(disc).heads
        if self.ema is not None:
            self.ema.to(self.dev)
        if self.cd_target is not None and self.cd_target.net is not None:
            self.cd_target.net.to(self.dev)
        self.adv = get_adv_loss(dsc.loss)
        w = dc.timestep_weights
        self.p_s = torch.tensor(w, dtype=torch.float64) if w else None
        # the adversarial game on outputs of the disc_timesteps S_D only: weight |S| / |S_D| there, 0 elsewhere
        # (a constant, not a per-batch count, so P processes take the step one process takes); None: all steps
        ts_d = r.experimental.disc_timesteps
        self.d_weight = self.timestep_weight(ts_d, len(self.ts) / max(len(ts_d), 1))
        self.r_weight = self.timestep_weight(r.experimental.distill_timesteps)  # the regression term's 0/1 mask
        self.sampler = EpochSampler(len(sp.data), tc.seed)
        # the ADD / DMD2 terms judge the student's samples at the student timesteps; LCM alone needs neither them nor critics
        self.critics = dc.lambda_adv > 0 or dc.lambda_distill > 0 or self.fake_score is not None
        self.cd_grid = sp.teacher.solver_grid(r.consistency.solver_steps).to(self.dev) if self.cd_target else None
        self.n = tc.batch_size // self.A  # global samples per accumulation slice

    def timestep_weight(self, chosen: list, scale: float = 1.0):
        """s (B,) -> (B,) weights: `scale` on samples of the student timesteps `chosen`, 0 elsewhere; with `chosen`
        empty, None (every sample counts)."""
        if not chosen:
            return lambda s: None
        ts = self.ts[[self.dc.student_timesteps.index(c) for c in chosen]].to(self.dev)  # in the teacher's units
        return lambda s: torch.isin(s, ts).float() * scale

    def checkpoint_extra(self) -> dict:
        return {"teacher_weights": self.teacher_weights}

    def ema_parameters(self):
        return self.trainable

    def header(self) -> dict:
        return dict(dataset_size=len(self.space.data), processes=self.P, lr=self.recipe.train.learning_rate,
                    lr_d=self.disc_cfg.learning_rate, trainable_params=sum(p.numel() for p in self.trainable))

    def log_extras(self) -> dict:
        return dict(lr=self.lr_sched.get_last_lr()[0], lr_d=self.disc_cfg.learning_rate)

    def postfix(self, vals: dict) -> dict:
        shown = dict(d=f"{vals['loss_d']:.3f}", g=f"{vals['loss_g']:.3f}") if "loss_d" in vals else {}
        if "loss_consistency" in vals:
            shown["cd"] = f"{vals['loss_consistency']:.4f}"
        if "loss_distill" in vals:
            shown["dist"] = f"{vals['loss_distill']:.4f}"
        return shown

    # ------------------------------------------------------------------ one step
    def draw(self, step: int, tag: str, k: int, a: int) -> StepDraws:
        """Global-batch inputs for one micro step, sharded to this process."""
        tc, dsc, dc, n, sp = self.recipe.train, self.disc_cfg, self.dc, self.n, self.space
        g = rng(tc.seed, sp.tag, step, tag, k, a)
        x0, cond = sp.batch(self.sampler.indices((step * (dsc.steps + 1) + k) * tc.batch_size + a * n, n))
        i_s = student_timestep_index(len(self.ts), self.p_s, n, g)
        out = dict(x0=x0, s=self.ts[i_s], eps=torch.randn(x0.shape, generator=g), **self.disc_noise(g, x0.shape),
                   t=torch.randint(dc.t_min, dc.t_max + 1, (n,), generator=g),
                   eps2=torch.randn(x0.shape, generator=g), head=i_s if dsc.heads_per_timestep else None)
        if self.fake_score is not None:  # drawn last: the draws above do not depend on lambda_dmd
            out.update(t_f=torch.randint(0, sp.teacher.num_train_timesteps, (n,), generator=g),
                       eps_f=torch.randn(x0.shape, generator=g))
        if dc.backward_simulation and len(self.ts) > 1:  # the renoising of each simulated student step, (n, K-1, C, H, W)
            out.update(i_s=i_s, eps_bs=torch.randn((n, len(self.ts) - 1) + tuple(x0.shape[1:]), generator=g))
        if self.cd_grid is not None:  # drawn after every other draw: those do not depend on lambda_consistency
            k = self.recipe.consistency.skip
            out.update(n_cd=torch.randint(k, len(self.cd_grid), (n,), generator=g), eps_cd=torch.randn(x0.shape, generator=g))
            if self.recipe.consistency.kind == "ctm":  # s = t_m, m uniform in [0, n - k]
                out["m_cd"] = (torch.rand(n, generator=g) * (out["n_cd"] - k + 1)).floor().long()
            if self.recipe.consistency.guidance_range:  # w ~ U[w_min, w_max] (LCM Alg. 1)
                lo, hi = self.recipe.consistency.guidance_range
                out["w_cd"] = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        if self.recipe.experimental.teacher_t_below_s:  # t in [t_min, min(t_max, s)], the same draw rescaled
            top = (out["s"].clamp(max=dc.t_max) - dc.t_min).clamp(min=0)  # s below t_min: t = t_min
            out["t"] = dc.t_min + torch.div((out["t"] - dc.t_min) * top, max(dc.t_max - dc.t_min, 1), rounding_mode="floor")
        return StepDraws(**self.local(out), cond=sp.shard_cond(cond, self.rank, self.P, self.dev))

    def disc_noise(self, g, shape) -> dict:
        """The discriminator's draws for B = shape[0] pairs: backbone timestep t_d (B,), its noise (B, 2, C, H, W)
        and the augmentations' uniforms (B, 2, K), column 0 for the real half, 1 for the fake one."""
        n, dsc = shape[0], self.disc_cfg
        return dict(t_d=torch.randint(dsc.t_min, dsc.t_max + 1, (n,), generator=g),
                    noise_d=torch.randn((2,) + tuple(shape), generator=g).transpose(0, 1),
                    u=torch.rand(2, n, NUM_RANDOM, generator=g).transpose(0, 1))

    def local(self, out: dict) -> dict:
        """This process's shard of global-batch draws, on its device."""
        return {key: (shard(v, self.rank, self.P).to(self.dev) if v is not None else None) for key, v in out.items()}

    def student_input(self, b: StepDraws) -> torch.Tensor:
        """x_s (B, C, H, W), the student's input at its timestep s = s_i: data noised to s (ADD), or with
        distill.backward_simulation the student's own sampler run from noise through s_0 .. s_{i-1}, each step's x0
        renoised to the next timestep with fresh noise (DMD2 Sec. 4.5: multi-step students train on the inputs they
        meet when sampling)."""
        if b.eps_bs is None:
            return self.student_w.add_noise(b.x0, b.eps, b.s)
        i_s, ts = b.i_s, self.ts.to(b.x0.device)
        with torch.no_grad():
            x = self.student_w.add_noise(b.x0, b.eps, ts[0].expand(len(i_s)))  # every chain starts at s_0
            for j in range(int(i_s.max())):
                idx = torch.nonzero(i_s > j).squeeze(1)  # chains that go on past s_j
                x0_j = self.student_w.x0(x[idx], ts[j].expand(len(idx)), select_cond(b.cond, idx))
                x[idx] = self.student_w.add_noise(x0_j, b.eps_bs[idx, j], ts[j + 1].expand(len(idx))).to(x.dtype)
        return x

    def D(self, x, cond, t_d, noise, u, **kw):
        """The discriminator through the space (head conditioning, logits' precision)."""
        return self.space.discriminate(self.disc, x, cond, t_d, noise, u, **kw)

    def update_discriminator(self, b: StepDraws, fake, step: int, m: dict) -> None:
        """One discriminator micro step: hinge/ns/... loss on [real; fake] + gamma/2 R1 (Eq. 2-3, ADD),
        pairs weighted by experimental.disc_timesteps; metrics into `m`."""
        acc, sp = self.accelerator, self.space
        r1_gamma = r1_gamma_at(self.disc_cfg, step)
        logits, feats = pair_logits(self.D, b.x0, fake,
                                    sp.cat_cond(b.cond, b.cond), b, r1_gamma > 0,
                                    self.recipe.experimental.fake_score_disc_weight)
        loss_d, md = d_loss_and_metrics(self.adv, logits, feats, fake.shape[0], r1_gamma, self.d_weight(b.s))
        acc.backward(loss_d)
        if acc.sync_gradients:
            m["grad_norm_d"] = float(grad_norm(self.raw_heads.parameters()))
        self.opt_d.step()
        m.update(md)

    def step(self, step: int) -> dict:
        m = {}
        with self.accelerator.autocast():  # --mixed_precision bf16/fp16: the frozen teacher too (prepared models already are)
            if not self.critics:  # the consistency term alone (LCM)
                self.student_phase(step, m)
            elif self.dc.student_first:  # DMD2's order: the critics train on this step's student outputs, detached
                outs = self.student_phase(step, m)
                self.critic_phase(step, m, outs)
            else:
                self.critic_phase(step, m)
                self.student_phase(step, m)
        return m

    def critic_phase(self, step: int, m: dict, reuse=None) -> None:
        """discriminator.steps updates of the heads (and the fake score, DMD2); `reuse`: the student phase's
        [(b, sg(fake))] per micro step, judged in the first update with fresh discriminator draws."""
        dsc, tc = self.disc_cfg, self.recipe.train
        for k in range(dsc.steps):
            self.opt_d.zero_grad(set_to_none=True)
            if self.opt_f is not None:
                self.opt_f.zero_grad(set_to_none=True)
            for a in range(self.A):
                if reuse is not None and k == 0:
                    b, fake = reuse[a]
                    global_shape = (self.n,) + tuple(fake.shape[1:])
                    b = dataclasses.replace(b, **self.local(self.disc_noise(rng(tc.seed, self.space.tag, step, "d-reuse", a),
                                                                           global_shape)))
                else:
                    b = self.draw(step, "d", k, a)
                    with torch.no_grad():
                        fake = self.student_w.x0(self.student_input(b), b.s, b.cond)
                with self.accelerator.accumulate(self.disc):
                    self.update_discriminator(b, fake, step, m)
                if self.fake_score is not None:  # the fake score learns the student's distribution (DMD2)
                    with self.accelerator.accumulate(self.fake_score.net):
                        loss_f = self.fake_score.loss(fake, b.eps_f, b.t_f, b.cond).mean()
                        self.accelerator.backward(loss_f)
                        self.opt_f.step()
                    m["loss_fake_score"] = loss_f.detach()

    def student_phase(self, step: int, m: dict) -> list:
        """One student update (L_G of the module docstring) -> [(b, sg(fake))] per micro step (fake None without
        critics)."""
        acc, dc, dsc = self.accelerator, self.dc, self.disc_cfg
        outs = []
        self.opt_g.zero_grad(set_to_none=True)
        fake_backbone = dsc.backbone == "fake_score"
        if fake_backbone:  # L_adv reaches the sample through its encoder: no weight gradients there
            self.fake_score.net.requires_grad_(False)
        for a in range(self.A):
            b = self.draw(step, "g", dsc.steps, a)
            with acc.accumulate(self.student_w.net):
                fake, loss_adv, loss_distill, loss_g = None, None, None, 0.0
                if self.critics:
                    fake, loss_adv, loss_distill, loss_g = self.sample_terms(b, m)
                if self.cd_target is not None:
                    loss_cd = self.consistency_term(b, m)
                    loss_g = loss_g + dc.lambda_consistency * loss_cd
                    m["loss_consistency"] = loss_cd.mean().detach()
                loss_g = loss_g.mean()
                acc.backward(loss_g)
                if acc.sync_gradients:
                    m["grad_norm_g"] = float(acc.clip_grad_norm_(self.trainable, self.recipe.train.max_grad_norm))
                self.opt_g.step()
            self.opt_d.zero_grad(set_to_none=True)  # the G pass left gradients on the heads
            outs.append((b, fake.detach() if fake is not None else None))
        if self.cd_target is not None:
            self.cd_target.update(self.raw_student)  # theta- follows the updated student
        if fake_backbone:
            self.fake_score.net.requires_grad_(True)
        if loss_adv is not None:
            m.update(g_metrics(loss_adv, loss_distill, loss_g))
        else:
            m["loss"] = loss_g.detach()
        return outs

    def sample_terms(self, b: StepDraws, m: dict):
        """The terms on the student's sample x = student_x0(x_s, s) at a student timestep: (fake (B, C, H, W),
        L_adv (B,), L_distill (B,) or None when off, lambda-weighted sum (B,))."""
        sp, dc = self.space, self.dc
        fake = self.student_w.x0(self.student_input(b), b.s, b.cond)
        loss_adv = torch.zeros(fake.shape[0], device=self.dev)
        if dc.lambda_adv > 0:
            loss_adv = self.adv.g_loss(self.D(fake, b.cond, b.t_d, b.noise_d[:, 1], b.u[:, 1],
                                               head=b.head)[0])
            if (w_adv := self.d_weight(b.s)) is not None:  # only the outputs the discriminator judges
                loss_adv = loss_adv * w_adv
        loss_distill, loss_dmd = None, torch.zeros(fake.shape[0], device=self.dev)
        w_r = self.r_weight(b.s) if dc.lambda_distill > 0 else None
        regress = dc.lambda_distill > 0 and (w_r is None or bool(w_r.any()))
        if regress or self.fake_score is not None:  # no teacher call in LADD or where no sample is regressed
            with sp.teacher_mode():
                target, c_t, x_t = teacher_target(sp.teacher, fake.detach(), b.cond, b.t, b.eps2,
                                                  dc.teacher_guidance, dc.distill_weighting)
        if regress:
            fake_r, target_r = sp.regression_pair(fake, target)
            loss_distill = distillation_loss(fake_r, target_r, c_t)
            if w_r is not None:
                loss_distill = loss_distill * w_r
        elif dc.lambda_distill > 0:  # every sample masked
            loss_distill = (fake * 0).flatten(1).sum(1)  # (B,) zeros on the student's graph: backward runs
        if self.fake_score is not None:
            with torch.no_grad():  # at the x_t the teacher's target came from
                fake_x0 = self.fake_score.x0(x_t, b.t, b.cond)
            loss_dmd = dmd_loss(fake, target, fake_x0)
            m["loss_dmd"] = loss_dmd.mean().detach()
        loss_g = dc.lambda_adv * loss_adv  # L_G: the terms in the order of the module docstring
        if loss_distill is not None:
            loss_g = loss_g + dc.lambda_distill * loss_distill
        return fake, loss_adv, loss_distill, loss_g + dc.lambda_dmd * loss_dmd

    def consistency_term(self, b: StepDraws, m: dict) -> torch.Tensor:
        """(B,) on data noised to the grid timestep t_n: L_CD (distill.distillation.consistency), or for a trajectory
        student CTM's soft consistency + lambda_dsm denoising term (distill.distillation.trajectory)."""
        cc, sp = self.recipe.consistency, self.space
        t, t_prev = self.cd_grid[b.n_cd], self.cd_grid[b.n_cd - cc.skip]  # (B,) each
        x_t = sp.teacher.add_noise(b.x0, b.eps_cd, t)
        w = b.w_cd.float() if b.w_cd is not None else self.dc.teacher_guidance  # (B,) for a w-conditioned student
        with sp.teacher_mode():
            x_prev = ddim_step(sp.teacher, x_t, t, t_prev, b.cond, w)
        target = self.cd_target.denoiser(self.student_w)
        if cc.kind == "lcm":
            return consistency_loss(self.student_w, target, x_t, t, x_prev, t_prev, b.cond, cc.distance, cc.huber_c,
                                    guidance=w if b.w_cd is not None else 1.0)
        s = self.cd_grid[b.m_cd]  # (B,) the trajectory student's target times
        loss = soft_consistency_loss(self.student_w, target, x_t, t, x_prev, t_prev, s, b.cond, cc.distance,
                                     cc.huber_c)
        m["loss_soft_consistency"] = loss.mean().detach()
        if cc.lambda_dsm > 0:
            dsm = denoising_loss(self.student_w, b.x0, b.eps_cd, x_t, t, b.cond)
            m["loss_dsm"] = dsm.mean().detach()
            loss = loss + cc.lambda_dsm * dsm
        return loss

    # ------------------------------------------------------------------ monitoring and export
    def sample(self, step: int):
        return self.space.monitor(self.raw_student, step, self.engine.run_dir)

    def finish(self) -> None:
        """Export the EMA weights (every process takes part: FSDP gathers the shards)."""
        if self.ema is not None:
            self.ema.store(self.trainable)
            self.ema.copy_to(self.trainable)
        student = self.space.gather_student(self.accelerator, self.raw_student, self.student_w.net)
        if self.accelerator.is_main_process:
            self.space.export(student.eval(), self.engine.run_dir)  # diffusers' layout: the pipeline at output_dir
        if self.ema is not None:
            self.ema.restore(self.trainable)


def train_distill(recipe, space=None) -> Path:
    from .pixel import PixelSpace

    return Engine(recipe).fit(DistillTrainer(recipe, space or PixelSpace(recipe)))


def run_distill(recipe, space=None) -> Path:
    """`distill run` for task: distill (and sd-distill): train, then evaluate and report (main process)."""
    from accelerate import PartialState

    from .pixel import PixelSpace

    space = space or PixelSpace(recipe)
    run_dir = train_distill(recipe, space)
    if (run_dir / "model_index.json").is_file() and PartialState().is_main_process:
        space.report(run_dir)
    return run_dir
