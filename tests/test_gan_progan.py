"""Progressive GAN (distill.gan.progan): the growth schedule, continuity across a growth step (fade-in),
equalized learning rate, class conditioning, export mid-growth, and a tiny run that resumes exactly
across a growth boundary and exports a folder `distill sample` loads."""

import math

import pytest
import torch
import torch.nn.functional as F

from distill.gan.architectures import load_generator
from distill.gan.layers import LRELU_SLOPE, EqualizedConv2d, EqualizedLinear
from distill.gan.progan import ProGANDiscriminator, ProGANGenerator, growth_stage

from .gan_kind_checks import ROOT, check_resume_export_sample, tiny_kind_recipe


def tiny(phase_steps: int = 1000, **kw):
    torch.manual_seed(0)
    G = ProGANGenerator(**{**dict(resolution=16, channels=1, num_classes=3, z_dim=8, width=4, max_width=16,
                                  phase_steps=phase_steps), **kw})
    D = ProGANDiscriminator(16, 1, 3, width=4, max_width=16, mbstd_group=2, phase_steps=phase_steps)
    return G, D


@pytest.mark.parametrize("levels,step,stage", [
    (3, 0, (0, 1.0)), (3, 9, (0, 1.0)),  # the lowest level for P = 10 steps
    (3, 10, (1, 0.0)), (3, 15, (1, 0.5)), (3, 19, (1, 0.9)),  # level 1 fades in over P steps
    (3, 20, (1, 1.0)), (3, 29, (1, 1.0)),  # and is stable for P steps
    (3, 30, (2, 0.0)), (3, 37, (2, 0.7)), (3, 40, (2, 1.0)), (3, 10 ** 7, (2, 1.0)),  # the last level for good
    (4, 40, (2, 1.0)), (4, 50, (3, 0.0)), (4, 52, (3, 0.2)), (4, 60, (3, 1.0)), (4, 999, (3, 1.0)),
])
def test_growth_schedule(levels, step, stage):
    level, alpha = growth_stage(step, 10, levels)
    assert level == stage[0] and alpha == pytest.approx(stage[1], abs=1e-12)


def test_both_networks_keep_the_stage_as_a_buffer():
    G, D = tiny(phase_steps=10)
    assert G.current() == D.current() == (2, 1.0)  # built fully grown
    for net in (G, D):
        net.set_step(15)
        assert net.current() == (1, 0.5) and "stage" in net.state_dict()


