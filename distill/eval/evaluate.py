"""Evaluate a pipeline: FID/KID against real images, class accuracy, within-class diversity, at
several step counts; writes eval.json, eval.md, a FID-versus-steps plot and sample grids.

Samples are class-balanced (label i % K) and drawn from fixed seeds, so every step count and
every model sees the same noise and labels.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from ..data import load_images, to_uint8_images
from ..diffusion.guided import takes_guidance
from ..diffusion.sampling import make_scheduler, resolve_sampler, sample
from ..engine.checkpoint import weights_fingerprint
from ..engine.randomness import rng
from ..viz import line_plot, save_grid, upscale_for_view
from .fid import extract, feature_extractor, fid_kid, pairwise_distance


@torch.no_grad()
def sample_batch(unet, sched, i: int, labels, start: int, m: int, steps: int, guidance_scale: float,
                 seed: int) -> torch.Tensor:
    """Batch i of an evaluation set: samples start .. start+m-1, seeded by (seed, i) alone, so any
    subset of the batches (a shard, scripts/eval_sharded.py) reproduces a single-process run's.
    -> uint8 (m, C, H, W), as the saved images would be."""
    cfg = unet.config
    device = next(unet.parameters()).device
    noise = torch.randn(m, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=rng(seed, "eval", i))
    y = labels[start:start + m].to(device) if labels is not None else None
    x = sample(unet, sched, noise.to(device, unet.dtype), y, steps, guidance_scale,
               generator=rng(seed, "eval-step", i, device=device)).float().cpu()
    return to_uint8_images(x)


def guidance_factor(g: float, conditional: bool = True) -> int:
    """Network evaluations per sampler step of one image: 2 with classifier-free guidance (a conditional and an
    unconditional pass), else 1."""
    return 2 if conditional and float(g) != 1.0 else 1


def guided_by_two_passes(pipe) -> bool:
    """Whether guidance costs the pipeline a second (unconditional) pass: a class-conditional network that does not
    take the guidance scale as an input (a w-conditioned student does, in one pass)."""
    return bool(pipe.num_classes) and not takes_guidance(pipe.unet)


def sweep_evaluations(samples: int, settings: list[tuple[int, float]], conditional: bool = True) -> int:
    """Network evaluations of scoring `samples` images at each (steps, guidance) setting."""
    return sum(samples * s * guidance_factor(g, conditional) for s, g in settings)


def generate(pipe, n: int, steps: int, scheduler: Optional[str] = "auto", guidance_scale: float = 1.0,
             batch: int = 500, seed: int = 1234, progress=None):
    """n class-balanced samples -> (x (n, C, H, W) float in [-1, 1] on CPU, labels (n,) or None); `scheduler`: a
    name in distill.diffusion.sampling.SCHEDULERS, "auto" (the schedule's default) or None (the pipeline's own).
    `progress` advances by the network evaluations of each batch (images x steps x the guidance factor)."""
    sched = make_scheduler(scheduler, pipe.scheduler.config) if scheduler else pipe.scheduler
    k = pipe.num_classes
    labels = torch.arange(n) % k if k else None
    per_image = steps * guidance_factor(guidance_scale, guided_by_two_passes(pipe))
    out = []
    for i, start in enumerate(range(0, n, batch)):
        m = min(batch, n - start)
        out.append(sample_batch(pipe.unet, sched, i, labels, start, m, steps, guidance_scale, seed).float() / 127.5 - 1)
        if progress is not None:
            progress.update(m * per_image)
    return torch.cat(out), labels


def real_reference(data_cfg, split: str, extractor):
    ref = load_images(dataclasses.replace(data_cfg, split=split, limit=None))
    return ref, extract(extractor, ref.images)


def reference_at(unet_config, eval_cfg, data_cfg):
    """The real images a model's samples are scored against, at the samples' size and channels: scoring 28 px
    samples against 16 px references (the DataConfig default) inflated every FID of the MNIST ablations until
    this was enforced. -> (extractor, ref, real_feats, real within-class distance)."""
    extractor = feature_extractor(eval_cfg.features)
    data_cfg = dataclasses.replace(data_cfg, resolution=unet_config.sample_size, channels=unet_config.in_channels)
    ref, real_feats = real_reference(data_cfg, eval_cfg.reference_split, extractor)
    return extractor, ref, real_feats, pairwise_distance(real_feats.float(), ref.labels)


def score(fake: torch.Tensor, labels, real_feats, real_labels, extractor) -> dict:
    feats = extract(extractor, fake)
    res = fid_kid(real_feats, feats)
    res["intra_class_dist"] = pairwise_distance(feats.float(), labels)
    if labels is not None:
        pred = extractor.classifier.head(feats.float()).argmax(1) if hasattr(extractor, "classifier") else None
        if pred is not None:
            res["class_acc"] = float((pred == labels).float().mean())
            res["class_coverage"] = float(len(pred.unique()) / int(labels.max() + 1))
    return res


def guided_settings(eval_cfg) -> list[tuple[int, float]]:
    """The (steps, guidance) settings of `eval.guidance_sweep`, scored besides the steps sweep for a teacher."""
    return [(eval_cfg.guidance_steps, float(g)) for g in eval_cfg.guidance_sweep]


def eval_settings(eval_cfg, steps, guidance: float, conditional: bool, sweep_guidance: bool) -> list[tuple[int, float]]:
    """(steps, guidance) of each row: the steps sweep at `guidance`, then, for a conditional model with
    `sweep_guidance`, the settings of `guided_settings(eval_cfg)` not already among them."""
    settings = [(s, guidance) for s in steps]
    if sweep_guidance and conditional:  # an unconditional model has nothing to guide
        settings += [sg for sg in guided_settings(eval_cfg) if sg not in settings]
    return settings


def grid_name(tag: str, steps: int, guidance: float, base: float) -> str:
    """The sample grid of a row: <tag>-<steps>steps.png, with -guidance<g> for a row of the guidance sweep."""
    return f"{tag}-{steps}steps" + ("" if guidance == base else f"-guidance{guidance:g}") + ".png"


def evaluate_pipeline(pipe, eval_cfg, data_cfg, out_dir, tag: str = "teacher", scheduler: Optional[str] = None,
                      steps: Optional[list[int]] = None, guidance_scale: Optional[float] = None,
                      weights: Optional[str] = None, sweep_guidance: bool = False) -> list[dict]:
    """FID/KID etc. of `pipe` at each step count (at `guidance_scale`), then, with `sweep_guidance`, at each
    setting of `guided_settings(eval_cfg)`; files go to `out_dir` (eval.json, eval.md, plot, grids).
    `weights`: `weights_fingerprint(pipe.unet)` where the caller already has it (hashing a large UNet twice)."""
    from tqdm.auto import tqdm

    if eval_cfg.num_samples <= 0:
        from ..errors import DistillError

        raise DistillError("eval.num_samples must be positive to evaluate")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = steps or eval_cfg.steps
    scheduler = scheduler if scheduler is not None else eval_cfg.scheduler
    if scheduler != "pipeline":  # "auto" -> ddim or flow-euler, as the rows record it
        scheduler = resolve_sampler(scheduler, pipe.scheduler.config)
        make_scheduler(scheduler, pipe.scheduler.config)  # a sampler of the wrong family: one line, before any work
    w = eval_cfg.guidance_scale if guidance_scale is None else guidance_scale
    extractor, ref, real_feats, real_div = reference_at(pipe.unet.config, eval_cfg, data_cfg)
    rows, weights = [], weights or weights_fingerprint(pipe.unet)
    settings = eval_settings(eval_cfg, steps, w, bool(pipe.num_classes), sweep_guidance)
    names = pipe.config.get("class_names") if pipe.num_classes else None  # a DistillPipeline's, where stored
    # the bar counts network evaluations: a 50-step row is 50x a 1-step one
    bar = tqdm(total=sweep_evaluations(eval_cfg.num_samples, settings, guided_by_two_passes(pipe)), desc=f"eval {tag}",
               unit="net-eval", unit_scale=True)
    for s, g in settings:
        t0 = time.time()
        x, labels = generate(pipe, eval_cfg.num_samples, s, scheduler if scheduler != "pipeline" else None, g,
                             eval_cfg.batch_size, eval_cfg.seed, bar)
        row = {"model": tag, "steps": s, "scheduler": scheduler, "guidance_scale": g,
               "num_samples": eval_cfg.num_samples, "features": eval_cfg.features, "seed": eval_cfg.seed,
               "weights": weights,
               **score(x, labels, real_feats, ref.labels, extractor),
               "real_intra_class_dist": real_div, "sample_seconds": round(time.time() - t0, 2)}
        rows.append(row)
        save_grid(x[:80], out_dir / grid_name(tag, s, g, w), nrow=pipe.num_classes or 10,
                  scale=upscale_for_view(x.shape[-1]), column_names=names)
        bar.set_postfix(steps=s, fid=f"{row['fid']:.3f}")
    bar.close()
    write_eval(rows, out_dir, tag)
    return rows


def alike_rows(path, eval_cfg, **fields) -> Optional[list[dict]]:
    """The rows of an eval JSON (eval-<tag>.json) measured with `eval_cfg`'s number of samples, features and seed
    and with `fields` equal (scheduler, guidance_scale, weights). A missing or unreadable file: None."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(rows, list):
        return None
    want = {"num_samples": eval_cfg.num_samples, "features": eval_cfg.features, **fields}
    return [r for r in rows if isinstance(r, dict) and "fid" in r and all(r.get(k) == v for k, v in want.items())
            and r.get("seed", eval_cfg.seed) == eval_cfg.seed]


