"""The projected discriminator (discriminator.kind: projected): frozen multi-scale features of a diffusion
teacher (or a local timm network) under fixed random projections (CCM + CSM), trainable heads. Its defining
properties: the frozen parts receive no gradient and never move, gradients reach the generator through
them, the heads see several resolutions, the evaluation classifier is never the backbone; and a run with
it checkpoints without the backbone, resumes exactly and exports a folder `distill sample` draws from."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill.config import recipe_from_dict
from distill.diffusion.pipelines import DistillPipeline
from distill.diffusion.recipe import TeacherConfig
from distill.diffusion.unet2d import build_unet2d
from distill.errors import DistillError
from distill.gan.architectures import load_generator
from distill.gan.projected import ProjectedDiscriminator, RandomProjection, projected_backbone
from distill.engine.run_dir import read_metrics
from distill.gan.train import build_networks, standalone, train_gan, trainable

from .gan_kind_checks import check_resume_export_sample


def make_teacher(path, seed: int = 0) -> str:
    """A random 16 px class-conditional UNet2DModel teacher folder (3 levels: features at 8 and 4 px)."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    unet = build_unet2d(TeacherConfig(block_out_channels=[8, 8, 16], norm_num_groups=4), 16, 1, 10)
    DistillPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher") / "pipe")


def tiny(tmp_path, teacher, **train) -> dict:
    return {
        "task": "gan", "name": "tiny-projected", "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": 16, "limit": 64},
        "generator": {"kind": "stylegan2", "z_dim": 8, "w_dim": 8, "width": 4, "max_width": 8},
        "discriminator": {"kind": "projected", "width": 8, "max_width": 16,
                          "projected": {"backbone": f"teacher:{teacher}", "timestep": 10}},
        "gan": {"loss": "hinge", "r1_gamma": 0.0, "augment": "color,translation,cutout"},
        "train": {"max_steps": 4, "batch_size": 8, "log_every": 1, "sample_every": 2, "checkpoint_every": 2,
                  "ema_decay": 0.9, **train},
        "eval": {"num_samples": 0, "monitor_samples": 0, "batch_size": 40, "features": "classifier:digits"},
    }


def test_frozen_backbone_and_projections_never_move_and_g_learns_through_them(tmp_path, teacher):
    t = standalone(recipe_from_dict(tiny(tmp_path, teacher)))
    D, G = t.models["discriminator"], t.models["generator"]
    assert isinstance(D, ProjectedDiscriminator)
    frozen = {k: v.clone() for k, v in D.backbone.state_dict().items()}
    proj = {k: v.clone() for k, v in D.projection.state_dict().items()}
    heads = [p.detach().clone() for p in D.heads.parameters()]
    g0 = [p.detach().clone() for p in G.parameters()]
    assert not list(D.projection.parameters()) and len(proj) == 2 * len(D.scales) - 1  # CCM + CSM: buffers only
    for step in range(2):
        t.step(step)
    # the backbone: bit-identical, still frozen, no gradient ever stored, not in the D optimizer, in eval mode
    after = D.backbone.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    assert all(not p.requires_grad and p.grad is None for p in D.backbone.parameters())
    held = {id(p) for group in t.opt_d.param_groups for p in group["params"]}
    assert held == {id(p) for p in trainable(D)} and not held & {id(p) for p in D.backbone.parameters()}
    assert not D.backbone.training and D.training
    assert all(torch.equal(proj[k], v) for k, v in D.projection.state_dict().items())
    # the heads learn; the generator learns through the frozen features
    assert any(not torch.equal(a, b) for a, b in zip(heads, D.heads.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    fake = G(torch.randn(4, 8), torch.arange(4)).detach().requires_grad_(True)
    D(fake, torch.arange(4)).sum().backward()
    assert fake.grad.abs().sum() > 0 and all(p.grad is None for p in D.backbone.parameters())


def test_random_projections_are_fixed_and_mix_scales():
    a, b = RandomProjection([4, 8, 8], [6, 12, 12]), RandomProjection([4, 8, 8], [6, 12, 12])
    assert all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))  # fixed by their seed, not the global one
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)]
    out = a(feats)
    assert [tuple(o.shape) for o in out] == [(2, 6, 8, 8), (2, 12, 4, 4), (2, 12, 4, 4)]
    feats[2] = feats[2] + 1  # CSM: the deepest scale reaches the finest one
    assert not torch.allclose(a(feats)[0], out[0])


