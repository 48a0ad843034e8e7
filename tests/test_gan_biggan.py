"""BigGAN (distill.gan.biggan): one shared class embedding read by every conditional batch norm,
hierarchical latents, the orthogonal regulariser's gradient, spectral norm, self-attention, class
conditioning, export, a tiny run with hinge + orthogonal regularisation."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from distill.config import load_recipe
from distill.errors import DistillError
from distill.gan.architectures import load_generator
from distill.gan.biggan import BigGANDiscriminator, BigGANGenerator, ConditionalBatchNorm
from distill.gan.regularizers import orthogonal_penalty

from .gan_kind_checks import ROOT, check_resume_export_sample, tiny_kind_recipe


def tiny(**kw) -> BigGANGenerator:
    torch.manual_seed(0)
    return BigGANGenerator(**{**dict(resolution=16, channels=1, num_classes=3, z_dim=12, shared_dim=8, width=4,
                                     max_width=16, attention_resolution=8), **kw})


def record_conditions(G):
    """Forward hooks on every conditional batch norm: name -> its gains and biases of the last forward."""
    seen = {}

    def keep(key):
        return lambda m, i, o: seen.__setitem__(key, o.detach())

    hooks = [getattr(m, part).register_forward_hook(keep(f"{name}.{part}")) for name, m in G.named_modules()
             if isinstance(m, ConditionalBatchNorm) for part in ("gain", "bias")]
    return seen, hooks


def test_one_shared_class_embedding_feeds_every_conditional_batch_norm():
    """The generator holds exactly one nn.Embedding, and every conditional batch norm's gains and biases read it:
    changing one class's embedding row changes the gains of every block for that class, and no others'."""
    G = tiny().eval()
    assert [type(m) for m in G.modules() if isinstance(m, nn.Embedding)] == [nn.Embedding]
    seen, hooks = record_conditions(G)
    z, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        G(z, y)
        before = dict(seen)
        G.shared.weight[1] += 0.5
        G(z, y)
    for h in hooks:
        h.remove()
    assert len(before) == 2 * 2 * len(G.blocks) == 8  # two CBNs per block, gain and bias each
    for k in before:
        changed = (seen[k] - before[k]).abs().amax(dim=1) > 1e-6  # (B,)
        assert changed.tolist() == [False, True, False, True], k


@pytest.mark.parametrize("chunk", [0, 1, 2])
def test_hierarchical_latents_each_block_reads_its_own_chunk(chunk):
    """z is split into 1 + n_blocks chunks: perturbing chunk k >= 1 changes block k-1's gains and biases only;
    chunk 0 (the input layer's) changes none of them, yet every chunk changes the image."""
    G = tiny().eval()
    assert G.chunks == [4, 4, 4]  # 16 px: levels 4, 8, 16 -> 2 blocks + the input layer
    seen, hooks = record_conditions(G)
    z, y = torch.randn(2, 12), torch.tensor([0, 2])
    dz = torch.zeros_like(z)
    dz[:, 4 * chunk:4 * chunk + 4] = 1.0
    with torch.no_grad():
        x0 = G(z, y)
        before = dict(seen)
        x1 = G(z + dz, y)
    for h in hooks:
        h.remove()
    assert (x1 - x0).abs().max() > 1e-5
    for k in before:
        moved = not torch.allclose(seen[k], before[k], rtol=0, atol=1e-7)
        assert moved == (chunk >= 1 and k.startswith(f"blocks.{chunk - 1}.")), k


def test_orthogonal_regulariser_gradient_is_the_closed_form():
    """R(W) = ||W W^T * (1 - I)||_F^2 (Brock et al. 2019, Eq. 3) has the gradient 4 (W W^T * (1 - I)) W: checked by
    autograd for the raw weight of every conv and linear layer of G (all spectrally normalised), W viewed as
    (out, in k k). The penalty reads the raw weights (not W / sigma) and leaves the shared embedding out."""
    G = tiny()
    layers = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    raws = [m.parametrizations.weight.original for m in layers]
    with torch.no_grad():  # away from the orthogonal initialisation, where sigma = 1 and W / sigma = W
        for raw in raws:
            raw.mul_(2).add_(0.1 * torch.randn_like(raw))
    penalty = orthogonal_penalty(G)
    penalty.backward()
    expected_value = 0.0
    for raw in raws:
        W = raw.detach().reshape(raw.shape[0], -1).double()
        off = (W @ W.t()) * (1 - torch.eye(W.shape[0], dtype=W.dtype))
        expected_value += float(off.square().sum())
        torch.testing.assert_close(raw.grad.reshape(W.shape).double(), 4 * off @ W, rtol=1e-4, atol=1e-6)
    assert float(penalty.detach()) == pytest.approx(expected_value, rel=1e-5)
    assert G.shared.weight.grad is None  # the embedding is not regularised
    with torch.no_grad():  # the normalised weights W / sigma would give another value
        normalised = sum(float(((w := m.weight.reshape(m.weight.shape[0], -1)) @ w.t() * (1 - torch.eye(w.shape[0])))
                               .square().sum()) for m in layers)
    assert abs(normalised - expected_value) > 1e-3 * expected_value


def test_spectral_norm_everywhere_and_one_attention_block():
    """Every conv and linear layer of G and D is spectrally normalised (and D's projection embedding); after
    power iterations each layer's largest singular value is 1. One self-attention block, at the asked resolution."""
    G = tiny()
    D = BigGANDiscriminator(16, 1, 3, width=4, max_width=16, attention_resolution=8)
    for net in (G, D):
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert parametrize.is_parametrized(D.embed, "weight") and not parametrize.is_parametrized(G.shared, "weight")
    G.train()
    with torch.no_grad():
        for _ in range(30):
            G(torch.randn(4, 12), [0, 1, 2, 0], draws={})  # a training forward runs the power iteration
    G.eval()
    conv = G.blocks[1].conv1
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2)
    assert float(sigma) == pytest.approx(1.0, abs=0.02)
    sizes = []
    hook = G.attention.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    with torch.no_grad():
        G(torch.randn(2, 12), [0, 1])
    hook.remove()
    assert sizes == [8] and float(G.attention.gamma.detach()) == 0.0  # SAGAN: gamma starts at 0
    assert D.attention is not None and D.attention_after == 0  # D's first block outputs 8 px
    with pytest.raises(DistillError, match="attention_resolution: 12 is not one of"):
        tiny(attention_resolution=12)


