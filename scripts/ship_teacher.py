"""Copy a trained teacher run into distill/assets/teachers/<name>/ with its FID-versus-steps table,
plot and a model card (recipe, commit, wall time, parameter count, FID at each sampler step count).

  python scripts/ship_teacher.py runs/teacher-mnist --name mnist --data ../shared/data/mnist/mnist_full.npz
"""

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill.config import dump_recipe, load_recipe  # noqa: E402
from distill.eval.classifier import ASSETS  # noqa: E402
from distill.eval.evaluate import best_row, evaluate_pipeline, setting_name  # noqa: E402
from distill.engine.hardware import cpu_model  # noqa: E402
from distill.engine.run_dir import read_metrics, wall_seconds  # noqa: E402
from distill.diffusion.teachers import load_teacher  # noqa: E402


def objective(t) -> str:
    """The training objective in a few words: rectified flow or the DDPM prediction and beta schedule."""
    if t.prediction_type == "flow":
        return (f"rectified flow (velocity), {t.timestep_sampling} sigmas"
                f"{f' (mean {t.logit_mean}, std {t.logit_std})' if t.timestep_sampling == 'logit_normal' else ''}, "
                f"shift {t.flow_shift}")
    target = {"epsilon": "epsilon prediction", "v_prediction": "v-prediction", "sample": "x0 prediction"}
    return f"{target.get(t.prediction_type, t.prediction_type)}, {t.beta_schedule} schedule"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", default=None, help="override data.source for the FID reference")
    ap.add_argument("--num-samples", type=int, default=None)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--paused-min", type=float, default=0.0,
                    help="minutes the run was paused (SIGSTOP) for other jobs: subtracted from its wall time")
    ap.add_argument("--note", action="append", default=[], help="a line added to the card's facts (repeatable)")
    ap.add_argument("--dest", default=None, help="the folder to ship into (default: distill/assets/teachers/<name>)")
    a = ap.parse_args()
    run = Path(a.run_dir)
    recipe = load_recipe(run / "recipe.yaml")
    dest = Path(a.dest) if a.dest else ASSETS / "teachers" / a.name
    metrics = read_metrics(run / "metrics.jsonl")
    wall_min = wall_seconds(metrics) / 60
    if not 0 <= a.paused_min < wall_min:
        ap.error(f"--paused-min {a.paused_min}: must be in [0, {wall_min:.1f}) (the run's wall time in minutes)")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run / "pipeline", dest)
    # the recipe as trained, its output folder relative (the folder of this machine means nothing to a user)
    dump_recipe(dataclasses.replace(recipe, output_dir=f"runs/{recipe.name}"), dest / "recipe.yaml")
    pipe = load_teacher(str(dest))
    data_cfg = dataclasses.replace(recipe.data, **({"source": a.data} if a.data else {}))
    eval_cfg = dataclasses.replace(recipe.eval, **({"num_samples": a.num_samples} if a.num_samples else {}))
    if (run / "eval" / "eval-teacher.json").is_file() and not a.num_samples:  # measured at the end of training
        shutil.copytree(run / "eval", dest / "eval")
        rows = json.loads((dest / "eval" / "eval-teacher.json").read_text())
        eval_cfg = dataclasses.replace(eval_cfg, num_samples=rows[0]["num_samples"])
    else:
        rows = [] if a.skip_eval else evaluate_pipeline(pipe, eval_cfg, data_cfg, dest / "eval", tag="teacher",
                                                        sweep_guidance=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    n_params = sum(p.numel() for p in pipe.unet.parameters())
    last = [r for r in metrics if "loss" in r][-1]
    card = [f"# distill teacher: {a.name}", "",
            f"Class-conditional pixel-space diffusion model (diffusers `UNet2DModel`, {n_params / 1e6:.2f} M parameters, "
            f"{pipe.unet.config.sample_size}x{pipe.unet.config.sample_size}, {objective(recipe.teacher)}, "
            f"classifier-free guidance label dropout {recipe.teacher.cond_drop_prob}), "
            "EMA weights.", "",
            f"- recipe: `recipe.yaml` (task teacher; data `{recipe.data.source}`{' trained from ' + a.data if a.data and a.data != recipe.data.source else ''})",
            f"- shipped at commit `{commit}`",
            f"- training: {last['step']} steps of batch {recipe.train.batch_size}, final loss {last['loss']:.4f}, "
            f"wall time {wall_min - a.paused_min:.1f} min ({cpu_model()}, {os.cpu_count()} CPU cores)"
            + (f", {a.paused_min:.1f} min of pauses for other jobs subtracted" if a.paused_min else ""),
            *[f"- {n}" for n in a.note],
            "- load: `DistillPipeline.from_pretrained(path)` or `DiffusionPipeline.from_pretrained(path)` after `import distill`", ""]
    if rows:
        card += [f"## FID versus {rows[0]['scheduler']} steps ({eval_cfg.num_samples} samples, features `{eval_cfg.features}`, "
                 f"reference split `{eval_cfg.reference_split}`, guidance {eval_cfg.guidance_scale})", "",
                 (dest / "eval" / "eval-teacher.md").read_text(), "![FID vs steps](eval/fid-vs-steps-teacher.png)", ""]
        best = best_row(rows)  # the steps sweep and eval.guidance_sweep's rows
        card += [f"Best: {setting_name(best)}, FID {best['fid']:.3f}.", ""]
    (dest / "README.md").write_text("\n".join(card))
    print(json.dumps({"dest": str(dest), "params": n_params, "rows": [(r["steps"], r["fid"]) for r in rows]}))


if __name__ == "__main__":
    main()
