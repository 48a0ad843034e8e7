"""Train a GAN of any kind (distill.gan.architectures) on the training engine (distill.engine.trainer).

Per optimizer step (global batch B, every random tensor drawn for the whole batch from
rng(seed, "gan", step) and sharded, so a resumed run repeats an uninterrupted one exactly):

  growth:  networks with a growth schedule (Progressive GAN) are told the step first
  D step:  x ~ data (labels y), fake = G(z_d, y; draws_d) (no grad; the generator's own randomness,
           e.g. StyleGAN's mixing latents and noise maps); logits of DiffAugment(x), DiffAugment(fake);
           L_D = d_loss(real, fake) + w1/2 R1(x) + w2/2 R2(fake) (w = lazy_weight(gamma, reg_every, step))
                 + lambda GP(x_hat) (WGAN-GP) + eps_drift D(x)^2 (Progressive GAN);
           then WGAN's weight clipping of D, if set
  G step:  fake = G(z_g, y; draws_g) (updates running statistics such as w_avg); L_G = g_loss(D(fake)), or
           for the relativistic pairing loss g_loss(D(fake), D(x)) (R3GAN, Eq. 2); + beta R_ortho(G) (BigGAN)
  then the engine: LR schedules, the generator's EMA, logs, sample grids + monitor (EMA weights),
  checkpoints. At the end the EMA generator is exported (into the run folder), pictured, evaluated, and
  report.md is written.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Optional

import torch

from ..data import load_images
from ..discriminator.augment import NUM_RANDOM, diff_augment
from ..engine.accelerator import micro_batch_size
from ..engine.optim import grad_norm, make_ema, make_lr_scheduler
from ..engine.randomness import EpochSampler, rng, shard
from ..engine.trainer import Engine, Trainer
from .architectures import GANDiscriminator, GANGenerator, Growing, discriminator_class, generator_class
from .losses import drift_penalty, get_adv_loss, gradient_penalty, lazy_weight, r1_penalty, r2_penalty
from .pictures import class_grid
from .regularizers import clip_weights, orthogonal_penalty

PENALTIES = {"r1": r1_penalty, "r2": r2_penalty}


def build_networks(recipe, num_classes: int) -> tuple[GANGenerator, GANDiscriminator]:
    """The recipe's generator and discriminator kinds, built from its sections."""
    G = generator_class(recipe.generator.kind).from_recipe(recipe, num_classes)
    D = discriminator_class(recipe.discriminator.kind).from_recipe(recipe, num_classes)
    return G, D


