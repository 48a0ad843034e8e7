"""The adversarial part of a distillation step: the discriminator's forward on real/fake pairs, its loss
with R1 and metrics, lazy R1's schedule and the student's logged losses."""

from __future__ import annotations

import torch

from ..gan.losses import r1_penalty
from .draws import StepDraws


def d_loss_and_metrics(adv, logits: torch.Tensor, feats, B: int, r1_gamma: float, w=None):
    """logits (2B, L) for [real; fake] -> (scalar L_D + gamma/2 R1, metrics). R1 on the heads'
    inputs for real images (Mescheder et al. 2018): grads w.r.t. the (2B) feature leaves, real half.
    `w` (B,) optional per-pair weights (0 drops a pair); metrics are over the weighted pairs."""
    real_logits, fake_logits = logits[:B].float(), logits[B:].float()
    loss_d = adv.d_loss(real_logits, fake_logits)
    r1 = torch.zeros_like(loss_d)
    if r1_gamma > 0:
        r1 = r1_penalty(real_logits, feats)[:B]
    w = torch.ones_like(loss_d) if w is None else w.to(loss_d)

    def wmean(v):  # (B,) -> weighted mean over the kept pairs
        return (w * v).sum().detach() / w.sum().clamp_min(1e-8)

    metrics = dict(loss_d=wmean(loss_d), d_acc_real=wmean((real_logits > adv.threshold).float().mean(1)),
                   d_acc_fake=wmean((fake_logits < adv.threshold).float().mean(1)))
    if r1_gamma > 0:  # logged only where computed (lazy R1 skips steps)
        metrics["r1"] = wmean(r1)
    return (w * (loss_d + r1_gamma / 2 * r1)).mean(), metrics


def pair_logits(discriminate, real, fake, cond2, b: StepDraws, with_features: bool, backbone_grad: float = 1.0):
    """One discriminator forward of the 2B samples [real; fake] (B each): -> (logits (2B, L), feature leaves
    for R1 or None). `b`'s draws t_d (B,), noise_d (B, 2, ...), u (B, 2, K) and optionally head (B,),
    the head set judging each pair (a real sample is judged by its fake partner's set); `cond2` the
    conditioning of both halves; `backbone_grad` the weight of the loss in a trained backbone's gradient
    (DMD2's fake score encoder), 1 for frozen ones."""
    head = torch.cat([b.head, b.head]) if b.head is not None else None
    return discriminate(torch.cat([real, fake]), cond2, torch.cat([b.t_d, b.t_d]),
                        torch.cat([b.noise_d[:, 0], b.noise_d[:, 1]]), torch.cat([b.u[:, 0], b.u[:, 1]]),
                        return_features=with_features, head=head, backbone_grad=backbone_grad)


def r1_gamma_at(dc, step: int) -> float:
    """Lazy regularisation (Karras et al. 2020, StyleGAN2 Sec. 3.1): R1 on every r1_every-th step with
    gamma x r1_every, so its mean weight is gamma; 0 (no double backward) in between."""
    return dc.r1_gamma * dc.r1_every if step % dc.r1_every == 0 else 0.0


def g_metrics(loss_adv, loss_distill, loss_g) -> dict:
    """The student step's log row; `loss_distill` None (the term is off, never computed): not logged."""
    m = dict(loss_g=loss_adv.mean().detach(), loss_adv=loss_adv.mean().detach(), loss=loss_g.detach())
    if loss_distill is not None:
        m["loss_distill"] = loss_distill.mean().detach()
    return m
