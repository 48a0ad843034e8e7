"""Mode-coverage check during distillation (monitoring only; nothing here feeds a loss).

The evaluation classifier labels 1-step student samples of every class: class accuracy and
coverage catch a student that draws the wrong classes; the mean pairwise feature distance within
each class, relative to real data, catches the subtler collapse where every class is present but
each is a single image (class counts look healthy).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..eval.classifier import load_classifier
from ..eval.fid import pairwise_distance
from ..eval.verdict import shortfalls
from ..diffusion.sampling import null_label, sample, student_scheduler
from ..viz import save_grid, upscale_for_view
from ..engine.randomness import rng


@lru_cache(maxsize=4)
def _classifier(spec: str):
    return load_classifier(spec)


def student_guidance(dc, net) -> float:
    """The guidance scale a student is sampled at: a w-conditioned one (distill.diffusion.guided) at the teacher's
    guidance of the recipe (its input), any other at 1 (its guidance, if any, is distilled into it)."""
    from ..diffusion.guided import takes_guidance

    return dc.teacher_guidance if takes_guidance(net) else 1.0


@torch.no_grad()
def coverage_check(student, noise_scheduler, dc, data, grid_path, seed: int, per_class: int = 20) -> dict:
    clf = _classifier(dc.coverage_classifier)
    k = null_label(student) or 10
    labels = torch.arange(k).repeat(per_class)
    cfg = student.config
    noise = torch.randn(len(labels), cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=rng(seed, "coverage"))
    device = next(student.parameters()).device
    was_training = student.training
    student.eval()
    x = sample(student, student_scheduler(noise_scheduler, dc.student_timesteps), noise.to(device),
               labels.to(device) if null_label(student) is not None else None, 1,
               guidance_scale=student_guidance(dc, student)).float().cpu()
    student.train(was_training)
    save_grid(x[: 8 * k], grid_path, nrow=k, scale=upscale_for_view(x.shape[-1]),
              column_names=data.class_names if null_label(student) is not None else None)
    feats = clf.features(x)
    pred = clf.head(feats).argmax(1)
    real_idx = torch.arange(min(len(data), 2000))
    real_x, real_y = data.batch(real_idx)
    real_div = pairwise_distance(clf.features(real_x), real_y)
    div = pairwise_distance(feats, labels)
    out = {"class_acc": float((pred == labels).float().mean()),
           "class_coverage": len(pred.unique()) / k,
           "intra_class_dist": div, "intra_class_dist_real": real_div,
           "diversity_ratio": div / real_div if real_div > 0 else float("nan")}
    reasons = shortfalls({"class_coverage": out["class_coverage"], "intra_class_dist": div,  # the reports' thresholds
                          "real_intra_class_dist": real_div}, k)
    if reasons:
        out["collapse_warning"] = "; ".join(reasons)
    return out
