"""DCGAN (distill.gan.dcgan): the N(0, 0.02) initialisation, the all-convolutional generator and strided
discriminator, batch norm's training and sampling statistics, class conditioning, export, a tiny run."""

import torch
from torch import nn

from distill.config import load_recipe
from distill.gan.architectures import load_generator
from distill.gan.batchnorm import ModeBatchNorm2d
from distill.gan.dcgan import DCGANDiscriminator, DCGANGenerator

from .gan_kind_checks import ROOT, check_resume_export_sample, tiny_kind_recipe


def tiny(**kw) -> DCGANGenerator:
    torch.manual_seed(0)
    return DCGANGenerator(**{**dict(resolution=16, channels=1, num_classes=3, z_dim=12, embed_dim=8, width=4,
                                    max_width=16), **kw})


def test_weights_are_drawn_from_n_0_002():
    """Sec. 4: every conv / transposed conv / linear weight ~ N(0, 0.02), layer by layer (the std within 4 %
    and a normal's kurtosis 3, so PyTorch's default uniform init, std 1 / sqrt(3 fan_in), fails both); batch-norm
    gains ~ N(1, 0.02), biases 0."""
    torch.manual_seed(0)
    G = DCGANGenerator(resolution=32, channels=3, num_classes=10, z_dim=100, embed_dim=16, width=32, max_width=256)
    D = DCGANDiscriminator(32, 3, 10, width=32, max_width=256)
    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    weights = [m.weight for net in (G, D) for m in net.modules() if isinstance(m, layers)]
    assert len(weights) == 8
    for w in weights:
        if w.numel() < 5000:
            continue
        x = w.detach().flatten().double()
        kurtosis = float(((x - x.mean()) ** 4).mean() / x.var() ** 2)
        assert abs(float(x.std()) / 0.02 - 1) < 0.04 and abs(float(x.mean())) < 0.002, (w.shape, float(x.std()))
        assert abs(kurtosis - 3) < 0.3, (w.shape, kurtosis)
    gains = torch.cat([m.weight.detach() for net in (G, D) for m in net.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(float(gains.mean()) - 1) < 0.005 and abs(float(gains.std()) - 0.02) < 0.005
    biases = [m.bias for net in (G, D) for m in net.modules() if getattr(m, "bias", None) is not None]
    assert biases and all(float(b.detach().abs().max()) == 0 for b in biases)
    assert abs(float(D.embed.weight.detach().std()) - 0.02) < 0.002  # the projection V too


def test_generator_is_all_convolutional_and_discriminator_strided():
    """G: transposed convolutions only (the first lifts [z, embed(y)] from 1x1 to r0 x r0, each next one doubles
    the resolution with stride 2), batch norm + ReLU before each, Tanh out; no pooling, no linear layer.
    D: stride-2 4x4 convolutions only, batch norm on all but the first, no pooling."""
    G = tiny()
    kinds = {type(m) for m in G.modules()} - {DCGANGenerator, nn.ModuleList}
    assert kinds == {nn.ConvTranspose2d, ModeBatchNorm2d, nn.Embedding}
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m.stride[0], i[0].shape[-1], o)))
             for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    with torch.no_grad():
        x = G(torch.randn(4, 12), [0, 1, 2, 0])
    for h in hooks:
        h.remove()
    assert [(s, a, o.shape[-1]) for s, a, o in seen] == [(1, 1, 4), (2, 4, 8), (2, 8, 16)]
    assert x.shape == (4, 1, 16, 16) and torch.equal(x, torch.tanh(seen[-1][2]))  # Tanh of the last layer
    assert len(G.norms) == len(G.ups) and G.ups[-1].out_channels == 1
    D = DCGANDiscriminator(16, 1, 3, width=4, max_width=16)
    assert [m.stride for m in D.convs] == [(2, 2), (2, 2)] and [m.kernel_size for m in D.convs] == [(4, 4)] * 2
    assert isinstance(D.norms[0], nn.Identity) and all(isinstance(n, nn.BatchNorm2d) for n in D.norms[1:])
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in D.modules())
    # LeakyReLU 0.2: features of the first layer alone are leaky_relu(conv(x), 0.2)
    x = torch.randn(2, 1, 16, 16)
    first = torch.nn.functional.leaky_relu(D.convs[0](x), 0.2)
    D.convs, D.norms = D.convs[:1], D.norms[:1]
    torch.testing.assert_close(D.features(x), first.flatten(1))