def test_sampling_is_deterministic_and_batch_independent():
    """Outside a training forward (train mode without draws: the trainer's sample grids; eval mode) an image is
    a function of its z and label alone: running batch-norm statistics, no power-iteration update."""
    G = tiny()
    with torch.no_grad():
        G(torch.randn(8, 12), torch.randint(0, 3, (8,)), draws={}, update_stats=True)
        u = G.blocks[0].conv1.parametrizations.weight[0]._u.clone()
        z, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
        a = G(z, y)
        torch.testing.assert_close(a[:2], G(z[:2], y[:2]), rtol=0, atol=1e-6)
        assert torch.equal(a, G(z, y)) and torch.equal(u, G.blocks[0].conv1.parametrizations.weight[0]._u)
        G(z, y, draws={})
        assert not torch.equal(u, G.blocks[0].conv1.parametrizations.weight[0]._u)  # training forward: it runs


def test_class_conditioning_truncation_and_export(tmp_path):
    G = tiny()
    with torch.no_grad():
        G(torch.randn(8, 12), torch.randint(0, 3, (8,)), draws={}, update_stats=True)
    G.eval()
    z = torch.randn(3, 12)
    with torch.no_grad():
        imgs = [G(z, torch.full((3,), c)) for c in range(3)]
        scale = float(imgs[0].abs().mean())
        assert all((imgs[i] - imgs[j]).abs().mean() > 0.05 * scale for i in range(3) for j in range(i))
        torch.testing.assert_close(G(z, [1, 1, 1], truncation=0.5), G(z * 0.5, [1, 1, 1]))
    G.save_pretrained(str(tmp_path / "g"))
    H = load_generator(tmp_path / "g")
    assert isinstance(H, BigGANGenerator) and not H.training
    assert H.state_dict().keys() == G.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(H.state_dict().values(), G.state_dict().values()))
    with torch.no_grad():  # equal up to float summation order (loaded tensors need not be 64-byte aligned)
        torch.testing.assert_close(H(z, [0, 1, 2]), G(z, [0, 1, 2]), rtol=0, atol=1e-5)
    U = tiny(num_classes=0)
    assert U.shared is None and U(z).shape == (3, 1, 16, 16)


def biggan_recipe(tmp_path, **train) -> dict:
    return tiny_kind_recipe(tmp_path, "biggan", {"biggan": {"shared_dim": 8, "attention_resolution": 8}},
                            {"loss": "hinge", "ortho": 1e-4}, **train)


def test_tiny_run_with_hinge_and_orthogonal_regulariser_resumes_exactly_and_exports(tmp_path):
    G = load_generator(check_resume_export_sample(tmp_path, biggan_recipe,
                                                  metrics=("loss_d", "loss_g", "grad_norm_d", "grad_norm_g", "ortho")))
    assert isinstance(G, BigGANGenerator) and float(G.attention.gamma.detach()) != 0.0  # the attention block trained


def test_recipes_are_the_papers_setup():
    for data, res in (("mnist", 28), ("cifar10", 32)):
        r = load_recipe(ROOT / "recipes" / f"gan-biggan-{data}.yaml")
        assert (r.generator.kind, r.discriminator.kind, r.data.resolution) == ("biggan", "biggan", res)
        assert (r.gan.loss, r.gan.ortho, r.gan.r1_gamma, r.gan.gp_lambda) == ("hinge", 1e-4, 0, 0)
        assert r.train.adam_beta1 == 0.0 and r.train.adam_beta2 == 0.999 and r.train.learning_rate == 2e-4
        assert r.generator.biggan.attention_resolution in (14, 16)