def test_heads_see_several_resolutions_and_labels_matter(teacher):
    D = ProjectedDiscriminator(projected_backbone(f"teacher:{teacher}", 1, 16, 10), 16, 1, 10, 8, 16, 10).eval()
    seen = []
    for h in D.heads:
        h.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    x = torch.rand(3, 1, 16, 16) * 2 - 1
    a = D(x, torch.tensor([0, 1, 2]))
    assert a.shape == (3,) and len(set(seen)) >= 2 == len(set(D.scales))  # (8, 8) and (4, 4)
    assert not torch.allclose(a, D(x, torch.tensor([5, 6, 7])))  # projection conditioning on every head
    assert torch.equal(a, D(x, torch.tensor([0, 1, 2])))  # one fixed noise draw: D is a function (eval: no SN power step)


def test_the_evaluation_classifier_is_refused(tmp_path, teacher):
    from distill.eval.classifier import classifier_path

    own = tmp_path / "scorer.safetensors"
    save_file({"w": torch.zeros(1)}, str(own))
    for spec, feats, msg in (("classifier:digits", "", "refused"),
                             (f"timm:resnet18:{classifier_path('mnist')}", "", "is an evaluation classifier"),
                             (f"teacher:{own}", f"classifier:{own}", "is an evaluation classifier"),
                             ("timm:resnet18", "", "needs local weights"),
                             (f"timm:resnet18:{tmp_path / 'missing.safetensors'}", "", "not found"),
                             ("imagenet", "", "unknown backbone")):
        with pytest.raises(DistillError, match=msg) as e:
            projected_backbone(spec, 1, 16, 10, feats)
        assert "\n" not in str(e.value)
    with pytest.raises(DistillError, match="resolution 16, the data 28"):
        projected_backbone(f"teacher:{teacher}", 1, 28, 10)


def test_timm_backbone_with_local_weights_stays_frozen_in_eval_mode(tmp_path):
    timm = pytest.importorskip("timm")
    weights = tmp_path / "net.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), str(weights))
    bb = projected_backbone(f"timm:test_resnet:{weights}", 1, 16, 10)
    D = ProjectedDiscriminator(bb, 16, 1, 10, 8, 16).train()
    stats = {k: v.clone() for k, v in D.backbone.state_dict().items()}
    D(torch.rand(4, 1, 16, 16) * 2 - 1, torch.arange(4)).mean().backward()
    assert not D.backbone.training and all(p.grad is None for p in D.backbone.parameters())
    assert all(torch.equal(stats[k], v) for k, v in D.backbone.state_dict().items())  # BatchNorm statistics too
    assert len(set(D.scales)) >= 2


def test_run_checkpoints_without_the_backbone_resumes_exactly_and_exports(tmp_path, teacher):
    export = check_resume_export_sample(
        tmp_path, lambda d, **train: tiny(d, teacher, **{"max_steps": 6, "checkpoint_every": 3, **train}))
    # the checkpoint holds heads, projections and the backbone's fingerprint, not the frozen teacher
    keys = load_file(tmp_path / "a" / "run" / "checkpoints" / "checkpoint-6" / "discriminator.safetensors").keys()
    assert "backbone_fingerprint" in keys and not [k for k in keys if k.startswith("backbone.")]
    # the run's parameter counts: the trained discriminator apart from its frozen backbone
    head = read_metrics(tmp_path / "a" / "run" / "metrics.jsonl")[0]
    D = build_networks(recipe_from_dict(tiny(tmp_path / "c", teacher)), 10)[1]
    frozen = sum(p.numel() for p in D.backbone.parameters())
    assert head["params_d_frozen"] == frozen > 0 and head["params_d"] + frozen == sum(p.numel() for p in D.parameters())
    # resumed against other teacher weights: refused on one line
    other = make_teacher(tmp_path / "other", seed=1)
    with pytest.raises(DistillError, match="backbone weights differ"):
        train_gan(recipe_from_dict(tiny(tmp_path / "b", other, max_steps=8, resume_from_checkpoint="latest")))
    G = load_generator(export)  # class-conditional through the projected heads' training
    z = torch.randn(2, 8)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([3, 7])))