def test_output_is_continuous_across_a_growth_step():
    """At the step where level l starts to fade in (alpha 0) the images equal the previous stage's exactly; at
    alpha eps they move by eps times the full fade's change (G is linear in alpha), not by a jump; D's logits
    move smoothly too (alpha 0 is the previous stage's D up to pooling round-off)."""
    P = 1000
    G, D = (net.double() for net in tiny(phase_steps=P))  # float64: slopes by finite differences
    z, y = torch.randn(6, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    x_real = torch.rand(6, 1, 16, 16, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        for level in (1, 2):
            start = P * (2 * level - 1)  # first step of the fade-in of `level`

            def at(step):
                G.set_step(step)
                D.set_step(step)
                return G(z, y), D(x_real, y)

            (img_prev, d_prev), (img0, d0) = at(start - 1), at(start)
            assert G.current() == (level, 0.0)
            assert torch.equal(img0, img_prev)  # alpha 0 is the previous stage, exactly
            assert torch.allclose(d0, d_prev, atol=1e-9)
            (img1, d1), (img2, d2), (img_full, _) = at(start + 1), at(start + 2), at(start + P)  # eps, 2 eps, 1
            assert G.current() == (level, 1.0)
            jump = (img_full - img0).abs().max()
            assert jump > 0.05  # the new level changes the images ...
            eps = 1 / P
            assert torch.allclose(img1 - img0, eps * (img_full - img0), atol=1e-9)  # ... by O(eps) at alpha eps
            assert float((img2 - img0).abs().max()) == pytest.approx(2 * float((img1 - img0).abs().max()), rel=1e-6)
            slope1, slope2 = (d1 - d0) / eps, (d2 - d0) / (2 * eps)
            # D moves by O(eps) too: the same bounded slope over eps and 2 eps (a jump would give slopes ~1/eps,
            # halving from eps to 2 eps); leaky ReLU kinks and the minibatch std bend it a little
            assert torch.allclose(slope1, slope2, rtol=0.1, atol=0.05)
            assert float(slope1.abs().max()) < 20


def equalized_layers(*nets):
    return [m for net in nets for m in net.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]


def test_equalized_learning_rate_keeps_unit_variance_weights_with_a_runtime_scale():
    """Every conv and dense layer of both networks stores N(0, 1) weights (whatever its fan-in) and scales them
    at run time by He's constant sqrt(2 / fan_in) (sqrt(2) after the leaky ReLU, 1 for the linear toRGB and
    output layers), so Adam's steps on the stored weights are the same size relative to every layer's scale."""
    G, D = tiny(width=16, max_width=64)
    layers = equalized_layers(G, D)
    assert len(layers) == 1 + 5 + 3 + 3 + 4 + 3  # G: dense, convs, toRGBs; D: fromRGBs, block convs, conv + fc + out
    fan_ins = set()
    for m in layers:
        w = m.weight
        fan_in = w[0].numel()
        fan_ins.add(fan_in)
        assert m.weight_gain == pytest.approx(1 / math.sqrt(fan_in))
        if w.numel() >= 2000:  # enough entries for the sample std
            assert abs(float(w.detach().std()) - 1.0) < 0.08, (type(m).__name__, tuple(w.shape))
        # the runtime scale: the layer computes with weight * sqrt(2 / fan_in) (activated) or / sqrt(fan_in)
        x = torch.randn(4, *([fan_in] if w.dim() == 2 else [w.shape[1], 6, 6]))
        with torch.no_grad():
            m.bias.normal_() if m.bias is not None else None
            gain = math.sqrt(2 / fan_in) if m.activation else 1 / math.sqrt(fan_in)
            b = m.bias * (math.sqrt(2) if m.activation else 1) if m.bias is not None else None
            ref = F.linear(x, w * gain, b) if w.dim() == 2 else F.conv2d(x, w * gain, b, padding=w.shape[-1] // 2)
            ref = F.leaky_relu(ref, LRELU_SLOPE) if m.activation else ref
            assert torch.allclose(m(x), ref, atol=1e-5)
    assert len(fan_ins) >= 5  # many different fan-ins, all with unit-variance storage


def test_class_conditioning():
    G, D = tiny()
    z = torch.randn(1, 8).expand(3, -1)
    with torch.no_grad():
        x = G(z, torch.tensor([0, 1, 2]))
        assert (x[0] - x[1]).abs().max() > 1e-3 and (x[1] - x[2]).abs().max() > 1e-3
        D.embed.weight.normal_()
        logits = D(x[:1].expand(3, -1, -1, -1), torch.tensor([0, 1, 2]))
        assert (logits[0] - logits[1]).abs() > 1e-4
    with pytest.raises(Exception, match="class-conditional"):
        G(z)


def test_export_mid_growth_samples_at_its_stage(tmp_path):
    """Exported during a fade-in, the folder loads at that stage (at full size) and gives the same images."""
    G, _ = tiny(phase_steps=10)
    G.set_step(33)  # level 2 fading in, alpha 0.3
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        before = G(z, y, truncation=0.7)
        G.save_pretrained(str(tmp_path / "g"))
        H = load_generator(tmp_path / "g")
        assert isinstance(H, ProGANGenerator) and H.current() == (2, pytest.approx(0.3))
        assert torch.equal(H(z, y, truncation=0.7), before) and before.shape == (4, 1, 16, 16)
        H.set_step(40)
        assert not torch.allclose(H(z, y, truncation=0.7), before)  # the stage matters


def progan_recipe(folder, **train) -> dict:
    """16 px digits (levels 4, 8, 16), phase_steps 2: steps 0-1 at 4 px, 2-3 fading in 8 px, 4-5 at 8 px,
    6-7 fading in 16 px, 16 px from step 8; the paper's losses and Adam."""
    return tiny_kind_recipe(folder, "progan", {"progan": {"phase_steps": 2}},
                            {"loss": "wgan", "gp_lambda": 10.0, "drift": 0.001},
                            learning_rate=1e-3, adam_beta1=0.0, adam_beta2=0.99, **train)


def test_tiny_run_resumes_exactly_across_growth_and_exports_its_stage(tmp_path):
    """Interrupted at step 3 (inside the fade-in of 8 px: the resumed run starts at alpha 0.5) and resumed:
    the same weights, stage buffers, EMA, optimizer states and metrics as an uninterrupted run, bitwise;
    the export (step 6: 16 px about to fade in) carries its stage, and `distill sample` draws from it."""
    export = check_resume_export_sample(tmp_path, progan_recipe,
                                        metrics=("loss_d", "loss_g", "gp", "grad_norm_d", "grad_norm_g"))
    G = load_generator(export)
    assert G.current() == (2, 0.0)
    z, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        exported = G(z, y)
        G.set_step(5)  # alpha 0 of 16 px: the 8 px stage's images, upsampled
        assert torch.equal(exported, G(z, y))
        G.set_step(7)
        assert not torch.allclose(exported, G(z, y))


def test_recipes_are_the_papers_setup():
    from distill.config import load_recipe

    for data, res in (("mnist", 28), ("cifar10", 32)):
        r = load_recipe(ROOT / "recipes" / f"gan-progan-{data}.yaml")
        assert (r.generator.kind, r.discriminator.kind, r.data.resolution) == ("progan", "progan", res)
        assert (r.gan.loss, r.gan.gp_lambda, r.gan.drift, r.gan.r1_gamma) == ("wgan", 10.0, 0.001, 0.0)
        assert (r.train.learning_rate, r.train.adam_beta1, r.train.adam_beta2) == (1e-3, 0.0, 0.99)
