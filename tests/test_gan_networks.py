"""The StyleGAN2-class generator and the residual discriminator (distill.gan): demodulation,
style mixing, truncation, noise, projection, export and reload in a fresh process."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill.errors import DistillError
from distill.gan.discriminator import ResidualDiscriminator
from distill.gan.architectures import is_generator_folder, load_generator
from distill.gan.generator import StyleGAN2Generator, mix_styles
from distill.gan.layers import ModulatedConv2d, resolution_pyramid

ROOT = Path(__file__).resolve().parent.parent


def tiny_generator(**kw) -> StyleGAN2Generator:
    torch.manual_seed(0)
    cfg = dict(resolution=16, channels=1, num_classes=3, z_dim=8, w_dim=8, width=4, max_width=8)
    return StyleGAN2Generator(**{**cfg, **kw})


def test_demodulation_gives_unit_output_variance():
    """Eq. 3 (Karras et al. 2020): for i.i.d. unit-variance inputs each output channel has unit
    variance, whatever the weights' scale and the styles; without demodulation it does not."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 32, 3, w_dim=8, demodulate=True)
    with torch.no_grad():
        conv.weight.mul_(5.0)  # scale of the weights is irrelevant after demodulation
    x = torch.randn(8, 64, 24, 24)
    styles = torch.exp(torch.randn(8, 64))  # per-sample styles over two orders of magnitude
    with torch.no_grad():
        y = conv.modulated(x, styles)[:, :, 1:-1, 1:-1]  # interior: no zero padding in the receptive field
    var = y.var(dim=(2, 3))  # (B, out)
    assert abs(float(var.mean()) - 1.0) < 0.05, float(var.mean())
    assert float(var.min()) > 0.7 and float(var.max()) < 1.3, (float(var.min()), float(var.max()))
    conv.demodulate = False
    with torch.no_grad():
        plain = conv.modulated(x, styles)[:, :, 1:-1, 1:-1].var(dim=(2, 3))
    assert float(plain.mean()) > 2.0 or float(plain.mean()) < 0.5  # modulation alone leaves the scale free


def test_style_mixing_layers_follow_w1_then_w2():
    """Forward hooks on every layer's affine map (w -> styles) record which w each layer reads:
    layers before a sample's crossover read w(z1), the others w(z2); cutoff = num_ws means no mixing."""
    G = tiny_generator()
    assert G.num_ws == 6  # 16 px: levels 4, 8, 16 -> convs 1 + 2 + 2, plus the last toRGB
    index = {}  # affine module -> style index
    for j, layer in enumerate(G.layers):
        index[layer.conv.affine] = j
    for i, torgb in enumerate(G.torgbs):
        index[torgb.conv.affine] = 2 * i + 1
    assert sorted(set(index.values())) == list(range(6))
    seen = {}
    hooks = [m.register_forward_hook(lambda m, inp, out: seen.__setitem__(index[m], inp[0].detach().clone()))
             for m in index]
    z1, z2, y = torch.randn(4, 8), torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    cutoff = torch.tensor([1, 3, 5, 6])
    with torch.no_grad():
        w1, w2 = G.mapping(z1, y)[:, 0], G.mapping(z2, y)[:, 0]
        G(z1, y, mix_z=z2, mix_cutoff=cutoff)
    for h in hooks:
        h.remove()
    assert not torch.allclose(w1, w2)
    for l in range(6):
        for b in range(4):
            expect = w1[b] if l < cutoff[b] else w2[b]
            torch.testing.assert_close(seen[l][b], expect, rtol=0, atol=0)
    # mix_styles on its own: (B, L, w_dim)
    a, c = torch.zeros(2, 6, 3), torch.ones(2, 6, 3)
    m = mix_styles(a, c, torch.tensor([2, 6]))
    assert m[0, :2].eq(0).all() and m[0, 2:].eq(1).all() and m[1].eq(0).all()


def test_truncation_pulls_towards_the_class_mean_w():
    G = tiny_generator()
    y = torch.tensor([0, 0, 1, 1, 1])
    with torch.no_grad():
        w = G.mapping(torch.randn(5, 8), y, update_w_avg=True)[:, 0]
    beta = G.config.w_avg_beta
    torch.testing.assert_close(G.w_avg[0], (1 - beta) * w[:2].mean(0))  # lerp from 0 towards the batch mean
    torch.testing.assert_close(G.w_avg[1], (1 - beta) * w[2:].mean(0))
    assert G.w_avg[2].eq(0).all()  # class 2 absent from the batch
    z = torch.randn(3, 8)
    yz = torch.tensor([0, 1, 1])
    with torch.no_grad():
        w0 = G.mapping(z, yz, truncation=0.0)[:, 0]
        w_half = G.mapping(z, yz, truncation=0.5)[:, 0]
        w_one = G.mapping(z, yz)[:, 0]
    torch.testing.assert_close(w0, G.w_avg[yz])  # psi = 0: each class's mean w, whatever z
    torch.testing.assert_close(w_half, G.w_avg[yz] + 0.5 * (w_one - G.w_avg[yz]))