def trainable(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters an optimizer steps: all but frozen ones (a projected discriminator's backbone)."""
    return [p for p in module.parameters() if p.requires_grad]


def set_step(models, step: int) -> None:
    """Tell every network with a growth schedule (Progressive GAN) the step it is at."""
    for m in models:
        if isinstance(m, Growing):
            m.set_step(step)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def d_params(D: torch.nn.Module) -> dict:
    """The discriminator's trained parameters (`params_d`) and, where it has any, its frozen ones
    (`params_d_frozen`: a projected discriminator's backbone)."""
    trained = sum(p.numel() for p in trainable(D))
    frozen = num_params(D) - trained
    return {"params_d": trained, **({"params_d_frozen": frozen} if frozen else {})}


class GANTrainer(Trainer):
    """Alternating D and G steps (one each per optimizer step), Adam for both, EMA of G."""

    name = "gan"

    def __init__(self, recipe):
        self.recipe, self.tc, self.gc = recipe, recipe.train, recipe.gan

    def ema_parameters(self):
        return self.models["generator"].parameters()

    def setup(self, engine) -> None:
        recipe, tc, acc = self.recipe, self.tc, engine.accelerator
        self.engine = engine
        self.data = data = load_images(recipe.data)
        self.num_classes = data.num_classes if (recipe.generator.class_conditional and data.labels is not None) else 0
        micro_batch_size(tc.batch_size, 1, acc.num_processes)
        self.adv = get_adv_loss(self.gc.loss, paired=True)
        ec = recipe.eval
        self.extractor = None
        if ec.num_samples > 0 or ec.monitor_samples > 0:  # a missing classifier fails now, not after training
            from ..eval.fid import feature_extractor

            self.extractor = feature_extractor(ec.features)

        torch.manual_seed(tc.seed)  # weight init
        G, D = build_networks(recipe, self.num_classes)
        self.ema = make_ema(G.parameters(), tc)
        betas = (tc.adam_beta1, tc.adam_beta2)
        opt_g = torch.optim.AdamW(G.parameters(), lr=tc.learning_rate, betas=betas, weight_decay=tc.weight_decay)
        opt_d = torch.optim.AdamW(trainable(D), lr=tc.lr_d or tc.learning_rate, betas=betas,
                                  weight_decay=tc.weight_decay)
        self.sched = {"g": make_lr_scheduler(opt_g, tc), "d": make_lr_scheduler(opt_d, tc)}
        self.schedulers = list(self.sched.values())
        self.states = {"opt_g": opt_g, "opt_d": opt_d, "sched_g": self.sched["g"], "sched_d": self.sched["d"],
                       "ema": self.ema}
        engine.restore({"generator": G, "discriminator": D}, self.states)
        # the latest R1/R2 values (logged every step; computed every reg_every steps)
        self.penalties = {k: torch.tensor(v) for k, v in engine.resumed_state.get("penalties", {}).items()}
        self.G, self.D, self.opt_g, self.opt_d = acc.prepare(G, D, opt_g, opt_d)
        self.ema.to(acc.device)
        self.models = {"generator": acc.unwrap_model(self.G), "discriminator": acc.unwrap_model(self.D)}
        self.sampler = EpochSampler(len(data), tc.seed)
        self.monitor = None
        if engine.is_main and ec.monitor_samples > 0:
            from .evaluate import Monitor

            self.monitor = Monitor(self.extractor, data, ec.monitor_samples, ec.batch_size, ec.seed)
        self.t0, self.first = time.time(), engine.step

    def header(self) -> dict:
        G, D = self.models["generator"], self.models["discriminator"]
        return {"dataset_size": len(self.data), "processes": self.engine.accelerator.num_processes,
                "batch_size": self.tc.batch_size, "num_classes": self.num_classes, "params_g": num_params(G),
                **d_params(D), "generator": self.recipe.generator.kind,
                "discriminator": self.recipe.discriminator.kind}

    # ------------------------------------------------------------------------------------------
    # one step

    def draw(self, step: int) -> dict:
        """Every random tensor of the global batch for `step`, sharded to this process."""
        tc, G = self.tc, self.models["generator"]
        B, zd = tc.batch_size, G.config.z_dim
        g = rng(tc.seed, "gan", step)
        out = {}
        for phase in ("d", "g"):
            out[f"z_{phase}"] = torch.randn(B, zd, generator=g)
            out[f"draws_{phase}"] = G.training_draws(B, g)
        out["u"] = torch.rand(B, 4, NUM_RANDOM, generator=g)  # DiffAugment: real (D), fake (D), fake (G), real (G)
        out["gp_eps"] = torch.rand(B, generator=g)  # WGAN-GP's interpolation weights
        acc = self.engine.accelerator
        P, rank, dev = acc.num_processes, acc.process_index, acc.device

        def local(v):
            if isinstance(v, dict):
                return {k: local(t) for k, t in v.items()}
            if isinstance(v, list):
                return [local(t) for t in v]
            return shard(v, rank, P).to(dev)

        return local(out)

    def augment(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, u, self.gc.augment) if self.gc.augment else x

    def fake(self, b: dict, phase: str, y, update_stats: bool = False) -> torch.Tensor:
        return self.G(b[f"z_{phase}"], y, draws=b[f"draws_{phase}"], update_stats=update_stats)

    def _apply(self, opt, model, loss: torch.Tensor) -> torch.Tensor:
        """Backward, gradient norm (logged), optional clipping, optimizer step. -> the norm"""
        acc = self.engine.accelerator
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        norm = grad_norm([model])
        if self.tc.max_grad_norm is not None:
            acc.clip_grad_norm_(trainable(model), self.tc.max_grad_norm)
        opt.step()
        return norm

    def step(self, step: int) -> dict:
        tc, gc, adv, acc = self.tc, self.gc, self.adv, self.engine.accelerator
        idx = self.sampler.indices(step * tc.batch_size, tc.batch_size)
        real, y = self.data.batch(idx)  # (B, C, H, W) in [-1, 1], (B,)
        P, rank, dev = acc.num_processes, acc.process_index, acc.device
        real = shard(real, rank, P).to(dev)
        y = shard(y, rank, P).to(dev) if (y is not None and self.num_classes) else None
        set_step(self.models.values(), step)
        b = self.draw(step)
        u = b["u"]

        # ---- discriminator: L_D + w1/2 R1(real) + w2/2 R2(fake)
        with torch.no_grad():
            fake = self.fake(b, "d", y)
        weights = {"r1": lazy_weight(gc.r1_gamma, gc.reg_every, step), "r2": lazy_weight(gc.r2_gamma, gc.reg_every, step)}
        real_in = real.detach().requires_grad_(weights["r1"] > 0)
        fake_in = fake.detach().requires_grad_(weights["r2"] > 0)
        real_logits = self.D(self.augment(real_in, u[:, 0]), y).float()  # (B,)
        fake_logits = self.D(self.augment(fake_in, u[:, 1]), y).float()
        loss_d = adv.d_loss(real_logits, fake_logits)  # (B,)
        total = loss_d
        for name, (logits, inputs) in {"r1": (real_logits, real_in), "r2": (fake_logits, fake_in)}.items():
            if weights[name] > 0:
                pen = PENALTIES[name](logits, inputs)  # (B,)
                total = total + weights[name] / 2 * pen
                self.penalties[name] = pen.mean().detach()
        if gc.gp_lambda > 0:  # Eq. 3, Gulrajani et al. 2017
            gp = gradient_penalty(lambda x: self.D(x, y).float(), real, fake, eps=b["gp_eps"])  # (B,)
            total = total + gc.gp_lambda * gp
            self.penalties["gp"] = gp.mean().detach()
        if gc.drift > 0:  # App. A.1, Karras et al. 2018
            total = total + gc.drift * drift_penalty(real_logits)
        grad_norm_d = self._apply(self.opt_d, self.D, total.mean())
        if gc.clip is not None:  # Algorithm 1, line 7, Arjovsky et al. 2017
            clip_weights(self.models["discriminator"], gc.clip)
        acc_real, acc_fake = adv.accuracy(real_logits, fake_logits)

        # ---- generator: L_G (paired losses compare with D's logits of the real batch)
        self.D.requires_grad_(False)
        try:
            fake_g_logits = self.D(self.augment(self.fake(b, "g", y, update_stats=True), u[:, 2]), y).float()
            if adv.paired:
                with torch.no_grad():
                    real_g_logits = self.D(self.augment(real, u[:, 3]), y).float()
                loss_g = adv.g_loss(fake_g_logits, real_g_logits)
            else:
                loss_g = adv.g_loss(fake_g_logits)
            total_g = loss_g.mean()
            if gc.ortho > 0:  # Eq. 3, Brock et al. 2019
                ortho = orthogonal_penalty(self.models["generator"])
                total_g = total_g + gc.ortho * ortho
                self.penalties["ortho"] = ortho.detach()
            grad_norm_g = self._apply(self.opt_g, self.G, total_g)
        finally:
            self.D.requires_grad_(True)
        return {"loss_d": loss_d.mean().detach(), "loss_g": loss_g.mean().detach(),
                "d_acc_real": acc_real.mean(), "d_acc_fake": acc_fake.mean(),
                "logit_real": real_logits.mean().detach(), "logit_fake": fake_logits.mean().detach(),
                "grad_norm_d": grad_norm_d, "grad_norm_g": grad_norm_g, **self.penalties}

    # ------------------------------------------------------------------------------------------
    # logs, samples, checkpoints, export

    def seconds_per_step(self) -> float:
        return (time.time() - self.t0) / max(1, self.engine.step - self.first)

    def log_extras(self) -> dict:
        return {"lr": self.sched["g"].get_last_lr()[0], "lr_d": self.sched["d"].get_last_lr()[0],
                "s_per_step": self.seconds_per_step()}

    def postfix(self, vals: dict) -> dict:
        return {"loss_d": f"{vals['loss_d']:.3f}", "loss_g": f"{vals['loss_g']:.3f}"}

    def checkpoint_extra(self) -> dict:
        return {"penalties": {k: float(v) for k, v in self.penalties.items()}}

    def with_standing_stats(self, G):
        """G (a copy holding the EMA weights, changed in place) with its batch-norm statistics re-estimated for
        those weights (gan.standing_stats batches; nothing for a generator without batch norm or the key at 0)."""
        from .batchnorm import standing_statistics

        return standing_statistics(G, self.recipe.gan.standing_stats, self.tc.batch_size, self.tc.seed)

    def sample(self, step: int) -> Optional[dict]:
        G = self.with_standing_stats(copy.deepcopy(self.models["generator"]))  # the EMA weights, swapped in
        class_grid(G, self.engine.run_dir / "samples" / f"step-{step:07d}.png", seed=self.tc.seed)
        if self.monitor is None:
            return None
        res = self.monitor(G)
        return {k: res[k] for k in ("fid", "kid", "class_acc", "class_coverage", "diversity_ratio") if k in res}

    def finish(self) -> None:
        engine, recipe = self.engine, self.recipe
        if not engine.is_main:
            return
        raw = self.models["generator"]
        set_step([raw], engine.step)
        final = copy.deepcopy(raw)
        self.ema.copy_to(final.parameters())
        final = self.with_standing_stats(final).eval()
        final.save_pretrained(str(engine.run_dir))  # diffusers' layout: the export at output_dir
        from .pictures import write_pictures
        from .report import write_report

        pictures = write_pictures(final, engine.run_dir / "pictures", seed=self.tc.seed)
        rows = None
        if recipe.eval.num_samples > 0:
            from .evaluate import evaluate_generator

            rows = evaluate_generator(final, recipe.eval, recipe.data, engine.run_dir / "eval", self.extractor)
        facts = {"params_g": num_params(final), **d_params(self.models["discriminator"]),
                 "kinds": (recipe.generator.kind, recipe.discriminator.kind), "steps": engine.step, "seconds_per_step": self.seconds_per_step()}
        write_report(recipe, engine.run_dir, facts, rows, pictures)
        from ..cards import gan_card, hardware, run_facts

        wall, steps, _ = run_facts(engine.run_dir)
        gan_card(recipe, final, rows or [], wall, steps, hardware()).save(engine.run_dir / "README.md")


def standalone(recipe) -> GANTrainer:
    """A trainer set up outside `Engine.fit` (no run folder): for tests and step timing."""
    t = GANTrainer(recipe)
    engine = Engine(recipe, prepare_dir=False)
    engine.trainer = t
    t.setup(engine)
    return t


def train_gan(recipe) -> Path:
    return Engine(recipe).fit(GANTrainer(recipe))
