"""Adversarial losses, R1 and the WGAN-GP gradient penalty, as small per-sample functions.

Every loss takes discriminator *logits* (raw outputs, no sigmoid) shaped (B,) or (B, ...) -- a
patch discriminator's map is averaged over its non-batch dims -- and returns a per-sample tensor
(B,); callers take `.mean()` (or weight the samples). Registry for trainers:

    from distill.gan.losses import ADV_LOSSES, r1_penalty
    adv = ADV_LOSSES["hinge"]
    loss_d = adv.d_loss(real_logits, fake_logits).mean()
    loss_g = adv.g_loss(fake_logits).mean()

A *paired* loss (`adv.paired`, the relativistic "rpgan") compares each fake sample with a real one
in both players' losses: its generator loss is `adv.g_loss(fake_logits, real_logits)`, so a trainer
must compute D on real samples in the generator step too; `get_adv_loss(name)` refuses paired
losses unless the caller says it handles them (`paired=True`).

With D(x) = sigmoid(logit) and softplus(t) = log(1 + e^t):
    -log D(x)      = softplus(-logit)
    -log(1 - D(x)) = softplus(logit)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from ..errors import DistillError

Tensor = torch.Tensor


def _per_sample(t: Tensor) -> Tensor:
    """(B,) or (B, ...) -> (B,): mean over every non-batch dim."""
    return t.reshape(t.shape[0], -1).mean(dim=1) if t.dim() > 1 else t


# ---------------------------------------------------------------------------------------------
# Discriminator losses (shared by the non-saturating and saturating generators)


def bce_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """-log D(x) - log(1 - D(G(z)))  (Eq. 1, Goodfellow et al. 2014). (B,), (B,) -> (B,)"""
    return _per_sample(F.softplus(-real_logits)) + _per_sample(F.softplus(fake_logits))


def ns_g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, Sec. 3).
    d/dlogit = -sigmoid(-logit) -> -1 when D(G(z)) -> 0: strong gradient early on."""
    return _per_sample(F.softplus(-fake_logits))


def saturating_g_loss(fake_logits: Tensor) -> Tensor:
    """Plain minimax generator loss log(1 - D(G(z))) = -softplus(logit) (Eq. 1, Goodfellow et
    al. 2014). d/dlogit = -sigmoid(logit) -> 0 when D(G(z)) -> 0: the gradient vanishes exactly
    when the discriminator is confident."""
    return -_per_sample(F.softplus(fake_logits))


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """max(0, 1 - D(x)) + max(0, 1 + D(G(z)))  (Lim & Ye 2017; Miyato et al. 2018, Eq. 16)."""
    return _per_sample(F.relu(1.0 - real_logits)) + _per_sample(F.relu(1.0 + fake_logits))


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """-D(G(z))  (Miyato et al. 2018, Eq. 17)."""
    return -_per_sample(fake_logits)


def lsgan_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """1/2 (D(x) - 1)^2 + 1/2 D(G(z))^2  (Mao et al. 2017, Eq. 2 with a=0, b=1)."""
    return 0.5 * _per_sample((real_logits - 1.0) ** 2) + 0.5 * _per_sample(fake_logits**2)


def lsgan_g_loss(fake_logits: Tensor) -> Tensor:
    """1/2 (D(G(z)) - 1)^2  (Mao et al. 2017, Eq. 2 with c=1)."""
    return 0.5 * _per_sample((fake_logits - 1.0) ** 2)


def wgan_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Critic loss D(G(z)) - D(x)  (Arjovsky et al. 2017, Eq. 3, negated for minimisation).
    Needs a Lipschitz constraint: weight clipping or the gradient penalty below."""
    return _per_sample(fake_logits) - _per_sample(real_logits)


def wgan_g_loss(fake_logits: Tensor) -> Tensor:
    """-D(G(z))  (Arjovsky et al. 2017, Algorithm 1)."""
    return -_per_sample(fake_logits)


def rp_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Relativistic pairing loss of the discriminator, f(D(G(z)) - D(x)) with f = softplus
    (Huang et al. 2024, R3GAN, Eq. 2; Jolicoeur-Martineau 2019): each fake sample is judged against
    its real partner, so D must rank the pair, not classify each sample. (B,), (B,) -> (B,)"""
    return _per_sample(F.softplus(fake_logits - real_logits))


def rp_g_loss(fake_logits: Tensor, real_logits: Tensor) -> Tensor:
    """The generator's side of Eq. 2 (R3GAN): f(D(x) - D(G(z))), f = softplus. The gradient
    flows through fake_logits; real_logits may be detached. (B,), (B,) -> (B,)"""
    return _per_sample(F.softplus(real_logits - fake_logits))


