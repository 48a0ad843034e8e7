"""Can the ADD discriminator tell a trained student's outputs from real images? Fresh patch heads
on the frozen teacher features (the MNIST recipe's discriminator) are trained for N steps to
separate real MNIST images from the student's outputs at the chosen student timesteps, then scored
(hinge loss; 2.0 = chance, lower = separates) on held-out batches at each student timestep.

  python benchmarks/disc_probe.py --student runs/mnist-dmd --train-timesteps 999
  python benchmarks/disc_probe.py --student runs/mnist-dmd --train-timesteps 999 749 499 249

Writes benchmarks/results/disc_probe.json (one entry per --train-timesteps setting).
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from diffusers import DDPMScheduler  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.data import load_images  # noqa: E402
from distill.discriminator import Discriminator, build_backbone  # noqa: E402
from distill.gan.losses import get_adv_loss  # noqa: E402
from distill.diffusion.pipelines import DistillPipeline, exported_pipeline  # noqa: E402
from distill.diffusion.sampling import null_label  # noqa: E402
from distill.diffusion.denoiser import Denoiser  # noqa: E402
from distill.diffusion.teachers import load_teacher, resolve_teacher_path  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "disc_probe.json"


def d_batch(disc, student, ns, data, s_choices, n, tmax, g):
    """(hinge loss per sample (n,)) on n real images and n student outputs at timesteps from s_choices
    (`student`: the student's Denoiser)."""
    x0, y = data.batch(torch.randint(0, len(data), (n,), generator=g))
    s = torch.tensor(s_choices)[torch.randint(0, len(s_choices), (n,), generator=g)]
    with torch.no_grad():
        fake = student.x0(ns.add_noise(x0, torch.randn(x0.shape, generator=g), s), s, y)
    t = torch.randint(0, tmax + 1, (2 * n,), generator=g)
    logits, _ = disc(torch.cat([x0, fake]), torch.cat([y, y]), t, torch.randn((2 * n,) + x0.shape[1:], generator=g))
    return get_adv_loss("hinge").d_loss(logits[:n].float(), logits[n:].float())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", default="recipes/mnist.yaml")
    ap.add_argument("--data", default="../shared/data/mnist/mnist_full.npz")
    ap.add_argument("--student", required=True)
    ap.add_argument("--train-timesteps", type=int, nargs="+", default=[999])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.manual_seed(0)
    recipe = load_recipe(a.recipe, [f"data.source={a.data}"])
    dc, dsc, tc = recipe.distill, recipe.discriminator, recipe.train
    tp = load_teacher(resolve_teacher_path(dc.teacher))
    teacher = tp.unet.eval().requires_grad_(False)
    ns = DDPMScheduler.from_config(tp.scheduler.config)
    student = Denoiser.from_scheduler(DistillPipeline.from_pretrained(str(exported_pipeline(a.student))).unet.eval().requires_grad_(False), ns)
    data = load_images(dataclasses.replace(recipe.data, resolution=teacher.config.sample_size,
                                           channels=teacher.config.in_channels))
    disc = Discriminator(build_backbone("teacher", teacher, ns), null_label(teacher), dsc.head_channels,
                         dsc.spectral_norm, "", head_norm=dsc.head_norm)
    opt = torch.optim.AdamW(disc.heads.parameters(), lr=dsc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2))
    g = torch.Generator().manual_seed(0)
    curve = []
    for i in range(a.steps):
        loss = d_batch(disc, student, ns, data, a.train_timesteps, a.batch, dsc.t_max, g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(round(loss.item(), 4))
    g_eval = torch.Generator().manual_seed(1)
    with torch.no_grad():
        held_out = {s: round(d_batch(disc, student, ns, data, [s], 256, dsc.t_max, g_eval).mean().item(), 4)
                    for s in dc.student_timesteps}
    res = {"student": a.student, "train_timesteps": a.train_timesteps, "steps": a.steps, "batch": a.batch,
           "train_loss_last10": sum(curve[-10:]) / 10, "held_out_hinge_by_timestep": held_out,
           "threads": torch.get_num_threads()}
    print(json.dumps(res))
    allres = json.loads(OUT.read_text()) if OUT.is_file() else {}
    allres[" ".join(map(str, a.train_timesteps))] = res
    OUT.write_text(json.dumps(allres, indent=1))


if __name__ == "__main__":
    main()
