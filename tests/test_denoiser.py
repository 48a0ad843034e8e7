"""The Denoiser: parameterisation identities, guidance, and a new parameterisation registered from
outside driving a distillation step end to end (the only code it touches is the Denoiser's registry)."""

from collections import Counter

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from distill.diffusion import denoiser as dn
from distill.diffusion.denoiser import Denoiser, LabelCond


def _ddpm(kind):
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=kind)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_x0_eps_identities(kind):
    """out = target(x0, eps, t) at x_t = add_noise(x0, eps, t) maps back to x0 and eps exactly (fp64)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64), torch.randn(5, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 900, 998])
    den = Denoiser(None, dn.parameterisation_for(_ddpm(kind)), LabelCond(None))
    x_t = den.add_noise(x0, eps, t)
    alpha, sigma = den.alpha_sigma(t, x_t.device, x_t.dtype)
    assert torch.allclose(x_t, alpha * x0 + sigma * eps)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones_like(alpha))  # variance preserving
    out = den.target(x0, eps, t)
    assert torch.allclose(den.x0_from(x_t, t, out), x0, atol=1e-8)
    assert torch.allclose(den.eps_from(x_t, t, out), eps, atol=1e-6)


class _Net(torch.nn.Module):
    """out = x * (1 + label): tells the conditional and the null label apart."""

    def forward(self, x, t, class_labels=None):
        from types import SimpleNamespace

        return SimpleNamespace(sample=x * (1 + class_labels.view(-1, 1, 1, 1).float()))


def test_guidance_is_one_batched_call():
    den = Denoiser(_Net(), dn.parameterisation_for(_ddpm("epsilon")), LabelCond(null_label=10))
    x, t, y = torch.ones(3, 1, 2, 2), torch.tensor([5, 5, 5]), torch.tensor([1, 2, 3])
    assert torch.equal(den.out(x, t, y, 1.0), x * (1 + y.view(-1, 1, 1, 1)))
    c, u = x * (1 + y.view(-1, 1, 1, 1)), x * 11
    assert torch.allclose(den.out(x, t, y, 3.0), u + 3.0 * (c - u))  # Ho & Salimans 2022, Eq. 6


class ToyFlow:
    """Rectified flow on the 1000 integer timesteps: x_t = (1 - s) x0 + s eps with s = t / T, velocity
    v = eps - x0 (what the network predicts); counts its calls."""

    name = "toy_flow"
    calls = Counter()

    def __init__(self, scheduler):
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    def alpha_sigma(self, t, device, dtype=torch.float32):
        ToyFlow.calls["alpha_sigma"] += 1
        s = (t.to(device, dtype) / self.num_train_timesteps).view(-1, 1, 1, 1)
        return 1 - s, s

    def add_noise(self, x0, eps, t):
        ToyFlow.calls["add_noise"] += 1
        a, s = self.alpha_sigma(t, x0.device, x0.dtype)
        return a * x0 + s * eps

    def x0(self, out, x_t, alpha, sigma):
        ToyFlow.calls["x0"] += 1
        return x_t - sigma * out

    def eps(self, out, x_t, alpha, sigma):
        return x_t + alpha * out

    def target(self, x0, eps, t):
        ToyFlow.calls["target"] += 1
        return eps - x0

    t_max = 999

    def student_timesteps(self, ts):
        return torch.tensor(ts, dtype=torch.long)


def test_toy_flow_identities():
    den = Denoiser(None, ToyFlow(_ddpm("epsilon")), LabelCond(None))
    x0, eps, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([1, 500, 999])
    x_t, v = den.add_noise(x0, eps, t), den.target(x0, eps, t)
    assert torch.allclose(den.x0_from(x_t, t, v), x0, atol=1e-5) and torch.allclose(den.eps_from(x_t, t, v), eps, atol=1e-5)


def test_a_registered_parameterisation_drives_a_distillation_step(tmp_path, monkeypatch):
    """A teacher whose scheduler says prediction_type "toy_flow": registering ToyFlow is all it takes
    for the distillation loop (student, teacher target, DMD fake score, discriminator noising) to run."""
    from distill.config import recipe_from_dict
    from distill.diffusion.pipelines import DistillPipeline
    from distill.distillation.loop import train_distill
    from safetensors.torch import load_file

    from .conftest import tiny_recipe_dict

    monkeypatch.setitem(dn.PARAMETERISATIONS, "toy_flow", ToyFlow)
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=11)
    sched = DDPMScheduler(num_train_timesteps=1000, prediction_type="toy_flow", timestep_spacing="trailing")
    DistillPipeline(unet=unet, scheduler=sched).save_pretrained(str(tmp_path / "teacher"))
    r = tiny_recipe_dict(tmp_path, max_steps=1, checkpoint_every=1, lr_scheduler="constant", lr_warmup_steps=0)
    del r["teacher"], r["data"]["resolution"]
    r.update(task="distill", distill={"teacher": str(tmp_path / "teacher"), "lambda_dmd": 1.0},
             discriminator={"head_channels": 8, "augment": ""})
    ToyFlow.calls.clear()
    run = train_distill(recipe_from_dict(r))
    assert ToyFlow.calls["add_noise"] >= 4 and ToyFlow.calls["x0"] >= 3 and ToyFlow.calls["target"] >= 1
    w0 = unet.state_dict()
    w1 = load_file(run / "checkpoints/checkpoint-1/student.safetensors")
    assert all(torch.isfinite(v).all() for v in w1.values())
    assert max(float((w1[k] - w0[k]).abs().max()) for k in w1) > 0


def test_flow_parameterisation_identities_and_diffusers_agreement():
    """Flow matching in fp64: x0/eps/v identities, add_noise equals diffusers' FlowMatchEulerDiscreteScheduler
    `scale_noise`, and one Euler step of the scheduler equals x_t + (sigma_next - sigma) v with v from the Denoiser."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    param = dn.parameterisation_for(sched)
    assert param.name == "flow"
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64), torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    sched.set_timesteps(4)
    t = sched.timesteps[:3].double()  # shifted timesteps, floats in [0, 1000]
    x_t = param.add_noise(x0, eps, t)
    for i in range(3):
        ref = sched.scale_noise(x0[i:i + 1], t[i:i + 1], eps[i:i + 1])
        torch.testing.assert_close(x_t[i:i + 1], ref.double(), rtol=1e-6, atol=1e-6)
    v = param.target(x0, eps, t)
    torch.testing.assert_close(v, eps - x0)
    alpha, sigma = param.alpha_sigma(t, x0.device, torch.float64)
    torch.testing.assert_close(param.x0(v, x_t, alpha, sigma), x0)
    torch.testing.assert_close(param.eps(v, x_t, alpha, sigma), eps)
    torch.testing.assert_close(alpha + sigma, torch.ones_like(alpha))
    # the scheduler's Euler step with the exact velocity lands on the same path at the next sigma
    sched.set_timesteps(4)
    x = param.add_noise(x0[:1], eps[:1], sched.timesteps[0])
    nxt = sched.step(v[:1].float(), sched.timesteps[0], x.float()).prev_sample
    torch.testing.assert_close(nxt.double(), param.add_noise(x0[:1], eps[:1], sched.timesteps[1]), rtol=1e-5, atol=1e-5)