class AdvLoss(NamedTuple):
    d_loss: Callable[[Tensor, Tensor], Tensor]  # (real_logits, fake_logits) -> (B,)
    g_loss: Callable[..., Tensor]  # fake_logits -> (B,); paired: (fake_logits, real_logits) -> (B,)
    threshold: float = 0.0  # logit above which D calls a sample "real" (for d_acc_* metrics)
    paired: bool = False  # the generator loss needs D's logits of real samples (relativistic)

    def accuracy(self, real_logits: Tensor, fake_logits: Tensor) -> tuple[Tensor, Tensor]:
        """D's per-sample accuracy on real and fake samples (B,) each: logits against `threshold`;
        for a paired loss, whether each pair is ranked correctly (D(x) > D(G(z))), for both."""
        r, f = _per_sample(real_logits.detach().float()), _per_sample(fake_logits.detach().float())
        if self.paired:
            right = (r > f).float()
            return right, right
        return (r > self.threshold).float(), (f < self.threshold).float()


ADV_LOSSES: dict[str, AdvLoss] = {
    "ns": AdvLoss(bce_d_loss, ns_g_loss),
    "saturating": AdvLoss(bce_d_loss, saturating_g_loss),
    "hinge": AdvLoss(hinge_d_loss, hinge_g_loss),
    "lsgan": AdvLoss(lsgan_d_loss, lsgan_g_loss, threshold=0.5),
    "wgan": AdvLoss(wgan_d_loss, wgan_g_loss),
    "rpgan": AdvLoss(rp_d_loss, rp_g_loss, paired=True),
}


def get_adv_loss(name: str, paired: bool = False) -> AdvLoss:
    """The registry entry `name`; a paired loss only for callers that pass real logits to its
    generator loss (`paired=True`)."""
    if name not in ADV_LOSSES:
        raise DistillError(f"unknown adversarial loss '{name}' (choose from {', '.join(ADV_LOSSES)})")
    if ADV_LOSSES[name].paired and not paired:
        single = [k for k, v in ADV_LOSSES.items() if not v.paired]
        raise DistillError(f"adversarial loss '{name}' pairs real and fake samples, which this trainer does not "
                           f"support (choose from {', '.join(single)})")
    return ADV_LOSSES[name]


# ---------------------------------------------------------------------------------------------
# Gradient penalties


def _grad_sq_norm(outputs: Tensor, inputs: Tensor | list[Tensor]) -> Tensor:
    """||d sum(outputs) / d inputs||^2 per sample, graph kept for the backward pass. -> (B,)"""
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    grads = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return sum(g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads)


def r1_penalty(real_outputs: Tensor, real_inputs: Tensor | list[Tensor]) -> Tensor:
    """R1 = ||grad_x D(x)||^2 on real data, per sample (B,) (Mescheder et al. 2018, Eq. 9).

    The caller weights it by gamma / 2. `real_outputs` are D's logits for `real_inputs`, which
    must have been created with `requires_grad_(True)` before the forward pass; (B, ...) outputs
    are summed, so a patch discriminator's map works too (each sample's output depends only on
    its own input, so summing over the batch gives per-sample gradients)."""
    return _grad_sq_norm(real_outputs, real_inputs)


def r2_penalty(fake_outputs: Tensor, fake_inputs: Tensor | list[Tensor]) -> Tensor:
    """R2 = ||grad_x D(x)||^2 at generated samples, per sample (B,) (Roth et al. 2017; R3GAN, Sec. 2.2):
    with R1 it keeps D smooth on both distributions, which R3GAN's convergence argument needs. The
    caller weights it by gamma / 2; `fake_inputs` must require grad before D's forward pass."""
    return _grad_sq_norm(fake_outputs, fake_inputs)


def drift_penalty(real_logits: Tensor) -> Tensor:
    """Progressive GAN's drift term D(x)^2 on real logits, weighted by eps_drift = 0.001 (Karras et al.
    2018, App. A.1): keeps a WGAN critic's outputs from drifting far from 0. (B,) -> (B,)"""
    return _per_sample(real_logits.float() ** 2)


def lazy_weight(gamma: float, every: int, step: int) -> float:
    """Lazy regularisation (Karras et al. 2020, Sec. 3.1): a penalty computed only on every
    `every`-th step, weighted by gamma x every so its mean weight stays gamma; 0 in between."""
    return gamma * every if gamma > 0 and step % every == 0 else 0.0


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     center: float = 1.0, generator: torch.Generator | None = None,
                     eps: Tensor | None = None) -> Tensor:
    """WGAN-GP: (||grad D(x_hat)||_2 - center)^2 at x_hat = eps x + (1 - eps) G(z), eps ~ U[0,1]
    per sample (Gulrajani et al. 2017, Eq. 3; drawn here unless `eps` (B,) is given). real, fake:
    (B, ...) -> (B,); weight by lambda (10 in the paper)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    if eps is None:
        eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    eps = eps.reshape(shape).to(real)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    norm = (_grad_sq_norm(critic(x_hat), x_hat) + 1e-12).sqrt()
    return (norm - center) ** 2
