"""MNIST distillation benchmark: the recipe's student against the shipped teacher, plus ablations,
each trained for the same (shorter) budget and scored on 10k samples with the evaluation classifier.

  python benchmarks/distill_mnist.py --data ../shared/data/mnist/mnist_full.npz --steps 500 --only baseline timm_random
  python benchmarks/distill_mnist.py --collect     # merge the per-run JSON into results/distill_mnist.{json,md}
  python benchmarks/distill_mnist.py --wall-ratio  # distillation vs teacher training cost, timed alternately
  python benchmarks/distill_mnist.py --wall-ratio 20 --recipe recipes/mnist_1step.yaml

--wall-ratio times K steps of the shipped teacher's own recipe and K steps of --recipe (recipes/mnist.yaml),
alternated (T D T D) so both see the same machine load, and projects each to its full schedule
(teacher: train.max_steps of its recipe; student: of --recipe). The ratio of the
projections is the issue's "distillation wall time <= half the teacher's" check. The teacher's
recipe is also timed in bf16 (the shipped teacher trained in fp32), so a recipe distilling in bf16
can be compared with a teacher trained at its precision too (`ratio_vs_teacher_bf16`).

Writes benchmarks/results/distill_mnist/<name>.json per run and the merged table.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import load_recipe  # noqa: E402
from distill.eval.evaluate import evaluate_pipeline  # noqa: E402
from distill.diffusion.pipelines import DistillPipeline  # noqa: E402
from distill.distillation.loop import train_distill  # noqa: E402

# on top of BASE: the session-5 recipe (bf16, DMD, uniform timesteps, one set of heads, fake score lr 1e-4)
RECIPE = ["distill.lambda_dmd=1", "train.mixed_precision=bf16"]
RECIPE_W999 = [*RECIPE, "distill.student_timestep_weights=[0.7,0.1,0.1,0.1]"]  # 70% of each batch at 999
RECIPE_NOW = [*RECIPE_W999, "distill.disc_heads_per_timestep=true", "distill.fake_learning_rate=5e-4"]  # session 6
WSD = ["train.lr_scheduler=wsd", "train.lr_decay_fraction=0.25"]
FSBB = [*RECIPE_W999, "distill.backbone=fake_score"]  # 2.82 / 2.99 at 1 step (seeds 0, 1), 4 steps broken
ABLATIONS = {
    "baseline": ("ADD only: recipe without the DMD term (lambda 0.5)", []),
    "timm_random": ("timm:resnet18 backbone, random features", ["distill.backbone=timm:resnet18",
                                                                "distill.backbone_pretrained=none",
                                                                "distill.backbone_img_size=32"]),
    "adv_only": ("adversarial loss alone (lambda 0)", ["distill.lambda_distill=0"]),
    "distill_only": ("distillation loss alone (no adversarial)", ["distill.adv_weight=0"]),
    "lambda_2.5": ("lambda 2.5 (paper default)", ["distill.lambda_distill=2.5"]),
    "lambda_10": ("lambda 10", ["distill.lambda_distill=10"]),
    "r1_off": ("R1 off", ["distill.r1_gamma=0"]),
    "dmd": ("+ distribution matching (DMD2 fake score, lambda_dmd 1)", ["distill.lambda_dmd=1"]),
    "dmd_only_adv": ("adversarial + DMD, no ADD distillation term", ["distill.lambda_dmd=1", "distill.lambda_distill=0"]),
    "dmd_fake_lr5e-4": ("+ DMD, fake score learning rate 5e-4 (5x the student's)", ["distill.lambda_dmd=1",
                                                                                "distill.fake_learning_rate=5e-4"]),
    "dmd_adv999": ("+ DMD, adversarial game on 1-step outputs only (disc_timesteps [999])",
                   ["distill.lambda_dmd=1", "distill.disc_timesteps=[999]"]),
    "dmd_lr3e-4": ("+ DMD, student lr 3e-4, fake score lr 5e-4", ["distill.lambda_dmd=1", "train.learning_rate=3e-4",
                                                                  "distill.fake_learning_rate=5e-4"]),
    "dmd_lr1e-3": ("+ DMD, student and fake score lr 1e-3", ["distill.lambda_dmd=1", "train.learning_rate=1e-3",
                                                             "distill.fake_learning_rate=1e-3"]),
    "dmd_heads_per_step": ("+ DMD, one set of discriminator heads per student timestep",
                           ["distill.lambda_dmd=1", "distill.disc_heads_per_timestep=true"]),
    "dmd_adam_b0.9": ("+ DMD, Adam betas (0.9, 0.999) for student, heads and fake score (recipe: 0, 0.99)",
                      ["distill.lambda_dmd=1", "distill.adam_beta1=0.9", "distill.adam_beta2=0.999"]),
    # the session-5 recipe (bf16, DMD, 1200 steps) with changes; "bf16_w999_heads_flr" is recipes/mnist.yaml now
    "bf16_w999": ("recipe (bf16, DMD), 70% of each batch at the 1-step timestep 999",
                  RECIPE_W999),
    "bf16_w999_heads_flr": ("recipe, 70% at 999, heads per student timestep, fake score lr 5e-4",
                            [*RECIPE_W999,
                             "distill.disc_heads_per_timestep=true", "distill.fake_learning_rate=5e-4"]),
    "bf16_w999_fsbb": ("recipe, 70% at 999, heads on the fake score's encoder, trained by L_D at weight 1 (DMD2)",
                       [*RECIPE_W999, "distill.backbone=fake_score"]),
    "bf16_w999_heads_flr_fsbb": ("recipe, 70% at 999, heads per student timestep on the fake score's encoder "
                                 "(L_D weight 1), fake score lr 5e-4",
                                 [*RECIPE_W999,
                                  "distill.disc_heads_per_timestep=true", "distill.fake_learning_rate=5e-4",
                                  "distill.backbone=fake_score"]),
    "bf16_w999_heads_fsbb": ("recipe, 70% at 999, heads per student timestep on the fake score's encoder (L_D weight 1)",
                             [*RECIPE_W999,
                              "distill.disc_heads_per_timestep=true", "distill.backbone=fake_score"]),
    "bf16_w999_heads_fsbb0.1": ("recipe, 70% at 999, heads per student timestep on the fake score's encoder, "
                                "L_D weight 0.1 there",
                                [*RECIPE_W999,
                                 "distill.disc_heads_per_timestep=true", "distill.backbone=fake_score",
                                 "distill.fake_score_disc_weight=0.1"]),
    "bf16_w999_fsbb0.1": ("recipe, 70% at 999, heads on the fake score's encoder, L_D weight 0.1 there",
                          [*RECIPE_W999, "distill.backbone=fake_score",
                           "distill.fake_score_disc_weight=0.1"]),
    # session 7: recipes/mnist.yaml as of session 6 (RECIPE_NOW) with one change
    "recipe_seed1": ("recipe (session 6), training seed 1", [*RECIPE_NOW, "train.seed=1"]),
    "recipe_nodistill": ("recipe (session 6) without the ADD distillation term (lambda 0)",
                         [*RECIPE_NOW, "distill.lambda_distill=0"]),
    "recipe_wsd": ("recipe (session 6), student lr constant then linear to 0 over the last 25% (wsd)",
                   [*RECIPE_NOW, *WSD]),
    "recipe_wsd_seed1": ("recipe (session 6) with wsd, training seed 1", [*RECIPE_NOW, *WSD, "train.seed=1"]),
    "recipe_seed2": ("recipe (session 6), training seed 2", [*RECIPE_NOW, "train.seed=2"]),
    "bf16_w999_fsbb_seed1": ("recipe, 70% at 999, heads on the fake score's encoder (L_D weight 1), training seed 1",
                             [*RECIPE_W999, "distill.backbone=fake_score", "train.seed=1"]),
    # session 8: the fake-score backbone with one set of heads (FSBB), the best 1-step direction, with one change
    "fsbb_adv999": ("fake-score backbone, one set of heads judging 1-step outputs only (disc_timesteps [999]; "
                    "adv_weight and L_D weight 0.25 undo the |S|/|S_D| = 4 reweighting)",
                    [*FSBB, "distill.disc_timesteps=[999]", "distill.adv_weight=0.25",
                     "distill.fake_score_disc_weight=0.25"]),
    "fsbb_b32": ("fake-score backbone, one set of heads, batch 32 (run at twice the steps: same samples), EMA 0.995",
                 [*FSBB, "train.batch_size=32", "train.ema_decay=0.995"]),
    "fsbb_gan3": ("fake-score backbone, one set of heads, adversarial weight 3 (its student gradient ~3x the DMD "
                  "term's at step 1200)", [*FSBB, "distill.adv_weight=3"]),
    "fsbb_nodistill": ("fake-score backbone, one set of heads, no ADD distillation term (DMD2's objective: DMD + GAN)",
                       [*FSBB, "distill.lambda_distill=0"]),
    "fsbb_nodistill_seed1": ("fake-score backbone, one set of heads, no ADD distillation term, training seed 1",
                             [*FSBB, "distill.lambda_distill=0", "train.seed=1"]),
    "fsbb_nodistill_w1": ("fake-score backbone, one set of heads, no ADD distillation term, every sample at the 1-step "
                          "timestep 999 (weights [1, 0, 0, 0]: a 1-step student)",
                          [*FSBB, "distill.lambda_distill=0", "distill.student_timestep_weights=[1,0,0,0]"]),
    "fsbb_nodistill_w1_seed1": ("fake-score backbone, one set of heads, no ADD distillation term, every sample at 999, "
                                "training seed 1", [*FSBB, "distill.lambda_distill=0",
                                                    "distill.student_timestep_weights=[1,0,0,0]", "train.seed=1"]),
}
OUT = Path(__file__).resolve().parent / "results" / "distill_mnist"


# the ablations vary the ADD recipe of session 3 in fp32 (as all rows were measured): the keys the recipe has changed
# since are pinned back; "dmd*" add the DMD2 term back, "bf16*" the session-5 recipe (RECIPE)
BASE = ["distill.lambda_dmd=0", "train.mixed_precision=no", "distill.student_timestep_weights=[]",
        "distill.disc_heads_per_timestep=false", "distill.fake_learning_rate=1e-4"]


def _recipe(name, data, steps):
    desc, over = ABLATIONS[name]
    over = BASE + over
    out_dir = Path("runs") / f"bench-mnist-{name}-{steps}"
    recipe = load_recipe("recipes/mnist.yaml", [f"data.source={data}", f"output_dir={out_dir}", f"train.max_steps={steps}",
                                                "train.checkpoint_every=100000", "distill.coverage_every=100000", *over])
    return desc, over, out_dir, recipe


def score(recipe, out_dir: Path, student_steps) -> list[dict]:
    """The student's FID table against the real test images (evaluate_pipeline loads them at the
    pipeline's 28 px), as `distill run`'s report scores it."""
    pipe = DistillPipeline.from_pretrained(str(out_dir / "pipeline"))
    return evaluate_pipeline(pipe, recipe.eval, recipe.data, out_dir / "eval", tag="student", scheduler="pipeline",
                             steps=student_steps, guidance_scale=1.0)


def run_one(name, data, steps, student_steps):
    desc, over, out_dir, recipe = _recipe(name, data, steps)
    t0 = time.time()
    train_distill(recipe)
    wall = time.time() - t0
    rows = score(recipe, out_dir, student_steps)
    res = {"name": name, "description": desc, "overrides": over, "train_steps": steps, "train_wall_s": round(wall, 1),
           "threads": torch.get_num_threads(), "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}-{steps}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({"name": name, "fid": [(r["steps"], round(r["fid"], 3)) for r in rows], "wall_s": round(wall)}))


def rescore(name, data, steps, student_steps):
    """Re-evaluate a trained ablation's exported student (no retraining) and rewrite its rows."""
    _, _, out_dir, recipe = _recipe(name, data, steps)
    path = OUT / f"{name}-{steps}.json"
    res = json.loads(path.read_text())
    res["rows"] = score(recipe, out_dir, student_steps)
    res["rescored"] = "against 28 px test images (earlier scores used the 16 px DataConfig default)"
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps({"name": name, "fid": [(r["steps"], round(r["fid"], 3)) for r in res["rows"]]}))


