"""LCM's w-conditioning (distill.diffusion.guided): the student starts as the teacher for every w, w reaches the
network in one call instead of a guided pair, the teacher's solver step takes per-sample w, and a tiny run trains,
resumes exactly and exports a pipeline that samples at several w in a fresh process."""

import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file

from distill.diffusion.denoiser import Denoiser
from distill.diffusion.guided import GuidanceUNet2DModel, takes_guidance
from distill.distillation.consistency import ddim_step
from distill.engine.run_dir import read_metrics
from distill.errors import RecipeError

from .test_consistency import LCM, _ddpm, resumes_exactly
from .test_distill import distill_recipe, tiny_teacher  # noqa: F401  (module fixture)

GUIDED = {"solver_steps": 10, "guidance_range": [1.0, 3.0]}


def _unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=3).eval()


def test_student_starts_as_the_teacher_for_every_w_and_then_reads_w():
    unet = _unet()
    net = GuidanceUNet2DModel.from_unet(unet).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([500, 100]), torch.tensor([0, 1])
    with torch.no_grad():
        ref = unet(x, t, class_labels=y).sample
        for w in (1.0, 2.5, torch.tensor([1.0, 7.0])):
            assert torch.equal(net(x, t, class_labels=y, guidance_scale=w).sample, ref)
        torch.nn.init.normal_(net.guidance_embedding.linear_2.weight)
        a, b = (net(x, t, class_labels=y, guidance_scale=w).sample for w in (1.0, 3.0))
    assert not torch.allclose(a, b)  # the embedding reads w once it is trained


def test_denoiser_gives_w_to_the_network_in_one_call():
    net = GuidanceUNet2DModel.from_unet(_unet()).eval()
    torch.nn.init.normal_(net.guidance_embedding.linear_2.weight)
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    den = Denoiser.from_scheduler(net, _ddpm())
    assert den.embeds_guidance and takes_guidance(net) and not takes_guidance(_unet())
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([500, 500]), torch.tensor([0, 1])
    with torch.no_grad():
        out = den.out(x, t, y, 3.0)
        assert torch.equal(out, net(x, t, class_labels=y, guidance_scale=3.0).sample)
    assert calls[0] == 2  # batch 2: no conditional / unconditional pair


def test_teacher_solver_step_takes_per_sample_guidance():
    teacher = Denoiser.from_scheduler(_unet(), _ddpm())
    x, t, tp, y = torch.randn(2, 1, 8, 8), torch.tensor([500, 500]), torch.tensor([400, 400]), torch.tensor([0, 1])
    both = ddim_step(teacher, x, t, tp, y, torch.tensor([1.0, 3.0]))
    for i, w in enumerate((1.0, 3.0)):  # each sample's step is the step at its own w
        one = ddim_step(teacher, x[i:i + 1], t[i:i + 1], tp[i:i + 1], y[i:i + 1], w)
        assert torch.allclose(both[i:i + 1], one, atol=1e-5)


def test_guided_lcm_run_resumes_and_samples_at_several_w_in_a_fresh_process(tmp_path, tiny_teacher):
    full = resumes_exactly(tmp_path, tiny_teacher, distill={**LCM, "teacher_guidance": 2.0}, consistency=GUIDED)
    s = load_file(full / "checkpoints/checkpoint-4/student.safetensors")
    assert s["guidance_embedding.linear_2.weight"].abs().sum() > 0  # trained away from zero
    assert len([r for r in read_metrics(full / "metrics.jsonl") if "loss_consistency" in r]) == 4
    code = ("import distill, torch; from diffusers import DiffusionPipeline; "
            f"p = DiffusionPipeline.from_pretrained({str(full)!r}); "
            "assert type(p.unet).__name__ == 'GuidanceUNet2DModel', p.unet; "
            "imgs = [p(class_labels=[0, 1], num_inference_steps=2, guidance_scale=w, output_type='pt', "
            "generator=torch.Generator().manual_seed(0)).images for w in (1.0, 3.0)]; "
            "print('differ', not torch.equal(*imgs))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "differ True" in res.stdout, res.stderr[-2000:]


def test_guidance_range_is_checked(tmp_path, tiny_teacher):
    with pytest.raises(RecipeError, match="guidance_range.*w_min <= w_max"):
        distill_recipe(tmp_path, tiny_teacher, distill=LCM, consistency={"guidance_range": [3.0, 1.0]})
    with pytest.raises(RecipeError, match="guidance_range.*one guidance scale"):
        distill_recipe(tmp_path, tiny_teacher, distill={**LCM, "lambda_adv": 1.0}, consistency=GUIDED)
    with pytest.raises(RecipeError, match="guidance_range.*kind lcm"):
        distill_recipe(tmp_path, tiny_teacher, distill=LCM, consistency={**GUIDED, "kind": "ctm"})


def test_students_are_evaluated_at_their_guidance():
    from types import SimpleNamespace

    from distill.distillation.monitor import student_guidance

    dc = SimpleNamespace(teacher_guidance=2.0)
    assert student_guidance(dc, GuidanceUNet2DModel.from_unet(_unet())) == 2.0  # w is its input
    assert student_guidance(dc, _unet()) == 1.0  # guidance distilled into it
