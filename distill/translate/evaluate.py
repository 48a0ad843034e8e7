"""Evaluation of a translation run on the test split -> <run>/eval.json and <run>/report.md.

Paired data (pix2pix): L1, PSNR and SSIM between G(A) and the target B, images in [0, 1],
averaged per image, in eval mode (running BN statistics) and in the paper's test mode
(per-image statistics, dropout on); SPADE: the same in eval mode, from label maps. Unpaired data (CycleGAN): the independent domain
classifier's rate of translations classified as the target domain, KID / FID on its features
against real target-domain test images, and the cycle-reconstruction L1; each next to the
untranslated inputs ("before") as a baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from ..errors import DistillError
from ..viz import save_grid
from .data import load_translation
from .infer import run_generator


def _batched(G, x: torch.Tensor, batch: int = 32, eval_mode: bool = True) -> torch.Tensor:
    return torch.cat([run_generator(G, x[i:i + batch], eval_mode, seed=i) for i in range(0, len(x), batch)])


def paired_metrics(fake: torch.Tensor, real: torch.Tensor) -> dict:
    """fake, real: (N, C, H, W) in [-1, 1] -> mean per-image L1, PSNR (dB) and SSIM on [0, 1]."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    f, r = (fake.clamp(-1, 1) + 1) / 2, (real + 1) / 2
    l1 = (f - r).abs().flatten(1).mean(1)
    mse = ((f - r) ** 2).flatten(1).mean(1)
    psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
    s = ssim(f, r, data_range=1.0, reduction="none")
    return {"l1": float(l1.mean()), "psnr": float(psnr.mean()), "ssim": float(s.mean()), "n": len(f)}


def unpaired_metrics(classifier, fake: torch.Tensor, inputs: torch.Tensor, real_target: torch.Tensor,
                     target: int, rec: torch.Tensor) -> dict:
    """Domain success of `fake` (translations) and of `inputs` (before), KID/FID vs real targets."""
    from ..eval.fid import fid_kid
    from .domain import target_rate

    feats = lambda x: torch.cat([classifier.features(x[i:i + 256]) for i in range(0, len(x), 256)]).double()
    real_f = feats(real_target)
    after = fid_kid(real_f, feats(fake))
    before = fid_kid(real_f, feats(inputs))
    return {"domain_success": target_rate(classifier, fake, target),
            "domain_success_before": target_rate(classifier, inputs, target),
            # the classifier's rate on real target-domain images: the ceiling its success rate can show
            "domain_success_real_target": target_rate(classifier, real_target, target),
            "kid": after["kid"], "kid_std": after["kid_std"], "fid": after["fid"],
            "kid_before": before["kid"], "fid_before": before["fid"],
            "cycle_l1": float(((rec - inputs).abs().mean() / 2)), "n": len(fake)}