def _seconds_per_step(run_dir: Path, skip: int) -> float:
    """Median seconds per step from metrics.jsonl time stamps, dropping the first `skip` rows (warm-up)."""
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "time" in r and r["step"] > 0]
    first = {}
    for r in rows:  # the first row of a step: a coverage check logged after it would count its sampling time
        first.setdefault(r["step"], r)
    rows = list(first.values())[skip:]
    per = [(b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in zip(rows, rows[1:])]
    return sorted(per)[len(per) // 2]


def wall_ratio(data: str, k: int, rounds: int = 2, overrides=(), distill_recipe: str = "recipes/mnist.yaml",
               out_name: str = ""):
    import shutil
    import tempfile

    from accelerate.state import AcceleratorState

    from distill.diffusion.train import train_teacher

    teacher_recipe = "distill/assets/teachers/mnist/recipe.yaml"
    full_t = load_recipe(teacher_recipe).train.max_steps
    full_d = load_recipe(distill_recipe, list(overrides)).train.max_steps
    per = {"teacher": [], "distill": [], "teacher_bf16": []}
    tmp = Path(tempfile.mkdtemp(prefix="wall-ratio-"))
    common = [f"data.source={data}", f"train.max_steps={k}", "train.log_every=5", "train.checkpoint_every=100000"]
    for r in range(rounds):
        for name, path, train, extra in (
                ("teacher", teacher_recipe, train_teacher, ["train.resume_from_checkpoint=null", "train.sample_every=100000"]),
                ("distill", distill_recipe, train_distill, [*overrides, "distill.coverage_every=100000"]),
                # the teacher's recipe in bf16 too: what a teacher trained at the distillation's precision would cost
                ("teacher_bf16", teacher_recipe, train_teacher, ["train.resume_from_checkpoint=null",
                                                                  "train.sample_every=100000", "train.mixed_precision=bf16"])):
            out = tmp / f"{name}-{r}"
            recipe = load_recipe(path, [*extra, *common, f"output_dir={out}"])  # K steps win over an override
            AcceleratorState._reset_state(True)  # accelerate keeps one process-wide mixed-precision state
            train(recipe)
            per[name].append(_seconds_per_step(out, skip=1))
            print(f"round {r} {name}: {per[name][-1]:.3f} s/step", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    s_t, s_d, s_tb = (sorted(v)[len(v) // 2] for v in per.values())
    res = {"k_steps": k, "rounds": rounds, "threads": torch.get_num_threads(), "teacher_s_per_step": per["teacher"],
           "distill_s_per_step": per["distill"], "teacher_full_steps": full_t, "distill_full_steps": full_d,
           "teacher_projected_min": s_t * full_t / 60, "distill_projected_min": s_d * full_d / 60,
           "ratio": (s_d * full_d) / (s_t * full_t), "distill_recipe": distill_recipe, "distill_overrides": list(overrides),
           "distill_mixed_precision": load_recipe(distill_recipe, list(overrides)).train.mixed_precision,
           "teacher_bf16_s_per_step": per["teacher_bf16"], "ratio_vs_teacher_bf16": (s_d * full_d) / (s_tb * full_t)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # recipes/mnist.yaml -> distill_mnist_wall_ratio.json, recipes/mnist_1step.yaml -> distill_mnist_1step_wall_ratio.json
    (OUT.parent / (out_name or f"distill_{Path(distill_recipe).stem}_wall_ratio.json")).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def collect(teacher_eval: Path):
    runs = [json.loads(p.read_text()) for p in sorted(OUT.glob("*.json"))]
    teacher = json.loads(teacher_eval.read_text())
    t = {r["steps"]: r for r in teacher}
    best = min(teacher, key=lambda r: r["fid"])
    lines = ["| run | train steps | wall (min) | 1-step FID | 4-step FID | 1-step KID | class acc | within-class dist |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        by = {x["steps"]: x for x in r["rows"]}
        f4 = f"{by[4]['fid']:.3f}" if 4 in by else "-"
        lines.append(f"| {r['description']} | {r['train_steps']} | {r['train_wall_s'] / 60:.1f} | {by[1]['fid']:.3f} | {f4} | "
                     f"{by[1]['kid']:.3f} | {by[1]['class_acc']:.3f} | {by[1]['intra_class_dist']:.2f} |")
    real_div = runs[0]["rows"][0]["real_intra_class_dist"] if runs else float("nan")
    head = [f"Teacher (DDIM, guidance 1): 1 step FID {t[1]['fid']:.3f}, 50 steps FID {t[50]['fid']:.3f}, best "
            f"{best['steps']} steps FID {best['fid']:.3f}. Real test-set within-class distance {real_div:.2f}.", ""]
    md = "\n".join(head + lines) + "\n"
    (OUT.parent / "distill_mnist.md").write_text(md)
    (OUT.parent / "distill_mnist.json").write_text(json.dumps({"teacher": teacher, "runs": runs}, indent=1))
    print(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mnist/mnist_full.npz")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--only", nargs="*", default=list(ABLATIONS))
    ap.add_argument("--student-steps", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--collect", action="store_true")
    ap.add_argument("--rescore", action="store_true", help="re-evaluate the trained ablations in runs/ (no training)")
    ap.add_argument("--wall-ratio", type=int, metavar="K", nargs="?", const=40,
                    help="time K steps of teacher training and of distillation, alternated")
    ap.add_argument("--recipe", default="recipes/mnist.yaml", help="--wall-ratio: the distillation recipe timed")
    ap.add_argument("--recipe-override", nargs="*", default=[], metavar="KEY=VALUE",
                    help="--wall-ratio: overrides of --recipe (e.g. train.max_steps=1000)")
    ap.add_argument("--out", default="", help="--wall-ratio: result file name (default distill_<recipe>_wall_ratio.json)")
    ap.add_argument("--teacher-eval", default="distill/assets/teachers/mnist/eval/eval-teacher.json")
    a = ap.parse_args()
    if a.collect:
        return collect(Path(a.teacher_eval))
    if a.wall_ratio:
        return wall_ratio(a.data, a.wall_ratio, overrides=a.recipe_override, distill_recipe=a.recipe, out_name=a.out)
    for name in a.only:
        (rescore if a.rescore else run_one)(name, a.data, a.steps, a.student_steps)


if __name__ == "__main__":
    main()
