import math

import pytest
import torch
from torch import nn

from distill.errors import DistillError
from distill.gan.losses import ADV_LOSSES, get_adv_loss, gradient_penalty, lazy_weight, r1_penalty, r2_penalty
from distill.gan.regularizers import (MinibatchDiscrimination, MinibatchStd, apply_spectral_norm,
                                      clip_weights)


def _grad(fn, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


def test_registry_unpacks_and_rejects_unknown():
    assert set(ADV_LOSSES) == {"ns", "saturating", "hinge", "lsgan", "wgan", "rpgan"}
    assert [k for k, v in ADV_LOSSES.items() if v.paired] == ["rpgan"]
    d_loss, g_loss = ADV_LOSSES["hinge"][:2]
    assert d_loss(torch.zeros(3), torch.zeros(3)).shape == (3,)
    with pytest.raises(DistillError, match="unknown adversarial loss"):
        get_adv_loss("nope")


@pytest.mark.parametrize("name", list(ADV_LOSSES))
def test_patch_logits_are_averaged_per_sample(name):
    adv = ADV_LOSSES[name]
    d_loss = adv.d_loss
    g_loss = (lambda f: adv.g_loss(f, torch.zeros_like(f))) if adv.paired else adv.g_loss
    real, fake = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    assert d_loss(real, fake).shape == (4,) and g_loss(fake).shape == (4,)
    # a constant map equals the per-sample scalar
    r, f = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(d_loss(r[:, None, None].expand(4, 2, 3), f[:, None, None].expand(4, 2, 3)),
                               d_loss(r, f))
    torch.testing.assert_close(g_loss(f[:, None].expand(4, 5)), g_loss(f))


def test_bce_values():
    d_loss, g_ns, _ = ADV_LOSSES["ns"][:3]
    zero = torch.zeros(2)
    torch.testing.assert_close(d_loss(zero, zero), torch.full((2,), 2 * math.log(2)))
    torch.testing.assert_close(g_ns(zero), torch.full((2,), math.log(2)))
    torch.testing.assert_close(ADV_LOSSES["saturating"].g_loss(zero), torch.full((2,), -math.log(2)))
    # dD/dreal = -sigmoid(-r), dD/dfake = sigmoid(f)
    torch.testing.assert_close(_grad(lambda r: d_loss(r, zero), torch.tensor([0.0, 2.0])),
                               -torch.sigmoid(-torch.tensor([0.0, 2.0])))


def test_saturating_gradient_vanishes_at_confident_discriminator():
    confident = torch.tensor([-10.0, -20.0])  # D(G(z)) = sigmoid(logit) -> 0
    g_sat = _grad(ADV_LOSSES["saturating"].g_loss, confident)
    g_ns = _grad(ADV_LOSSES["ns"].g_loss, confident)
    assert g_sat.abs().max() < 1e-4  # -sigmoid(logit) -> 0
    torch.testing.assert_close(g_ns, torch.full((2,), -1.0), atol=1e-4, rtol=0)  # -sigmoid(-logit) -> -1
    # both push the fake logit up (negative gradient on a loss to minimise)
    assert (g_sat < 0).all() and (g_ns < 0).all()


def test_hinge_values_and_gradient():
    d_loss, g_loss, _ = ADV_LOSSES["hinge"][:3]
    r, f = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    torch.testing.assert_close(d_loss(r, f), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(_grad(lambda x: d_loss(x, f), r), torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(_grad(lambda x: d_loss(r, x), f), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(g_loss(f), -f)
    torch.testing.assert_close(_grad(g_loss, f), torch.full((2,), -1.0))


def test_lsgan_values_and_gradient():
    d_loss, g_loss, thr = ADV_LOSSES["lsgan"][:3]
    assert thr == 0.5
    torch.testing.assert_close(d_loss(torch.ones(2), torch.zeros(2)), torch.zeros(2))
    torch.testing.assert_close(d_loss(torch.zeros(2), torch.ones(2)), torch.ones(2))
    torch.testing.assert_close(g_loss(torch.tensor([1.0, 3.0])), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(_grad(g_loss, torch.tensor([1.0, 3.0])), torch.tensor([0.0, 2.0]))


def test_wgan_values_and_gradient():
    d_loss, g_loss, _ = ADV_LOSSES["wgan"][:3]
    r, f = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 1.0])
    torch.testing.assert_close(d_loss(r, f), torch.tensor([-2.0, 0.0]))
    torch.testing.assert_close(_grad(lambda x: d_loss(x, f), r), torch.full((2,), -1.0))
    torch.testing.assert_close(_grad(lambda x: d_loss(r, x), f), torch.full((2,), 1.0))
    torch.testing.assert_close(_grad(g_loss, f), torch.full((2,), -1.0))


def test_relativistic_pairing_values_and_gradient():
    """Eq. 2, R3GAN: L_D = softplus(D(G(z)) - D(x)), L_G = softplus(D(x) - D(G(z))), hand-computed."""
    adv = ADV_LOSSES["rpgan"]
    r, f = torch.tensor([1.0, 0.0, -2.0]), torch.tensor([-1.0, 0.0, 1.0])
    # softplus(t) = log(1 + e^t) at t = f - r = -2, 0, 3
    torch.testing.assert_close(adv.d_loss(r, f), torch.tensor([math.log(1 + math.exp(-2)), math.log(2),
                                                               math.log(1 + math.exp(3))]))
    torch.testing.assert_close(adv.g_loss(f, r), torch.tensor([math.log(1 + math.exp(2)), math.log(2),
                                                               math.log(1 + math.exp(-3))]))
    # only the difference matters: shifting both logits changes nothing (what makes it relativistic)
    torch.testing.assert_close(adv.d_loss(r + 5.0, f + 5.0), adv.d_loss(r, f))
    # dL_D/dreal = -sigmoid(f - r), dL_D/dfake = +sigmoid(f - r); dL_G/dfake = -sigmoid(r - f)
    sig = torch.sigmoid(f - r)
    torch.testing.assert_close(_grad(lambda x: adv.d_loss(x, f), r), -sig)
    torch.testing.assert_close(_grad(lambda x: adv.d_loss(r, x), f), sig)
    torch.testing.assert_close(_grad(lambda x: adv.g_loss(x, r), f), -torch.sigmoid(r - f))
    # accuracy is pairwise: a pair counts when D ranks the real sample above its fake partner
    acc_r, acc_f = adv.accuracy(r, f)
    torch.testing.assert_close(acc_r, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(acc_f, acc_r)
    acc_r, acc_f = ADV_LOSSES["ns"].accuracy(r, f)  # unpaired: each logit against the threshold
    torch.testing.assert_close(acc_r, torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(acc_f, torch.tensor([1.0, 0.0, 0.0]))


def test_paired_loss_needs_a_caller_that_pairs():
    with pytest.raises(DistillError, match="pairs real and fake"):
        get_adv_loss("rpgan")
    assert get_adv_loss("rpgan", paired=True).paired
    assert get_adv_loss("hinge", paired=True) is ADV_LOSSES["hinge"]


def test_r2_penalty_and_gradient_of_a_known_discriminator():
    """D(x) = sum_i a_i x_i^2 + b.x: grad = 2 a x + b, so R2 = ||2 a x + b||^2 per sample; and the
    parameter gradient of the penalty is known in closed form."""
    a = torch.tensor([1.0, -0.5, 2.0], requires_grad=True)
    b = torch.tensor([0.5, 0.0, -1.0], requires_grad=True)
    fake = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]], requires_grad=True)
    out = (fake.square() * a).sum(1) + fake @ b  # (B,)
    r2 = r2_penalty(out, fake)
    expected = torch.tensor([(2 + 0.5) ** 2 + (-2.0) ** 2 + (-1.0) ** 2, 0.5 ** 2 + 1.0 ** 2 + (4 - 1.0) ** 2])
    torch.testing.assert_close(r2, expected)  # [11.25, 10.25]
    r2.sum().backward()
    # d/db sum_n ||2 a x_n + b||^2 = sum_n 2 (2 a x_n + b)
    g_n = 2 * a.detach() * fake.detach() + b.detach()
    torch.testing.assert_close(b.grad, (2 * g_n).sum(0))
    # d/da = sum_n 2 (2 a x_n + b) * 2 x_n
    torch.testing.assert_close(a.grad, (4 * g_n * fake.detach()).sum(0))
    # R1 and R2 are the same functional, on real and on generated samples
    x = fake.detach().clone().requires_grad_(True)
    torch.testing.assert_close(r1_penalty((x.square() * a.detach()).sum(1) + x @ b.detach(), x), expected)


def test_lazy_weight():
    assert [lazy_weight(0.5, 4, s) for s in range(6)] == [2.0, 0.0, 0.0, 0.0, 2.0, 0.0]
    assert lazy_weight(0.0, 4, 0) == 0.0 and lazy_weight(1.0, 1, 7) == 1.0


def test_r1_penalty_on_known_functions():
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(5, 2, requires_grad=True)
    torch.testing.assert_close(r1_penalty(x @ w + 1.0, x), torch.full((5,), 25.0))  # ||w||^2
    x2 = torch.randn(5, 3, requires_grad=True)
    torch.testing.assert_close(r1_penalty((x2**2).sum(1), x2), 4 * (x2.detach() ** 2).sum(1))
    # patch outputs (B, 2): sum over the map
    x3 = torch.randn(4, 2, requires_grad=True)
    torch.testing.assert_close(r1_penalty(torch.stack([x3 @ w, x3 @ w], 1), x3), torch.full((4,), 100.0))
    # differentiable (used inside loss_d.backward())
    lin = nn.Linear(2, 1)
    xr = torch.randn(6, 2, requires_grad=True)
    r1_penalty(lin(xr).squeeze(1), xr).mean().backward()
    torch.testing.assert_close(lin.weight.grad, 2 * lin.weight.detach())


def test_gradient_penalty_on_linear_critic():
    for scale, expected in ((3.0, 4.0), (1.0, 0.0), (0.5, 0.25)):
        w = torch.tensor([0.6, 0.8]) * scale  # ||grad D|| = scale everywhere
        critic = lambda x, w=w: x @ w  # noqa: E731
        gp = gradient_penalty(critic, torch.randn(7, 2), torch.randn(7, 2))
        assert gp.shape == (7,)
        torch.testing.assert_close(gp, torch.full((7,), expected), atol=1e-5, rtol=0)
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 2.0]]))
    gradient_penalty(lambda x: lin(x).squeeze(1), torch.randn(8, 2), torch.randn(8, 2)).mean().backward()
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = [0, 2]
    torch.testing.assert_close(lin.weight.grad, torch.tensor([[0.0, 2.0]]), atol=1e-5, rtol=0)


