"""Copy a trained teacher run into distill/assets/teachers/<name>/ with its FID-versus-steps table,
plot and a model card (distill.cards.teacher_card: Hub metadata with the FID of each setting, then recipe,
commit, wall time, parameter count).

  python scripts/ship_teacher.py runs/teacher-mnist --name mnist --data ../shared/data/mnist/mnist_full.npz
"""

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill.config import dump_recipe, load_recipe  # noqa: E402
from distill.eval.classifier import ASSETS  # noqa: E402
from distill.cards import hardware, teacher_card  # noqa: E402
from distill.eval.evaluate import evaluate_pipeline  # noqa: E402
from distill.engine.run_dir import read_metrics, wall_seconds  # noqa: E402
from distill.diffusion.pipelines import exported_pipeline  # noqa: E402
from distill.diffusion.teachers import load_teacher  # noqa: E402


def copy_pipeline(src: Path, dest: Path) -> None:
    """The pipeline of `src` (model_index.json and the component folders it names) into `dest`, without the rest of
    its run folder (checkpoints, samples, metrics)."""
    index = json.loads((src / "model_index.json").read_text())
    dest.mkdir(parents=True)
    shutil.copy2(src / "model_index.json", dest / "model_index.json")
    for name, value in index.items():
        if not name.startswith("_") and isinstance(value, list) and value[0] and (src / name).is_dir():
            shutil.copytree(src / name, dest / name)


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
    copy_pipeline(exported_pipeline(run), dest)  # the run folder itself, or its pipeline/ (earlier layout)
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
    pauses = [f"{a.paused_min:.1f} min of pauses for other jobs subtracted from the wall time"] if a.paused_min else []
    notes = [*([f"trained from {a.data}"] if a.data and a.data != recipe.data.source else []), *pauses, *a.note]
    plot = "eval/fid-vs-steps-teacher.png" if (dest / "eval" / "fid-vs-steps-teacher.png").is_file() else None
    card = teacher_card(recipe, pipe.unet, rows, (wall_min - a.paused_min) * 60, last["step"], last["loss"],
                        hardware(), notes=tuple(notes), commit=commit, name=a.name,
                        plot=plot)
    card.save(dest / "README.md")  # huggingface_hub's ModelCard: Hub metadata (model-index, distill facts), then prose
    print(json.dumps({"dest": str(dest), "params": n_params, "rows": [(r["steps"], r["fid"]) for r in rows]}))


if __name__ == "__main__":
    main()
