import pytest
import torch

from distill.translate.config import TranslateConfig
from distill.translate.losses import GAN_MODES, d_loss, g_adv_loss
from distill.translate.networks import (DISCRIMINATORS, GENERATORS, NLayerDiscriminator, PixelDiscriminator,
                                        build_discriminator, build_generator, receptive_field)
from distill.translate.pool import ImagePool

SIZES = {"unet_32": 32, "unet_64": 64, "unet_128": 128, "unet_256": 256, "resnet_6blocks": 32, "resnet_9blocks": 32}


@pytest.mark.parametrize("name", list(GENERATORS))
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generator_shapes(name, norm):
    cfg = TranslateConfig(netG=name, ngf=2 if "unet" in name else 4, norm=norm)
    s = SIZES[name]
    G = build_generator(cfg, 3, 1)
    y = G(torch.rand(2, 3, s, s) * 2 - 1)
    assert y.shape == (2, 1, s, s) and y.abs().max() <= 1


def test_unet_any_depth():
    G = build_generator(TranslateConfig(netG="unet_5down", ngf=4), 3, 3)
    assert G(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("name,out", [("basic", 6), ("n_layers", 14), ("pixel", 64)])
def test_discriminator_shapes(name, out):
    D = build_discriminator(TranslateConfig(netD=name, n_layers_D=2, ndf=8), 6)
    assert D(torch.zeros(2, 6, 64, 64)).shape == (2, 1, out, out)


def test_reference_state_dict_keys():
    """Key names of junyanz/pytorch-CycleGAN-and-pix2pix (models/networks.py)."""
    g = build_generator(TranslateConfig(netG="unet_32", ngf=4), 3, 3).state_dict()
    assert {"model.model.0.weight", "model.model.1.model.1.weight", "model.model.1.model.2.running_mean",
            "model.model.3.weight", "model.model.3.bias", "model.model.1.model.3.model.3.model.3.model.1.weight"} <= set(g)
    r = build_generator(TranslateConfig(netG="resnet_6blocks", ngf=4, norm="instance", dropout=False), 3, 3)
    r = r.state_dict()
    assert {"model.1.weight", "model.1.bias", "model.10.conv_block.1.weight", "model.10.conv_block.5.weight",
            "model.15.conv_block.5.bias", "model.23.weight"} <= set(r)
    d = NLayerDiscriminator(6, 8, 3).state_dict()
    assert {"model.0.weight", "model.0.bias", "model.2.weight", "model.3.running_var", "model.11.weight"} <= set(d)
    assert "model.2.bias" not in d  # batch norm: no conv bias, as in the reference
    assert {"net.0.weight", "net.2.weight", "net.3.weight", "net.5.weight"} <= set(PixelDiscriminator(3, 8).state_dict())


def test_init_normal_002():
    G = build_generator(TranslateConfig(netG="resnet_6blocks", ngf=16), 3, 3)
    w = G.model[10].conv_block[1].weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002


@pytest.mark.parametrize("n_layers,rf", [(1, 16), (3, 70), (5, 286)])
def test_patchgan_receptive_field_analytic(n_layers, rf):
    assert receptive_field(NLayerDiscriminator(3, 4, n_layers)) == rf
    assert receptive_field(PixelDiscriminator(3, 4)) == 1


def test_patchgan_receptive_field_empirical():
    """Gradient of one output logit wrt the input is non-zero on exactly a 70x70 window."""
    D = NLayerDiscriminator(1, 4, 3, norm="none").double()
    x = torch.randn(1, 1, 160, 160, dtype=torch.float64, requires_grad=True)
    y = D(x)  # (1, 1, 18, 18)
    i = y.shape[-1] // 2
    y[0, 0, i, i].backward()
    nz = x.grad[0, 0].abs() > 0
    rows, cols = nz.any(1).nonzero().flatten(), nz.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
    assert nz[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()


def test_pool_behaviour():
    g = torch.Generator().manual_seed(0)
    assert torch.equal(ImagePool(0).query(torch.ones(2, 1, 2, 2)), torch.ones(2, 1, 2, 2))
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first, g), first)  # filling: returned as is, stored
    assert pool.num_imgs == 4
    new = torch.full((200, 1, 1, 1), 9.0)
    out = pool.query(new, g).flatten()
    old = (out < 9).sum().item()  # images taken from history instead of the new ones
    assert old == 4 and (out[out < 9].sort().values == torch.arange(4.0)).all()
    state = pool.state_dict()
    other = ImagePool(1)
    other.load_state_dict(state)
    x = torch.randn(5, 1, 1, 1)
    assert torch.equal(other.query(x, torch.Generator().manual_seed(3)), pool.query(x, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("mode", list(GAN_MODES))
def test_gan_modes(mode):
    D = NLayerDiscriminator(3, 4, 2, norm="instance")
    real, fake = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    loss, acc_r, acc_f = d_loss(GAN_MODES[mode], D, real, fake)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= acc_r <= 1 and 0 <= acc_f <= 1
    assert torch.isfinite(g_adv_loss(GAN_MODES[mode], D, fake))