def test_spectral_norm_bounds_largest_singular_value():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(10.0)
    assert torch.linalg.matrix_norm(net[0].weight, ord=2) > 5
    apply_spectral_norm(net, n_power_iterations=5)
    for _ in range(20):  # power iteration runs in training mode
        net(torch.randn(3, 8))
    for m in (net[0], net[2]):
        sigma = torch.linalg.matrix_norm(m.weight.detach(), ord=2)
        assert sigma <= 1.0 + 1e-3 and sigma > 0.99
    x, y = torch.randn(50, 8), torch.randn(50, 8)
    net.eval()
    with torch.no_grad():  # 1-Lipschitz network
        assert ((net(x) - net(y)).norm(dim=1) <= (x - y).norm(dim=1) + 1e-4).all()


def test_minibatch_std_on_feature_maps():
    x = torch.randn(8, 3, 4, 4)
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (8, 4, 4, 4)
    torch.testing.assert_close(out[:, :3], x)
    # group i % 2 of size 4: std over the group per feature and pixel, averaged, as a constant channel
    y = x.reshape(4, 2, 3, 4, 4)
    expect = (y.var(0, unbiased=False) + 1e-8).sqrt().flatten(1).mean(1)  # (2,)
    torch.testing.assert_close(out[:, 3], expect.repeat(4)[:, None, None].expand(8, 4, 4))


def test_minibatch_layers_and_clipping():
    x = torch.randn(8, 5)
    out = MinibatchStd(group_size=4)(x)
    assert out.shape == (8, 6)
    torch.testing.assert_close(out[:, :5], x)
    assert (MinibatchStd()(torch.ones(8, 5))[:, 5] < 1e-3).all()  # identical samples: std ~ 0
    mbd = MinibatchDiscrimination(5, n_kernels=3, kernel_dim=2)
    o = mbd(x)
    assert o.shape == (8, 8)
    same = mbd(torch.ones(4, 5))[:, 5:]  # identical samples: each sees exp(0) = 1 from the 3 others
    torch.testing.assert_close(same, torch.full((4, 3), 3.0))
    lin = nn.Linear(4, 4)
    clip_weights(lin, 0.01)
    assert all(p.abs().max() <= 0.01 for p in lin.parameters())
