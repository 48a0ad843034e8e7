"""One optimisation step of SPADE (Park et al. 2019), written like the reference trainer
(NVlabs/SPADE, trainers/pix2pix_trainer.py): a generator step, then a discriminator step.

G (+ the style encoder E): hinge G loss over the scales of the multi-scale D (Miyato et al. 2018,
Eq. 17), feature matching (pix2pixHD Eq. 4, weight lambda_feat = 10), the VGG loss where its
weights are present (lambda_vgg), and with E the KL term of the VAE (App. B, lambda_kld = 0.05):
    L_G = L_GAN + lambda_feat L_FM + lambda_vgg L_VGG + lambda_kld KL(q(z|x) || N(0, I)).
D: hinge loss on cat(label map, photo) pairs, real vs generated (Eq. 16), averaged over scales.
The learning rates are TTUR (Heusel et al. 2017): G 1e-4, D 4e-4, Adam betas (0, 0.999), set in
the recipe (`train.learning_rate`, `train.lr_d`, `train.adam_beta1`).
"""

from __future__ import annotations

import torch

from ..engine.optim import grad_norm
from ..errors import RecipeError
from .labels import colorize, palette_of
from .losses import get_gan_mode
from .multiscale import MultiscaleDiscriminator, feature_matching, logits
from .spade import SPADEGenerator, StyleEncoder, initialize, kl_divergence, reparameterize


def build_spade_generator(cfg, data) -> SPADEGenerator:
    return initialize(SPADEGenerator(cfg.labels.num_classes, data.output_nc, data.crop_size, cfg.ngf, cfg.spade_hidden,
                                     cfg.spade_norm, cfg.z_dim if cfg.style_encoder else None), cfg.init_gain)


def build_style_encoder(cfg, data) -> StyleEncoder:
    return initialize(StyleEncoder(data.output_nc, data.crop_size, cfg.ndf, cfg.z_dim), cfg.init_gain)


class Spade:
    """G: label map (one-hot) -> photo; D: multi-scale PatchGAN on cat(label map, photo);
    E (translate.style_encoder): photo -> q(z | photo)."""

    discriminators, pools = ("D",), ()
    label_input = True  # the input domain is read as label maps (translate.labels)

    def __init__(self, cfg, data):
        self.cfg, self.mode = cfg, get_gan_mode(cfg.gan_mode)
        if self.mode.gp_weight > 0:
            raise RecipeError(f"translate.gan_mode: '{cfg.gan_mode}' is not available for SPADE (use hinge, vanilla or lsgan)")
        self.palette = palette_of(cfg.labels)
        k = cfg.labels.num_classes
        self.nets = {"G": build_spade_generator(cfg, data),
                     "D": initialize(MultiscaleDiscriminator(k + data.output_nc, cfg.ndf, cfg.n_layers_D, cfg.num_D),
                                     cfg.init_gain)}
        self.generators = ("G",)
        if cfg.style_encoder:
            self.nets["E"] = build_style_encoder(cfg, data)
            self.generators = ("G", "E")
        self.vgg = None
        if cfg.lambda_vgg > 0:
            from .perceptual import load_vgg_loss

            self.vgg = load_vgg_loss()
        self.state = {}

    def _g_loss(self, d_fake) -> torch.Tensor:
        """Mean over scales of the generator's per-sample GAN loss on the patch logits -> scalar."""
        ls = logits(d_fake)
        return sum(self.mode.g_scale * self.mode.adv.g_loss(x).mean() for x in ls) / len(ls)

    def _d_loss(self, d_real, d_fake) -> torch.Tensor:
        pairs = list(zip(logits(d_real), logits(d_fake)))
        return sum(self.mode.d_scale * self.mode.adv.d_loss(r, f).mean() for r, f in pairs) / len(pairs)

    @staticmethod
    def _judge(D, seg, fake, real):
        """D on (label map, fake) and (label map, real) pairs in one batch, as the reference (one
        spectral-norm power iteration for both) -> (fake outputs, real outputs), per scale."""
        n = len(seg)
        both = D(torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)]))
        return [[f[:n] for f in s] for s in both], [[f[n:] for f in s] for s in both]

    def step(self, nets, opts, real_A, real_B, backward, gen, norms: bool = True) -> dict:
        G, D, c = nets["G"], nets["D"], self.cfg
        out = {}
        # generator (and encoder) step, D frozen
        D.requires_grad_(False)
        opts["G"].zero_grad(set_to_none=True)
        z, kld = None, torch.zeros((), device=real_B.device)
        if "E" in nets:
            mu, logvar = nets["E"](real_B)
            z, kld = reparameterize(mu, logvar), kl_divergence(mu, logvar).mean()
        fake = G(real_A, z)
        d_fake, d_real = self._judge(D, real_A, fake, real_B)
        loss_gan = self._g_loss(d_fake)
        loss_feat = feature_matching(d_fake, d_real).mean()
        loss_vgg = self.vgg.to(fake.device)(fake, real_B).mean() if self.vgg is not None else torch.zeros_like(kld)
        loss_g = loss_gan + c.lambda_feat * loss_feat + c.lambda_vgg * loss_vgg + c.lambda_kld * kld
        backward(loss_g)
        if norms:
            out["grad_norm_g"] = grad_norm([nets[g] for g in self.generators])
        opts["G"].step()
        # discriminator step on (label map, photo) pairs; real and fake in one batch as the reference
        D.requires_grad_(True)
        opts["D"].zero_grad(set_to_none=True)
        d_fake, d_real = self._judge(D, real_A, fake.detach(), real_B)
        loss_d = self._d_loss(d_real, d_fake)
        backward(loss_d)
        if norms:
            out["grad_norm_d"] = grad_norm([D])
        opts["D"].step()
        thr = self.mode.adv.threshold
        r_log, f_log = [s[-1].detach() for s in d_real], [s[-1].detach() for s in d_fake]
        return {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "loss_gan": loss_gan.detach(),
                "loss_feat": loss_feat.detach(), "loss_vgg": loss_vgg.detach(), "loss_kld": kld.detach(),
                "d_acc_real": torch.stack([(x > thr).float().mean() for x in r_log]).mean(),
                "d_acc_fake": torch.stack([(x <= thr).float().mean() for x in f_log]).mean(), **out}

    @torch.no_grad()
    def preview(self, nets, real_A, real_B) -> list[torch.Tensor]:
        """Columns: label map | G(label map) (z ~ N(0, I) with the encoder) | G(label map, style of the
        photo) with the encoder | photo."""
        cols = [colorize(real_A, self.palette), nets["G"](real_A)]
        if "E" in nets:
            cols.append(nets["G"](real_A, nets["E"](real_B)[0]))
        return cols + [real_B]