def test_batch_norm_uses_batch_statistics_in_training_and_running_ones_for_sampling():
    """A training forward (train mode, draws given) normalises with the batch's statistics: an image depends
    on the rest of its batch; the generator step (update_stats) folds them into the running statistics, the
    discriminator step's forward does not. Any other call (sampling, eval mode, the export) uses the running
    statistics: an image is a function of its z and label alone and repeats exactly."""
    G = tiny()
    z, y = torch.randn(6, 12), torch.tensor([0, 1, 2, 0, 1, 2])
    mean0 = G.norms[0].running_mean.clone()
    with torch.no_grad():
        a = G(z, y, draws={})
        b = G(torch.cat([z[:3], torch.randn(3, 12)]), y, draws={})
        assert not torch.allclose(a[:3], b[:3], atol=1e-4)  # batch statistics: the other samples matter
        assert torch.equal(G.norms[0].running_mean, mean0)  # no update without update_stats
        G(z, y, draws={}, update_stats=True)
        assert not torch.equal(G.norms[0].running_mean, mean0)
        mean1 = G.norms[0].running_mean.clone()
        for train in (True, False):  # train mode without draws (the trainer's sample grids), then eval mode
            G.train(train)
            c = G(z, y)
            torch.testing.assert_close(c[:3], G(z[:3], y[:3]), rtol=0, atol=1e-6)
            assert torch.equal(c, G(z, y)) and torch.equal(G.norms[0].running_mean, mean1)
        assert torch.equal(G(z, y, draws={}), c)  # eval mode: running statistics even with draws


def test_class_conditioning_and_truncation():
    G = tiny().eval()
    z = torch.randn(3, 12)
    with torch.no_grad():
        imgs = [G(z, torch.full((3,), c)) for c in range(3)]
        scale = float(imgs[0].abs().mean())  # small at initialisation (weights 0.02, running variance 1)
        assert all((imgs[i] - imgs[j]).abs().mean() > 0.1 * scale for i in range(3) for j in range(i))
        torch.testing.assert_close(G(z, [1, 1, 1], truncation=0.5), G(z * 0.5, [1, 1, 1]))
    assert tiny(num_classes=0).embed is None and tiny(num_classes=0)(z).shape == (3, 1, 16, 16)


def test_export_round_trip(tmp_path):
    G = tiny()
    with torch.no_grad():
        for _ in range(3):
            G(torch.randn(8, 12), torch.randint(0, 3, (8,)), draws={}, update_stats=True)
    G.eval().save_pretrained(str(tmp_path / "g"))
    H = load_generator(tmp_path / "g")
    assert isinstance(H, DCGANGenerator) and not H.training
    assert torch.equal(H.norms[1].running_var, G.norms[1].running_var)
    z, y = torch.randn(5, 12), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(H(z, y), G(z, y), rtol=0, atol=1e-6)


def dcgan_recipe(tmp_path, **train) -> dict:
    return tiny_kind_recipe(tmp_path, "dcgan", {}, {"loss": "ns"}, **train)


def test_tiny_run_resumes_exactly_and_exports(tmp_path):
    G = load_generator(check_resume_export_sample(tmp_path, dcgan_recipe))
    assert isinstance(G, DCGANGenerator) and float(G.norms[0].running_var.sub(1).abs().max()) > 0  # statistics moved


def test_recipes_are_the_papers_setup():
    for data, res in (("mnist", 28), ("cifar10", 32)):
        r = load_recipe(ROOT / "recipes" / f"gan-dcgan-{data}.yaml")
        assert (r.generator.kind, r.discriminator.kind, r.data.resolution) == ("dcgan", "dcgan", res)
        assert (r.gan.loss, r.gan.r1_gamma, r.gan.r2_gamma, r.gan.gp_lambda, r.gan.ortho) == ("ns", 0, 0, 0, 0)
        assert (r.train.learning_rate, r.train.lr_d, r.train.adam_beta1, r.train.adam_beta2) == (2e-4, None, 0.5, 0.999)


def test_standing_statistics_are_the_average_of_the_batches_statistics():
    """BigGAN's standing statistics: after `standing_statistics(G, 3, 8)` the first batch norm's running mean and
    variance are the plain average of the three batches' own statistics (computed here from the layer's inputs),
    not an exponential average of the training weights' batches; momentum and train/eval mode are restored, and
    sampling then uses the new statistics."""
    from distill.gan.batchnorm import standing_statistics

    G = tiny().eval()
    with torch.no_grad():  # running statistics of other weights (a raw generator's, beside EMA weights)
        G.norms[0].running_mean.fill_(3.0)
        G.norms[0].running_var.fill_(9.0)
    before = G(torch.randn(4, 12, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0]))
    seen = []
    hook = G.norms[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    standing_statistics(G, batches=3, batch=8, seed=5)
    hook.remove()
    assert len(seen) == 3 and not G.training and G.norms[0].momentum == 0.1
    means = torch.stack([h.mean(dim=(0, 2, 3)) for h in seen])  # (3, C)
    variances = torch.stack([h.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for h in seen])  # (3, C)
    torch.testing.assert_close(G.norms[0].running_mean, means.mean(0))
    torch.testing.assert_close(G.norms[0].running_var, variances.mean(0))
    after = G(torch.randn(4, 12, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0]))
    assert not torch.allclose(before, after)
    again = standing_statistics(tiny().eval(), batches=3, batch=8, seed=5)  # deterministic given the seed
    assert torch.equal(again.norms[0].running_mean, G.norms[0].running_mean)