def one_each(rows: list[dict], key: str, values) -> Optional[list[dict]]:
    """The first of `rows` for each of `values` of `key`; None unless every value has one."""
    keep = {}
    for r in rows:
        if r.get(key) in values:
            keep.setdefault(r[key], r)
    return [keep[v] for v in values] if set(keep) == set(values) else None


def matching_rows(path, eval_cfg, key: str, values, **fields) -> Optional[list[dict]]:
    """`alike_rows`, one for each of `values` of `key` (steps, truncation); None unless every value has one."""
    return one_each(alike_rows(path, eval_cfg, **fields) or [], key, values)


def best_row(rows: list[dict]) -> dict:
    """The row of lowest FID: a teacher's best setting (steps and guidance)."""
    return min(rows, key=lambda r: r["fid"])


def setting_name(row: dict) -> str:
    """"25 steps" or "25 steps at guidance 2": how a row's setting reads in reports and cards."""
    g = float(row.get("guidance_scale", 1.0) or 1.0)
    return f"{row['steps']} steps" + (f" at guidance {g:g}" if g != 1.0 else "")


def cached_rows(folder, tag: str, eval_cfg, steps, guidance, scheduler: str = "ddim",
                weights: Optional[str] = None, sweep_guidance: bool = False) -> Optional[list[dict]]:
    """Reuse an FID table (folder/eval/eval-<tag>.json, e.g. the teacher's shipped one) when it was
    measured with the same samples, features, seed, sampler and guidance (and, given `weights`, of the
    same weights: `weights_fingerprint`). With `sweep_guidance`, the table's rows at other guidance scales measured
    alike follow (the teacher's own guidance sweep), and every setting of `guided_settings(eval_cfg)` must be
    among them."""
    path, extra = Path(folder) / "eval" / f"eval-{tag}.json", {"weights": weights} if weights else {}
    alike = alike_rows(path, eval_cfg, scheduler=scheduler, **extra) or []  # the table, read once
    rows = one_each([r for r in alike if r.get("guidance_scale") == guidance], "steps", list(steps))
    if rows is None or not sweep_guidance:
        return rows
    guided = [r for r in alike if r.get("guidance_scale") != guidance]
    have = {(r["steps"], r["guidance_scale"]) for r in guided}
    return None if any(g != guidance and (s, g) not in have for s, g in guided_settings(eval_cfg)) else rows + guided


def write_eval(rows: list[dict], out_dir: Path, tag: str) -> None:
    out_dir = Path(out_dir)
    (out_dir / f"eval-{tag}.json").write_text(json.dumps(rows, indent=1))
    cols = ["steps", "scheduler", "guidance_scale", "fid", "kid", "class_acc", "intra_class_dist"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    (out_dir / f"eval-{tag}.md").write_text("\n".join(lines) + "\n")
    line = [r for r in rows if r.get("guidance_scale") == rows[0].get("guidance_scale")]  # the steps sweep
    line_plot({tag: ([r["steps"] for r in line], [r["fid"] for r in line])}, out_dir / f"fid-vs-steps-{tag}.png",
              "sampling steps", "FID (classifier features)", title=f"{tag}: FID vs steps", logx=True,
              xticks=[r["steps"] for r in line])


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)