def _grid(columns, path: Path, n: int = 8) -> Path:
    cols = [c[:n].float() for c in columns]
    cols = [c.expand(-1, 3, -1, -1) if c.shape[1] == 1 else c for c in cols]
    x = torch.stack(cols, 1).reshape(-1, *cols[0].shape[1:])
    return save_grid(x, path, nrow=len(cols), scale=max(1, 128 // cols[0].shape[-1]))


def _eval_pix2pix(nets, real_A, real_B, result, run_dir, cfg, data_cfg, palette=None):
    fake = _batched(nets["G"], real_A)
    result["eval_mode"] = paired_metrics(fake, real_B)
    result["paper_test_mode"] = paired_metrics(_batched(nets["G"], real_A, eval_mode=False), real_B)
    result["metrics"] = result["eval_mode" if cfg.eval_mode else "paper_test_mode"]
    return _grid([real_A, fake, real_B], run_dir / "eval-grid.png"), "input (A) | output G(A) | target (B)"


def _eval_spade(nets, real_A, real_B, result, run_dir, cfg, data_cfg, palette=None):
    """Eval mode only (no dropout; the paper's test time); with the style encoder, z ~ N(0, I) seeded."""
    from .labels import colorize

    torch.manual_seed(0)
    fake = _batched(nets["G"], real_A, batch=8)
    result["eval_mode"] = result["metrics"] = paired_metrics(fake, real_B)
    return (_grid([colorize(real_A, palette), fake, real_B], run_dir / "eval-grid.png"),
            "label map | output G(labels) | photo")


def _eval_cyclegan(nets, real_A, real_B, result, run_dir, cfg, data_cfg, palette=None):
    fake_B, fake_A = _batched(nets["G_A"], real_A), _batched(nets["G_B"], real_B)
    rec_A, rec_B = _batched(nets["G_B"], fake_B), _batched(nets["G_A"], fake_A)
    if cfg.domain_classifier:
        from .domain import load_domain_classifier

        clf = load_domain_classifier(cfg.domain_classifier)
        tb = 1 if data_cfg.direction == "AtoB" else 0  # the classifier's label of our output domain b
        result["classifier"] = {"spec": cfg.domain_classifier, **getattr(clf, "info", {})}
        result["AtoB"] = unpaired_metrics(clf, fake_B, real_A, real_B, tb, rec_A)
        result["BtoA"] = unpaired_metrics(clf, fake_A, real_B, real_A, 1 - tb, rec_B)
    else:
        result["AtoB"] = {"cycle_l1": float((rec_A - real_A).abs().mean() / 2)}
        result["BtoA"] = {"cycle_l1": float((rec_B - real_B).abs().mean() / 2)}
    pics = _grid([real_A, fake_B, rec_A], run_dir / "eval-grid.png")
    _grid([real_B, fake_A, rec_B], run_dir / "eval-grid-BtoA.png")
    return pics, "input (A) | output G_A(A) | reconstruction G_B(G_A(A)); eval-grid-BtoA.png: the reverse"


EVALUATORS = {"pix2pix": _eval_pix2pix, "spade": _eval_spade, "cyclegan": _eval_cyclegan}


@torch.no_grad()
def evaluate_run(run_dir: Path, nets: dict, method: str, cfg, data_cfg, train_it_per_s: Optional[float] = None) -> dict:
    """`cfg`: the `translate:` section (evaluation keys), `data_cfg`: the `data:` section."""
    from .labels import palette_of
    from .methods import labels_for

    run_dir = Path(run_dir)
    labels = labels_for(method, cfg)
    data = load_translation(data_cfg, cfg.eval_split, train=False, labels=labels)
    n = cfg.eval_max_images
    a, b = (data.a[:n], data.b[:n]) if n else (data.a, data.b)
    real_A, real_B = data.to_input(a), b.float() / 127.5 - 1
    for net in nets.values():
        net.eval()
    result = {"method": method, "split": cfg.eval_split, "direction": data_cfg.direction, "crop_size": data_cfg.crop_size}
    if train_it_per_s is not None:
        result["train_it_per_s"] = train_it_per_s
    palette = palette_of(labels) if labels is not None else None
    pics, header = EVALUATORS[method](nets, real_A, real_B, result, run_dir, cfg, data_cfg, palette)
    (run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    write_report(run_dir, result, pics, header)
    for net in nets.values():
        net.train()
    return result


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", v))
    return rows


def write_report(run_dir: Path, result: dict, grid: Path, header: str) -> Path:
    lines = [f"# {result['method']} evaluation ({result['split']} split, {result['direction']}, "
             f"{result['crop_size']} px)", "", "| metric | value |", "|---|---|"]
    for k, v in _flatten(result):
        if k in ("method", "split", "direction", "crop_size"):
            continue
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    lines += ["", f"Before / after (first test images; columns: {header}):", "",
              f"![before / after]({grid.name})", ""]
    path = Path(run_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path


def evaluate_checkpoint(checkpoint: str | Path, out_dir: Optional[str | Path] = None) -> dict:
    """Evaluate a saved checkpoint (all its generators) into `out_dir` (default: its run folder)."""
    from .infer import resolve_checkpoint
    from .methods import METHODS
    from .config import configs_from_state
    from .weights import load_into, read_state_dict

    ckpt = resolve_checkpoint(checkpoint)
    state = json.loads((ckpt / "state.json").read_text())
    if "translate" not in state:
        raise DistillError(f"{ckpt}: not a pix2pix / CycleGAN / SPADE checkpoint")
    cfg, data_cfg = configs_from_state(state, str(ckpt / "state.json"))
    m = METHODS[state["method"]](cfg, data_cfg)
    nets = {g: m.nets[g] for g in m.generators}
    for name, net in nets.items():
        load_into(net, read_state_dict(ckpt / f"{name}.safetensors"), str(ckpt))
    return evaluate_run(Path(out_dir) if out_dir else ckpt.parent.parent, nets, state["method"], cfg, data_cfg)
