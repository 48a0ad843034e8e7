"""Scoring a generator with the teacher's evaluation machinery (distill.eval): FID/KID on the
evaluation classifier's features (or Inception), class accuracy and coverage, within-class
diversity; at each truncation psi of `eval.truncation`, and, during training, on a small sample
(the monitor) whose numbers the doctor reads (`class_coverage`, `diversity_ratio`, `fid`).

Samples are class-balanced (label i % K) and drawn from fixed seeds (batch i: rng(seed, "eval", i)),
and pass through uint8 as saved images would, so every psi and every model sees the same latents.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
import torch

from ..data import to_uint8_images
from ..engine.randomness import rng
from ..eval.evaluate import _fmt, real_reference, score
from ..eval.fid import extract, pairwise_distance
from ..viz import line_plot, save_grid, upscale_for_view
from .architectures import GANGenerator, model_device


@torch.no_grad()
def generate(G: GANGenerator, n: int, truncation: float = 1.0, batch: int = 500, seed: int = 1234):
    """n class-balanced samples -> (x (n, C, H, W) float in [-1, 1] on CPU, labels (n,) or None)."""
    k = G.config.num_classes
    labels = torch.arange(n) % k if k else None
    out = []
    for i, start in enumerate(range(0, n, batch)):
        m = min(batch, n - start)
        z = torch.randn(m, G.config.z_dim, generator=rng(seed, "eval", i)).to(model_device(G))
        y = labels[start:start + m] if labels is not None else None
        x = G(z, y, truncation=truncation).float().cpu()
        out.append(to_uint8_images(x).float() / 127.5 - 1)
    return torch.cat(out), labels


def quiet_score(x, labels, real_feats, real_labels, extractor) -> dict:
    """`distill.eval.evaluate.score` without torchmetrics' KID memory notice (a few thousand features)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save")
        return score(x, labels, real_feats, real_labels, extractor)


class Monitor:
    """FID/KID, class accuracy/coverage and the within-class diversity ratio of `n` samples against
    (up to 5000) training images, computed during training; the reference features once."""

    def __init__(self, extractor, data, n: int, batch: int, seed: int, max_real: int = 5000):
        self.extractor, self.n, self.batch, self.seed = extractor, n, batch, seed
        m = min(len(data), max_real)
        self.real_feats = extract(extractor, data.images[:m])  # (m, D)
        self.real_labels = data.labels[:m] if data.labels is not None else None
        self.real_div = pairwise_distance(self.real_feats.float(), self.real_labels)

    def __call__(self, G: GANGenerator) -> dict:
        x, labels = generate(G, self.n, 1.0, self.batch, self.seed)
        res = quiet_score(x, labels, self.real_feats, self.real_labels, self.extractor)
        res["diversity_ratio"] = res["intra_class_dist"] / self.real_div if self.real_div > 0 else float("nan")
        return res


def evaluate_generator(G: GANGenerator, eval_cfg, data_cfg, out_dir, extractor) -> list[dict]:
    """One row per psi of eval.truncation; writes eval-gan.json, eval-gan.md and a grid per psi."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = G.config
    data_cfg = dataclasses.replace(data_cfg, resolution=cfg.resolution, channels=cfg.channels)
    ref, real_feats = real_reference(data_cfg, eval_cfg.reference_split, extractor)
    real_div = pairwise_distance(real_feats.float(), ref.labels)
    rows = []
    for psi in eval_cfg.truncation:
        t0 = time.time()
        x, labels = generate(G, eval_cfg.num_samples, psi, eval_cfg.batch_size, eval_cfg.seed)
        rows.append({"model": "gan", "truncation": psi, "num_samples": eval_cfg.num_samples,
                     "features": eval_cfg.features, "reference_split": eval_cfg.reference_split,
                     "seed": eval_cfg.seed, **quiet_score(x, labels, real_feats, ref.labels, extractor),
                     "real_intra_class_dist": real_div, "sample_seconds": round(time.time() - t0, 2)})
        save_grid(x[:80], out_dir / f"gan-psi{psi:g}.png", nrow=cfg.num_classes or 10,
                  scale=upscale_for_view(x.shape[-1]))
    write_eval(rows, out_dir)
    return rows


EVAL_COLUMNS = ["truncation", "fid", "kid", "class_acc", "class_coverage", "intra_class_dist", "real_intra_class_dist"]


def eval_table(rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(EVAL_COLUMNS) + " |", "|" + "---|" * len(EVAL_COLUMNS)]
    return lines + ["| " + " | ".join(_fmt(r.get(c, "")) for c in EVAL_COLUMNS) + " |" for r in rows]


def write_eval(rows: list[dict], out_dir: Path) -> None:
    (out_dir / "eval-gan.json").write_text(json.dumps(rows, indent=1))
    (out_dir / "eval-gan.md").write_text("\n".join(eval_table(rows)) + "\n")
    if len(rows) > 1:
        line_plot({"gan": ([r["truncation"] for r in rows], [r["fid"] for r in rows])}, out_dir / "fid-vs-psi.png",
                  "truncation psi", "FID (classifier features)", title="FID vs truncation")

