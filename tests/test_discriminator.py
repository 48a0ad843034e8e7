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
