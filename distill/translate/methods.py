"""One optimisation step of pix2pix and of CycleGAN (SPADE's: semantic.py), written like the reference models'
`optimize_parameters`. Each method owns its networks (`nets`, reference names), says which are
generators (one Adam "G") and discriminators (one Adam "D"), and returns logged scalars.

`cfg` is the recipe's `translate:` section, `data` its `data:` section (channels).
`backward` is the accelerator's (mixed precision); generators / discriminators passed in are
the accelerate-prepared modules. Gradient norms are computed only when `norms` is true (the
trainer asks on logging steps): they are for the logs, not for the update.
"""

from __future__ import annotations

import torch

from ..errors import RecipeError
from .losses import d_loss, g_adv_loss, get_gan_mode, l1
from .networks import build_discriminator, build_generator
from .pool import ImagePool
from .semantic import Spade
from ..engine.optim import grad_norm


def set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


class Pix2Pix:
    """G: A -> B (U-Net); D: conditional PatchGAN on cat(A, B) (B, in+out, H, W).
    G* = arg min_G max_D L_cGAN(G, D) + lambda L_L1(G)   (Eq. 4, pix2pix)."""

    generators, discriminators, pools = ("G",), ("D",), ()

    def __init__(self, cfg, data):
        self.cfg, self.mode = cfg, get_gan_mode(cfg.gan_mode)
        self.nets = {"G": build_generator(cfg, data.input_nc, data.output_nc),
                     "D": build_discriminator(cfg, data.input_nc + data.output_nc)}
        self.state = {}

    def step(self, nets, opts, real_A, real_B, backward, gen, norms: bool = True) -> dict:
        G, D, c = nets["G"], nets["D"], self.cfg
        out = {}
        fake_B = G(real_A)  # (B, out, H, W)
        # D: L_cGAN (Eq. 1), real pairs (x, y) vs fake pairs (x, G(x)), halved
        set_requires_grad([D], True)
        opts["D"].zero_grad(set_to_none=True)
        loss_d, acc_r, acc_f = d_loss(self.mode, D, torch.cat([real_A, real_B], 1),
                                      torch.cat([real_A, fake_B.detach()], 1), gen)
        backward(loss_d)
        if norms:
            out["grad_norm_d"] = grad_norm([D])
        opts["D"].step()
        # G: fool D + stay close to the target in L1 (Eq. 3-4)
        set_requires_grad([D], False)
        opts["G"].zero_grad(set_to_none=True)
        loss_gan = g_adv_loss(self.mode, D, torch.cat([real_A, fake_B], 1))
        loss_l1 = l1(fake_B, real_B)
        loss_g = loss_gan + c.lambda_L1 * loss_l1
        backward(loss_g)
        if norms:
            out["grad_norm_g"] = grad_norm([G])
        opts["G"].step()
        return {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "loss_gan": loss_gan.detach(),
                "loss_l1": loss_l1.detach(), "d_acc_real": acc_r, "d_acc_fake": acc_f, **out}

    @torch.no_grad()
    def preview(self, nets, real_A, real_B) -> list[torch.Tensor]:
        """Columns of the sample grid: input | output | target."""
        return [real_A, nets["G"](real_A), real_B]


class CycleGAN:
    """G_A: A -> B, G_B: B -> A; D_A judges B-domain images, D_B judges A-domain images.
    L = L_GAN(G_A, D_A) + L_GAN(G_B, D_B) + lambda L_cyc (Eq. 3, CycleGAN) + identity (Sec. 5.2)."""

    generators, discriminators, pools = ("G_A", "G_B"), ("D_A", "D_B"), ("pool_A", "pool_B")

    def __init__(self, cfg, data):
        self.cfg, self.mode = cfg, get_gan_mode(cfg.gan_mode)
        i, o = data.input_nc, data.output_nc
        if cfg.lambda_identity > 0 and i != o:
            raise RecipeError("translate.lambda_identity > 0 needs data.input_nc == data.output_nc")
        self.nets = {"G_A": build_generator(cfg, i, o),
                     "G_B": build_generator(cfg, o, i),
                     "D_A": build_discriminator(cfg, o),
                     "D_B": build_discriminator(cfg, i)}
        self.state = {"pool_A": ImagePool(cfg.pool_size), "pool_B": ImagePool(cfg.pool_size)}

    def step(self, nets, opts, real_A, real_B, backward, gen, norms: bool = True) -> dict:
        G_A, G_B, D_A, D_B, c = nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"], self.cfg
        out = {}
        fake_B = G_A(real_A)  # (B, C, H, W), G(x)
        rec_A = G_B(fake_B)  # F(G(x)) ~ x  (forward cycle, Eq. 2)
        fake_A = G_B(real_B)  # F(y)
        rec_B = G_A(fake_A)  # G(F(y)) ~ y  (backward cycle)
        # generators, with the discriminators frozen
        set_requires_grad([D_A, D_B], False)
        opts["G"].zero_grad(set_to_none=True)
        loss_idt = torch.zeros((), device=real_A.device)
        if c.lambda_identity > 0:  # G_A(y) ~ y, G_B(x) ~ x (Sec. 5.2; Taigman et al. 2017)
            loss_idt = (l1(G_A(real_B), real_B) * c.lambda_B + l1(G_B(real_A), real_A) * c.lambda_A) * c.lambda_identity
        loss_gan = g_adv_loss(self.mode, D_A, fake_B) + g_adv_loss(self.mode, D_B, fake_A)
        loss_cycle = l1(rec_A, real_A) * c.lambda_A + l1(rec_B, real_B) * c.lambda_B  # Eq. 2
        loss_g = loss_gan + loss_cycle + loss_idt
        backward(loss_g)
        if norms:
            out["grad_norm_g"] = grad_norm([G_A, G_B])
        opts["G"].step()
        # discriminators on pooled fakes (history of 50)
        set_requires_grad([D_A, D_B], True)
        opts["D"].zero_grad(set_to_none=True)
        pooled_B = self.state["pool_B"].query(fake_B, gen)
        pooled_A = self.state["pool_A"].query(fake_A, gen)
        loss_d_a, ar_a, af_a = d_loss(self.mode, D_A, real_B, pooled_B, gen)
        loss_d_b, ar_b, af_b = d_loss(self.mode, D_B, real_A, pooled_A, gen)
        backward(loss_d_a + loss_d_b)
        if norms:
            out["grad_norm_d"] = grad_norm([D_A, D_B])
        opts["D"].step()
        return {"loss_g": loss_g.detach(), "loss_d": (loss_d_a + loss_d_b).detach(), "loss_gan": loss_gan.detach(),
                "loss_cycle": loss_cycle.detach(), "loss_idt": loss_idt.detach(),
                "d_acc_real": (ar_a + ar_b) / 2, "d_acc_fake": (af_a + af_b) / 2, **out}

    @torch.no_grad()
    def preview(self, nets, real_A, real_B) -> list[torch.Tensor]:
        """Columns: A | G_A(A) | G_B(G_A(A)) | B | G_B(B) | G_A(G_B(B))."""
        fake_B, fake_A = nets["G_A"](real_A), nets["G_B"](real_B)
        return [real_A, fake_B, nets["G_B"](fake_B), real_B, fake_A, nets["G_A"](fake_A)]


METHODS = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN, "spade": Spade}


def labels_for(method: str, cfg):
    """The `translate.labels` section where `method` reads label maps (SPADE), else None."""
    return cfg.labels if getattr(METHODS[method], "label_input", False) else None
