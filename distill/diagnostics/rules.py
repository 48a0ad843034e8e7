"""The doctor's rules: plain functions `rule(run: RunData) -> Finding | None`, listed in `RULES`. A finding's
score (0..1) ranks it; scores are heuristics, calibrated so that a run showing a single failure puts that
failure first. A rule whose metrics are missing stays silent."""

from __future__ import annotations

import math
import statistics
from typing import Callable, Optional

from .run_data import Finding, RunData, to_float

SMALL_DATA = 5000  # below this many images a discriminator overfits quickly (Karras et al. 2020, ADA)


# ---------------------------------------------------------------------------------------------
# Helpers


def _quarter(vals: list[float], which: str) -> list[float]:
    n = max(1, len(vals) // 4)
    return vals[:n] if which == "first" else vals[-n:]


def _longest_streak(flags: list[bool]) -> tuple[int, int]:
    """(length, start index) of the longest run of True."""
    best, start, cur, cur_start = 0, 0, 0, 0
    for i, f in enumerate(flags):
        if f:
            if cur == 0:
                cur_start = i
            cur += 1
            if cur > best:
                best, start = cur, cur_start
        else:
            cur = 0
    return best, start


def _d_accuracy(run: RunData) -> list[tuple[int, float]]:
    """Mean of D's accuracy on real and fake per row (or `d_acc` itself)."""
    real, fake = dict(run.series("d_acc_real")), dict(run.series("d_acc_fake"))
    if real or fake:
        steps = sorted(set(real) | set(fake))
        return [(s, statistics.mean([d[s] for d in (real, fake) if s in d])) for s in steps]
    return run.series("d_acc")


def _lrs(run: RunData) -> tuple[Optional[float], Optional[float], str]:
    """(lr_g, lr_d, where from): metrics rows first, then the recipe."""
    lr_g, lr_d = run.last_value("lr_g"), run.last_value("lr_d")
    if lr_g is not None and lr_d is not None:
        return lr_g, lr_d, "metrics"
    g = run.recipe_value(("lr_g", "g_lr", "generator_lr", "learning_rate_g", "g_learning_rate"))
    d = run.recipe_value(("lr_d", "d_lr", "disc_lr", "discriminator_lr", "learning_rate_d", "d_learning_rate",
                          "disc_learning_rate", "discriminator_learning_rate"))
    if d is None:
        d = run.recipe_value(("learning_rate", "lr"), path_hint="disc")
    if g is None:
        g = run.recipe_value(("learning_rate", "lr"), exclude="disc")
    if d is None and g is not None:
        mult = run.recipe_value(("d_lr_mult", "lr_d_mult", "disc_lr_mult"))
        d = g * mult if mult is not None else None
    return lr_g if lr_g is not None else g, lr_d if lr_d is not None else d, "recipe"


# ---------------------------------------------------------------------------------------------
# Rules


def rule_nonfinite(run: RunData) -> Optional[Finding]:
    bad = []
    for i, r in enumerate(run.rows):
        for k, v in r.items():
            f = to_float(v)
            if k not in ("step", "time") and f is not None and not math.isfinite(f):
                bad.append((int(r.get("step", i)), k, v))
    if not bad:
        return None
    step, k, v = bad[0]
    keys = sorted({b[1] for b in bad})
    return Finding("nonfinite", 1.0, "non-finite values (training diverged)",
                   f"{k} = {v} first at step {step}; {len(bad)} non-finite values in {', '.join(keys)}",
                   "lower the learning rates 2-4x, clip gradients (max_grad_norm 1.0), train in fp32/bf16 "
                   "rather than fp16, and check the data for nan/inf",
                   f"no nan/inf in metrics.jsonl past step {step}")


def rule_d_too_strong(run: RunData) -> Optional[Finding]:
    acc = _d_accuracy(run)
    if len(acc) < 4:
        return None
    length, start = _longest_streak([a > 0.95 for _, a in acc])
    frac = length / len(acc)
    if length < 3 or frac < 0.25:
        return None
    steps = [s for s, _ in acc]
    mean = statistics.mean(a for _, a in acc[start:start + length])
    return Finding("d_too_strong", min(0.95, 0.55 + 0.4 * frac), "discriminator too strong",
                   f"D accuracy {mean:.1%} (> 95%) from step {steps[start]} to {steps[start + length - 1]} "
                   f"({frac:.0%} of the logged run)",
                   "weaken D: lower its lr (or raise G's), add R1 (gamma 0.1-10) or spectral norm, "
                   "augment its inputs (DiffAugment / ADA)",
                   "d_acc_real/d_acc_fake should stay below ~0.9 after warm-up")


def rule_vanishing_g_grad(run: RunData) -> Optional[Finding]:
    g = [v for _, v in run.series("grad_norm_g")]
    if len(g) < 4:
        return None
    first, last = statistics.median(_quarter(g, "first")), statistics.median(_quarter(g, "last"))
    if not (last < 1e-7 or (first > 0 and last < 1e-3 * first)):
        return None
    key = run.key("grad_norm_g")
    return Finding("vanishing_g_grad", 0.8, "vanishing generator gradient",
                   f"{key} fell from {first:.3g} (first quarter) to {last:.3g} (last quarter)",
                   "use the non-saturating or hinge G loss instead of log(1 - D(G(z))), and weaken D "
                   "(lower D lr, R1) so D(G(z)) is not ~0",
                   f"{key} should stay within ~100x of its early value")


def rule_g_loss(run: RunData) -> Optional[Finding]:
    s = [v for _, v in run.series("loss_g")]
    if len(s) < 6:
        return None
    key = run.key("loss_g")
    first, last = statistics.median(_quarter(s, "first")), statistics.median(_quarter(s, "last"))
    grow = abs(last) / max(abs(first), 0.1)
    if grow > 5 and last > first or max(abs(v) for v in s) > 1e4:
        return Finding("g_loss_exploding", min(0.85, 0.6 + 0.05 * math.log2(grow + 1)),
                       "generator loss exploding",
                       f"{key} rose from {first:.3g} (first quarter) to {last:.3g} (last quarter)",
                       "lower the learning rates (G and D) 2-4x, clip G's gradients, and check D is not "
                       "winning outright (see D accuracy)",
                       f"{key} should level off instead of growing")
    half = s[len(s) // 2:]
    spread = max(half) - min(half)
    if spread <= 1e-4 * max(1.0, abs(statistics.median(half))):
        return Finding("g_loss_flat", 0.6, "generator loss flat (generator not learning)",
                       f"{key} constant at {statistics.median(half):.4g} over the last half of the run",
                       "check G's parameters reach the optimiser and its lr is not 0 (scheduler), and that "
                       "the G loss depends on D's output (no detach)",
                       f"{key} should move over the run")
    return None


def rule_mode_collapse(run: RunData) -> Optional[Finding]:
    cov = run.series("coverage")
    what = run.key("coverage")
    if not cov:
        modes = run.series("modes")
        total = run.last_value("modes_total") or run.recipe_value(("n_modes", "num_classes", "modes_total"))
        if not modes or not total:
            return None
        cov = [(s, v / total) for s, v in modes]
        what = "modes captured"
    if len(cov) < 3:
        return None
    vals = [v for _, v in cov]
    peak_i = max(range(len(vals)), key=lambda i: vals[i])
    end = statistics.median(vals[-3:])
    peak = vals[peak_i]
    fell = peak_i < len(vals) - 1 and vals[-1] < peak  # a peak at the last row is not a fall
    if fell and peak > 0 and peak - end >= 0.2 * peak and peak - end >= 0.1:
        drop = (peak - end) / peak
        return Finding("mode_collapse", min(0.9, 0.6 + 0.35 * drop), "mode collapse (coverage falling)",
                       f"{what} fell from {peak:.0%} at step {cov[peak_i][0]} to {end:.0%} at the end",
                       "add minibatch std / minibatch discrimination or R1 to D, lower D's lr; rerun and "
                       "keep the checkpoint with the best coverage",
                       f"{what} should not fall after its peak")
    if end < 0.5 and len(vals) >= 5:
        return Finding("mode_collapse", 0.5, "mode collapse (low coverage throughout)",
                       f"{what} only {end:.0%} at the end (peak {peak:.0%})",
                       "add minibatch std / discrimination, R1 or spectral norm to D; check conditioning "
                       "labels reach G",
                       f"{what} should rise towards 100%")
    return None


def rule_within_class_collapse(run: RunData) -> Optional[Finding]:
    """Every class present but each drawn as (nearly) one image: class counts look healthy."""
    div = run.series("diversity")
    if not div:
        return None
    end = div[-1][1]
    if end >= 0.5:
        return None
    return Finding("within_class_collapse", min(0.9, 0.6 + 0.6 * (0.5 - end)),
                   "mode collapse within classes (one image per class)",
                   f"within-class diversity {end:.2f}x that of real data at step {div[-1][0]}",
                   "strengthen the discriminator so it can tell the mean image from real ones (raise its lr, "
                   "lower its noise level, drop heavy augmentation), lower lambda_distill or the teacher's guidance",
                   "diversity_ratio should climb towards 1 and the sample grid's rows should differ")


def rule_fid_rising(run: RunData) -> Optional[Finding]:
    """Sample quality getting worse: the FID logged during training well above its best, late in the run."""
    fid = run.series("fid")
    if len(fid) < 3:
        return None
    best_i = min(range(len(fid)), key=lambda i: fid[i][1])
    (best_step, best), (last_step, last) = fid[best_i], fid[-1]
    if best_i == len(fid) - 1 or best <= 0 or last < 1.25 * best:
        return None
    return Finding("fid_rising", min(0.85, 0.5 + 0.15 * math.log2(last / best)), "sample quality degrading (FID rising)",
                   f"fid {best:.3g} at step {best_step}, {last:.3g} at step {last_step} ({last / best:.2f}x its best)",
                   "keep the checkpoint nearest the best step; rerun with lower learning rates, a larger R1 gamma or "
                   "DiffAugment (a rising FID while D's accuracy climbs is D overfitting)",
                   "fid should fall or level off instead of rising after its best")


def rule_d_at_chance(run: RunData) -> Optional[Finding]:
    """D not learning: accuracy near 50% on real and fake for most of the run."""
    real, fake = run.series("d_acc_real"), run.series("d_acc_fake")
    if len(real) < 5 or len(fake) < 5:
        return None
    half = len(real) // 2
    acc = [(r + f) / 2 for (_, r), (_, f) in zip(real[half:], fake[half:])]
    mean = statistics.mean(acc)
    if mean > 0.6:
        return None
    div = run.series("diversity")
    healthy = bool(div) and div[-1][1] >= 0.5  # a balanced game with diverse samples is an equilibrium, not a fault
    score = 0.25 if healthy else 0.55 + 0.5 * (0.6 - mean)
    return Finding("d_at_chance", score, "discriminator not learning (at chance)",
                   f"mean D accuracy {mean:.0%} over the second half of the run"
                   + (" (samples stay diverse: possibly a healthy equilibrium)" if healthy else ": G gets no useful signal"),
                   "raise D's learning rate, remove augmentation or lower the noise added to D's inputs, "
                   "check D's heads receive gradients",
                   "d_acc_real and d_acc_fake should rise above ~0.6 within a few hundred steps")


def rule_lr_imbalance(run: RunData) -> Optional[Finding]:
    lr_g, lr_d, where = _lrs(run)
    if not lr_g or not lr_d or lr_g <= 0 or lr_d <= 0:
        return None
    ratio = lr_d / lr_g
    if 0.25 < ratio < 4:
        return None
    score = min(0.7, 0.45 + 0.05 * abs(math.log2(ratio)))
    if run.recipe.get("task") == "distill":  # distillation: fresh heads on a frozen backbone
        score *= 0.6  # usually need a higher lr than the pretrained student; weaker evidence of a fault
    return Finding("lr_imbalance", score,
                   "learning-rate imbalance between D and G",
                   f"D lr {lr_d:.3g} vs G lr {lr_g:.3g} ({ratio:.3g}x, from {where})",
                   "start from equal learning rates (or the TTUR 4:1 of Heusel et al. 2017 only with R1/SN) "
                   "and change one at a time",
                   "D accuracy and coverage compared with the run at equal learning rates")


def rule_little_data(run: RunData) -> Optional[Finding]:
    n = run.last_value("dataset_size")
    if n is None:
        n = run.recipe_value(("dataset_size", "num_train", "n_train", "train_size", "num_images",
                              "num_examples", "limit"))
    if n is None or n <= 0 or n >= SMALL_DATA or not run.adversarial:
        return None
    score = 0.4 + (0.1 if n < 1000 else 0.0)
    real = [v for _, v in run.series("d_acc_real")]
    extra = ""
    if real and statistics.median(_quarter(real, "last")) > 0.8:  # ADA's r_t = E[sign D(x)] > 0.6
        score += 0.25
        extra = f"; D accuracy on real data {statistics.median(_quarter(real, 'last')):.0%} late in the run"
    batch = run.last_value("batch_size") or run.recipe_value(("batch_size",))
    last_step = max((int(r.get("step", 0)) for r in run.rows), default=0)
    if batch:
        extra += f"; ~{last_step * batch / n:.0f} epochs"
    return Finding("little_data", min(score, 0.8), "too little data for the discriminator (D overfits)",
                   f"{n:.0f} training images{extra}",
                   "augment D's inputs (DiffAugment / ADA), add R1, use fewer D steps or a smaller D, or "
                   "add data",
                   "d_acc_real on held-out real images should match d_acc_real on training images")


RULES: list[Callable[[RunData], Optional[Finding]]] = [
    rule_nonfinite, rule_d_too_strong, rule_vanishing_g_grad, rule_g_loss, rule_mode_collapse,
    rule_within_class_collapse, rule_fid_rising, rule_d_at_chance, rule_lr_imbalance, rule_little_data,
]
