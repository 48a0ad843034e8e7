"""Translation benchmark: short fixed-budget runs of the two recipes and a step-time comparison
with a plain-PyTorch re-implementation of the reference code's `optimize_parameters`.

  OMP_NUM_THREADS=1 python benchmarks/translate.py --budget-s 600

For each recipe: (1) time `--time-steps` training steps of ours (accelerate, method.step on a
fixed batch, and the full step_once with data augmentation) against the reference-design step
(same networks and batch, plain loop: GANLoss with BCEWithLogits / MSE, set_requires_grad,
ImagePool with `random`); (2) train for max_steps = ours it/s x budget (the LR schedule is
sized to that) and evaluate the test split. Writes benchmarks/results/translate.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.tasks import run_task  # noqa: E402
from distill.translate.train import standalone  # noqa: E402

RECIPES = {"pix2pix": ROOT / "recipes" / "pix2pix-facades.yaml", "cyclegan": ROOT / "recipes" / "cyclegan-horse2zebra.yaml"}


# ---------------------------------------------------------------------------------------------
# Reference design (junyanz/pytorch-CycleGAN-and-pix2pix models/*_model.py), plain PyTorch


def _req(nets, flag):
    for n in nets:
        for p in n.parameters():
            p.requires_grad = flag


def _gan(crit, pred, real: bool):
    return crit(pred, torch.full_like(pred, 1.0 if real else 0.0))  # GANLoss: target expanded to pred


class RefPool:
    def __init__(self, size):
        self.size, self.images = size, []

    def query(self, images):
        out = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                k = random.randint(0, self.size - 1)
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def ref_pix2pix(nets, cfg, tc):
    G, D = nets["G"], nets["D"]
    oG = torch.optim.Adam(G.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, 0.999))
    oD = torch.optim.Adam(D.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, 0.999))
    crit, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()

    def step(real_A, real_B):
        fake_B = G(real_A)
        _req([D], True)
        oD.zero_grad()
        loss_D = (_gan(crit, D(torch.cat((real_A, fake_B), 1).detach()), False)
                  + _gan(crit, D(torch.cat((real_A, real_B), 1)), True)) * 0.5
        loss_D.backward()
        oD.step()
        _req([D], False)
        oG.zero_grad()
        loss_G = _gan(crit, D(torch.cat((real_A, fake_B), 1)), True) + l1(fake_B, real_B) * cfg.lambda_L1
        loss_G.backward()
        oG.step()
    return step


def ref_cyclegan(nets, cfg, tc):
    import itertools

    G_A, G_B, D_A, D_B = nets["G_A"], nets["G_B"], nets["D_A"], nets["D_B"]
    oG = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=tc.learning_rate, betas=(tc.adam_beta1, 0.999))
    oD = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=tc.learning_rate, betas=(tc.adam_beta1, 0.999))
    crit, l1 = nn.MSELoss(), nn.L1Loss()
    pool_A, pool_B = RefPool(cfg.pool_size), RefPool(cfg.pool_size)

    def step(real_A, real_B):
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)
        _req([D_A, D_B], False)
        oG.zero_grad()
        li = cfg.lambda_identity
        loss_idt = l1(G_A(real_B), real_B) * cfg.lambda_B * li + l1(G_B(real_A), real_A) * cfg.lambda_A * li
        loss_G = (_gan(crit, D_A(fake_B), True) + _gan(crit, D_B(fake_A), True)
                  + l1(rec_A, real_A) * cfg.lambda_A + l1(rec_B, real_B) * cfg.lambda_B + loss_idt)
        loss_G.backward()
        oG.step()
        _req([D_A, D_B], True)
        oD.zero_grad()
        for D, real, fake in ((D_A, real_B, pool_B.query(fake_B)), (D_B, real_A, pool_A.query(fake_A))):
            loss_D = (_gan(crit, D(real), True) + _gan(crit, D(fake.detach()), False)) * 0.5
            loss_D.backward()
        oD.step()
    return step


REFERENCE = {"pix2pix": ref_pix2pix, "cyclegan": ref_cyclegan}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_speed(method: str, recipe, n: int, warmup: int = 5) -> dict:
    """Step times of ours, ours + data loading, and the reference-design step, taken in turn
    (ours, data, ref, ours, data, ref, ...) so load from other processes hits all three alike;
    it/s = 1 / median step time, and the ratio is the median of per-turn ratios (a ratio of
    independent medians drifted by +-20% between rounds on the shared CPU)."""
    import statistics

    s = standalone(recipe, method)
    ref_nets = {k: copy.deepcopy(s.raw(k)).train() for k in s.nets}
    real_A, real_B = s.batch(0)
    gen = torch.Generator().manual_seed(0)
    ref = REFERENCE[method](ref_nets, recipe.translate, recipe.train)
    k = iter(range(10 ** 9))
    # "ours" is a non-logging step (norms off), as the trainer takes 99 of every 100 with log_every 100
    fns = {"ours": lambda: s.method.step(s.nets, s.popts, real_A, real_B, s.accelerator.backward, gen, norms=False),
           "ours_data": lambda: s.step_once(next(k)), "ref": lambda: ref(real_A, real_B)}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    per = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            per[name].append(_seconds(fn))
    ratios = [r / o for o, r in zip(per["ours"], per["ref"])]  # ours it/s over reference it/s, per turn
    med = {name: statistics.median(v) for name, v in per.items()}
    q = statistics.quantiles(ratios, n=4)
    return {"ours_it_per_s": 1 / med["ours"], "ours_with_data_it_per_s": 1 / med["ours_data"],
            "reference_it_per_s": 1 / med["ref"], "ratio_ours_over_reference": statistics.median(ratios),
            "ratio_iqr": [q[0], q[2]], "timed_steps": n, "batch_size": recipe.train.batch_size,
            "threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget-s", type=float, default=600.0, help="training seconds per recipe")
    ap.add_argument("--time-steps", type=int, default=200, help="steps of each kind timed in turn")
    ap.add_argument("--methods", nargs="*", default=list(RECIPES))
    ap.add_argument("--steps", type=int, default=None, help="fixed max_steps instead of it/s x budget")
    ap.add_argument("--speed-only", action="store_true", help="only re-measure the step-time comparison")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "translate"))
    ap.add_argument("--runs-dir", default="runs/bench-translate")  # relative to the repo root (run from there)
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    results = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").is_file() else {}
    results["threads"] = torch.get_num_threads()
    results["torch"] = torch.__version__
    for method in a.methods:
        run_dir = Path(a.runs_dir) / method
        recipe = load_recipe(RECIPES[method], [f"output_dir={run_dir}-speed"])
        speed = step_speed(method, recipe, a.time_steps)
        print(json.dumps({method: speed}))
        if a.speed_only:
            results.setdefault(method, {})["speed"] = speed
            out.with_suffix(".json").write_text(json.dumps(results, indent=2))
            continue
        steps = a.steps or max(10, int(speed["ours_with_data_it_per_s"] * a.budget_s))
        overrides = [f"output_dir={run_dir}", f"train.max_steps={steps}", f"train.checkpoint_every={steps}",
                     f"train.sample_every={max(1, steps // 4)}", f"train.log_every={max(1, steps // 100)}"]
        recipe = load_recipe(RECIPES[method], overrides)
        t0 = time.time()
        run_task(recipe)
        wall = time.time() - t0
        ev = json.loads((run_dir / "eval.json").read_text())
        results[method] = {"recipe": str(RECIPES[method].relative_to(ROOT)), "overrides": overrides,
                           "command": f"distill run {RECIPES[method].relative_to(ROOT)} " + " ".join(overrides),
                           "max_steps": steps, "wall_s_train_and_eval": wall, "speed": speed, "eval": ev}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    write_md(results, out.with_suffix(".md"))


def write_md(r: dict, path: Path) -> None:
    L = ["# Translation benchmark (CPU, 1 thread)", "",
         "Produced by `OMP_NUM_THREADS=1 python benchmarks/translate.py`; short fixed budgets, far below the "
         "papers' 200 epochs: read these as smoke-level numbers, not converged results.", ""]
    if "pix2pix" in r:
        p = r["pix2pix"]
        e, s = p["eval"], p["speed"]
        L += ["## pix2pix, facades labels -> photo (BtoA), 128 px, test split", "",
              f"command: `{p['command']}`", "",
              "| steps | it/s (train) | L1 | PSNR (dB) | SSIM | L1 (paper test mode) | PSNR | SSIM |", "|---|---|---|---|---|---|---|---|",
              f"| {p['max_steps']} | {e.get('train_it_per_s', s['ours_with_data_it_per_s']):.2f} | {e['eval_mode']['l1']:.4f} | {e['eval_mode']['psnr']:.2f} | "
              f"{e['eval_mode']['ssim']:.4f} | {e['paper_test_mode']['l1']:.4f} | {e['paper_test_mode']['psnr']:.2f} | "
              f"{e['paper_test_mode']['ssim']:.4f} |", ""]
    if "cyclegan" in r:
        c = r["cyclegan"]
        e = c["eval"]
        L += ["## CycleGAN, horse2zebra 64 px, test split", "", f"command: `{c['command']}`", "",
              f"domain classifier test accuracy: {e.get('classifier', {}).get('test_accuracy', float('nan')):.3f}", "",
              "| direction | domain success (before -> after) | KID (before -> after) | FID (before -> after) | cycle L1 |",
              "|---|---|---|---|---|"]
        for d in ("AtoB", "BtoA"):
            m = e[d]
            L.append(f"| {d} | {m['domain_success_before']:.3f} -> {m['domain_success']:.3f} | {m['kid_before']:.4f} -> "
                     f"{m['kid']:.4f} | {m['fid_before']:.2f} -> {m['fid']:.2f} | {m['cycle_l1']:.4f} |")
        L += ["", f"steps: {c['max_steps']}, it/s (train): {e.get('train_it_per_s', c['speed']['ours_with_data_it_per_s']):.2f}", ""]
    L += ["## Step time: ours (accelerate) vs reference-design step (plain PyTorch)", "",
          "Same networks, same batch, one thread; the three steps are timed in turn (ours, ours + data, "
          "reference, ours, ...), it/s = 1 / median step time, ratio = median of the per-turn ratios with its "
          "interquartile range.", "",
          "| method | batch | steps each | ours it/s | ours + data it/s | reference it/s | ours / reference (median) | IQR |",
          "|---|---|---|---|---|---|---|---|"]
    for m in ("pix2pix", "cyclegan"):
        if m in r:
            s = r[m]["speed"]
            iqr = s.get("ratio_iqr")
            L.append(f"| {m} | {s['batch_size']} | {s.get('timed_steps', '')} | {s['ours_it_per_s']:.2f} | "
                     f"{s['ours_with_data_it_per_s']:.2f} | {s['reference_it_per_s']:.2f} | "
                     f"{s['ratio_ours_over_reference']:.3f} | {f'{iqr[0]:.2f}-{iqr[1]:.2f}' if iqr else ''} |")
    path.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