def test_shapes_noise_and_resolutions():
    assert resolution_pyramid(28) == [7, 14, 28] and resolution_pyramid(32) == [4, 8, 16, 32]
    assert resolution_pyramid(8) == [4, 8] and resolution_pyramid(64)[0] == 4
    for bad in (18, 7, 9, 100):
        with pytest.raises(ValueError, match="r0 x 2"):
            resolution_pyramid(bad)
    G = tiny_generator(resolution=28, channels=3)
    z, y = torch.randn(2, 8), torch.tensor([0, 2])
    with torch.no_grad():
        for layer in G.layers:
            layer.noise_strength.fill_(1.0)
        a, b = G(z, y), G(z, y)
        r = G(z, y, noise="random")
        n = G(z, y, noise="none")
        own = G(z, y, noise=[torch.zeros(2, 1, s, s) for s in G.noise_resolutions()])
    assert a.shape == (2, 3, 28, 28) and torch.equal(a, b)  # "const": the layers' fixed noise images
    assert not torch.allclose(a, r) and torch.equal(n, own)  # zero noise tensors == no noise
    with pytest.raises(DistillError, match="class-conditional"):
        G(z)
    with pytest.raises(DistillError, match=r"lie in \[0, 2\]"):
        G(z, torch.tensor([0, 3]))
    U = tiny_generator(num_classes=0)
    assert U(torch.randn(2, 8)).shape == (2, 1, 16, 16) and U.w_avg.shape == (1, 8)


def test_projection_discriminator():
    """D(x, y) = psi(phi(x)) + <V y, phi(x)> / sqrt(C0) (Miyato & Koyama 2018, Eq. 3)."""
    torch.manual_seed(0)
    D = ResidualDiscriminator(28, 1, num_classes=3, width=4, max_width=16, mbstd_group=2)
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        logits = D(x, y)
        phi = D.features(x)
        manual = D.out(phi).squeeze(1) + D.embed_gain * (D.embed.weight[y] * phi).sum(1)
    assert logits.shape == (4,)
    torch.testing.assert_close(logits, manual)
    with pytest.raises(ValueError, match="needs labels"):
        D(x)
    assert ResidualDiscriminator(16, 3, 0, 4, 8)(torch.randn(3, 3, 16, 16)).shape == (3,)  # group 4 > batch 3


def test_export_reload_in_a_fresh_process(tmp_path):
    G = tiny_generator()
    with torch.no_grad():
        G.mapping(torch.randn(6, 8), torch.tensor([0, 1, 2, 0, 1, 2]), update_w_avg=True)  # a non-zero w_avg
        for layer in G.layers:
            layer.noise_strength.fill_(0.3)
    folder = tmp_path / "generator"
    G.save_pretrained(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    (tmp_path / "empty").mkdir()
    assert is_generator_folder(folder) and not is_generator_folder(tmp_path / "empty")
    assert is_generator_folder(tmp_path)  # a run folder of the earlier layout, with the export in generator/
    z, y = torch.randn(5, 8, generator=torch.Generator().manual_seed(3)), torch.tensor([0, 1, 2, 1, 0])
    with torch.no_grad():
        here = G(z, y, truncation=0.7)
    code = f"""
import torch
from safetensors.torch import save_file
from distill.gan.generator import StyleGAN2Generator
G = StyleGAN2Generator.from_pretrained({str(folder)!r}).eval()
z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    x = G(z, torch.tensor([0, 1, 2, 1, 0]), truncation=0.7)
state = {{"state." + k: v.contiguous() for k, v in G.state_dict().items()}}
save_file({{"x": x.contiguous(), **state}}, {str(tmp_path / "out.safetensors")!r})
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    out = load_file(tmp_path / "out.safetensors")
    for key, value in G.state_dict().items():  # bitwise: every weight and buffer (w_avg, noise strengths)
        assert torch.equal(out["state." + key], value), key
    # the same output from the config round-trip; not bitwise, as the two processes may run different thread counts
    torch.testing.assert_close(out["x"], here, rtol=1e-5, atol=1e-5)
    # a damaged folder is a one-line error naming it
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DistillError, match="cannot load the generator"):
        load_generator(folder)
    with pytest.raises(DistillError, match="not a GAN generator folder"):
        load_generator(tmp_path / "empty")
