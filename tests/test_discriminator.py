"""Discriminator heads: shapes, conditioning, and why they normalise inside."""

import pytest
import torch

from distill.discriminator.heads import PatchHead
from distill.gan.losses import get_adv_loss


def test_patch_head_shapes_and_projection():
    h = PatchHead(16, 32, num_classes=10)
    f = torch.randn(4, 16, 7, 5)  # (B, C, H, W)
    y = torch.tensor([0, 1, 2, 3])
    out = h(f, y)
    assert out.shape == (4, 7, 5)
    assert not torch.allclose(out, h(f, torch.tensor([4, 5, 6, 7])))  # labels enter by projection


@pytest.mark.parametrize("norm, separates", [("group", True), ("none", False)])
def test_spectral_normed_head_needs_normalisation_to_separate_small_feature_differences(norm, separates):
    """Real and fake features that differ by little (as a frozen teacher's do): spectral norm bounds
    every layer's gain, so a head without normalisation keeps |logits| << 1 and the hinge loss near
    its chance value 2; with GroupNorm after the first conv the same head separates them."""
    torch.manual_seed(0)
    head = PatchHead(16, 32, None, sn=True, norm=norm)
    adv = get_adv_loss("hinge")
    opt = torch.optim.Adam(head.parameters(), 2e-3, betas=(0.0, 0.99))
    for _ in range(150):
        real = torch.randn(32, 16, 7, 7) * 0.05 + 0.02
        fake = torch.randn(32, 16, 7, 7) * 0.05
        loss = adv.d_loss(head(real).flatten(1), head(fake).flatten(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (loss.item() < 0.5) == separates, loss.item()


def test_head_sets_judge_each_sample_with_its_own_set():
    """disc_heads_per_timestep: sample i's logits come from set head[i] only, and a loss on samples of
    set 0 gives set 1 no gradient (while every set stays in the graph, as DDP needs)."""
    from distill.discriminator import Discriminator

    class Feats(torch.nn.Module):  # two feature layers: (B, 4, 6, 6) and (B, 8, 3, 3)
        channels = [4, 8]

        def forward(self, x, y=None, t=None, noise=None):
            return [x.repeat(1, 4, 1, 1), torch.nn.functional.avg_pool2d(x, 2).repeat(1, 8, 1, 1)]

    torch.manual_seed(0)
    disc = Discriminator(Feats(), 3, 8, head_sets=2, augment="").eval()  # eval: no spectral-norm power step
    assert len(disc.heads) == 4  # 2 sets x 2 layers
    x, y = torch.randn(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    head = torch.tensor([0, 1, 1, 0, 1])
    logits, _ = disc(x, y, head=head)
    assert logits.shape == (5, 36 + 9)
    for j in (0, 1):
        alone = Discriminator(Feats(), 3, 8, head_sets=1, augment="").eval()
        alone.heads.load_state_dict({k: v for k, v in disc.heads[2 * j:2 * j + 2].state_dict().items()})
        ref, _ = alone(x, y)
        assert torch.allclose(logits[head == j], ref[head == j], atol=1e-6)
    logits[head == 0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in disc.heads[2:].parameters())
    assert any(p.grad.abs().sum() > 0 for p in disc.heads[:2].parameters())
    with pytest.raises(ValueError, match="head"):
        disc(x, y)


def test_trained_backbone_gets_the_discriminator_loss_and_r1_sees_its_features():
    """R1 takes gradients at feature leaves for a frozen and a trained backbone alike; a trained one also gets
    the discriminator loss and R1 through its features (straight through), with the same logits."""
    from diffusers import DDPMScheduler, UNet2DModel

    from distill.discriminator import Discriminator, TeacherFeatures
    from distill.gan.losses import r1_penalty

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    ns = DDPMScheduler(num_train_timesteps=1000)
    x, t, noise = torch.randn(2, 1, 8, 8), torch.tensor([10, 20]), torch.randn(2, 1, 8, 8)
    out = {}
    for frozen in (True, False):
        torch.manual_seed(1)
        d = Discriminator(TeacherFeatures(unet, ns, frozen=frozen), None, 8)
        assert d.backbone_trainable is not frozen
        logits, feats = d(x, None, t, noise, return_features=True)
        out[frozen] = logits.detach()
        assert all(f.is_leaf and f.requires_grad for f in feats)
        (logits.mean() + r1_penalty(logits, feats).mean()).backward()
        grads = [p.grad for p in d.backbone.parameters()]
        assert all(g is None for g in grads) if frozen else any(g is not None and g.abs().sum() > 0 for g in grads)
        assert all(p.grad is not None for p in d.heads.parameters())
    assert torch.allclose(out[True], out[False])
