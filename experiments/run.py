"""Run the experiments of experiments/<group>/ablations.yaml: each entry is the group's recipe plus `overrides`.

  python experiments/run.py mnist/<name> [--data ../shared/data/mnist/mnist_full.npz] [--steps N] [--student-steps 1 2 4]
  python experiments/run.py cifar10/<name> --set eval.num_samples=2000 train.checkpoint_every=100
  python experiments/run.py --list mnist       # the entries and what each changes
  python experiments/run.py --collect mnist    # merge results/<group>/*.json into results/<group>.{json,md}

A run trains into runs/exp-<group>-<name>-<steps> (checkpoints and sample grids sparse unless --set asks
otherwise; `--set train.resume_from_checkpoint=latest` resumes one, its wall time then counting this process
only), scores the exported student's FID table as `distill run`'s report does, and writes
experiments/results/<group>/<name>.json with the teacher it was measured against (its weights' fingerprint
and best FID); --collect tables results against other teacher weights apart.
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

HERE = ROOT / "experiments"
# each group: the recipe its entries start from, and the teacher's FID table quoted above the merged results
GROUPS = {"mnist": {"recipe": "recipes/mnist.yaml", "teacher_eval": "distill/assets/teachers/mnist/eval/eval-teacher.json",
                    "data": "../shared/data/mnist/mnist_full.npz"},
          "cifar10": {"recipe": "recipes/cifar10.yaml",
                      "teacher_eval": "distill/assets/teachers/cifar10/eval/eval-teacher.json",
                      "data": "../shared/data/cifar10/cifar10.npz"}}


def entries(group: str) -> dict:
    return yaml.safe_load((HERE / group / "ablations.yaml").read_text())


def load_entry(group: str, name: str, extra=()):
    """The recipe of entry `name` (its overrides, then `extra`)."""
    from distill.config import load_recipe

    return load_recipe(ROOT / GROUPS[group]["recipe"], [*entries(group)[name]["overrides"], *extra])


def teacher_identity(spec: str, weights: str | None = None) -> dict:
    """The teacher a result was measured against: its recipe spec, a fingerprint of its network's weights (`weights`
    where the caller has it, else the teacher is loaded and hashed) and its best FID (from the teacher folder's
    eval/eval-teacher.json where it has one), so results against different teacher weights are never tabled
    together."""
    from distill.diffusion.teachers import load_teacher, resolve_teacher_path
    from distill.engine.checkpoint import weights_fingerprint
    from distill.eval.evaluate import best_row

    path = Path(resolve_teacher_path(spec))
    out = {"source": spec, "weights": weights or weights_fingerprint(load_teacher(str(path)).unet)}
    if (path / "eval" / "eval-teacher.json").is_file():
        best = best_row(json.loads((path / "eval" / "eval-teacher.json").read_text()))  # guided rows count too
        out.update(best_fid=best["fid"], best_steps=best["steps"], best_guidance=best.get("guidance_scale", 1.0))
    return out


def store(group: str, name: str, res: dict) -> Path:
    """results/<group>/<name>.json; a result there against other teacher weights is kept as <name>@<weights>.json."""
    out = HERE / "results" / group / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file() and (kept := json.loads(out.read_text())["teacher"]["weights"]) != res["teacher"]["weights"]:
        out.rename(out.with_name(f"{name}@{kept}.json"))
    out.write_text(json.dumps(res, indent=1))
    return out


def run(group: str, name: str, data: str, steps, student_steps, extra=()) -> None:
    import torch

    from distill.diffusion.pipelines import DistillPipeline
    from distill.distillation.loop import train_distill
    from distill.engine.checkpoint import checkpoint_dirs
    from distill.eval.evaluate import evaluate_pipeline

    entry = entries(group)[name]
    steps = steps or load_entry(group, name).train.max_steps
    out_dir = Path("runs") / f"exp-{group}-{name}-{steps}"
    recipe = load_entry(group, name, [f"data.source={data}", f"output_dir={out_dir}", f"train.max_steps={steps}",
                                      "train.checkpoint_every=100000", "train.sample_every=100000", *extra])
    t0 = time.time()
    train_distill(recipe)
    wall = time.time() - t0
    # the last step always checkpoints, and its state.json names the teacher weights the student was trained against
    trained_against = json.loads((checkpoint_dirs(out_dir)[-1] / "state.json").read_text())["teacher_weights"]
    pipe = DistillPipeline.from_pretrained(str(out_dir))
    rows = evaluate_pipeline(pipe, recipe.eval, recipe.data, out_dir / "eval", tag="student", scheduler="pipeline",
                             steps=student_steps, guidance_scale=1.0)
    res = {"name": name, "description": entry["about"], "overrides": entry["overrides"],
           "teacher": teacher_identity(recipe.distill.teacher, trained_against), "train_steps": steps,
           "train_wall_s": round(wall, 1), "threads": torch.get_num_threads(), "rows": rows}
    store(group, name, res)
    print(json.dumps({"name": name, "fid": [(r["steps"], round(r["fid"], 3)) for r in rows], "wall_s": round(wall)}))


def run_table(runs: list) -> list[str]:
    lines = ["| run | train steps | wall (min) | 1-step FID | 4-step FID | 1-step KID | class acc | within-class dist |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        by = {x["steps"]: x for x in r["rows"]}
        f4 = f"{by[4]['fid']:.3f}" if 4 in by else "-"
        lines.append(f"| {r['description']} | {r['train_steps']} | {r['train_wall_s'] / 60:.1f} | {by[1]['fid']:.3f} | "
                     f"{f4} | {by[1]['kid']:.3f} | {by[1]['class_acc']:.3f} | {by[1]['intra_class_dist']:.2f} |")
    return lines


def collect(group: str) -> None:
    """results/<group>.{md,json}: the runs against the group's current teacher (its weights' fingerprint), then,
    in tables of their own, runs measured against other teacher weights."""
    res_dir = HERE / "results"
    runs = [json.loads(p.read_text()) for p in sorted((res_dir / group).glob("*.json"))]
    teacher = json.loads((ROOT / GROUPS[group]["teacher_eval"]).read_text())
    first = load_entry(group, runs[0]["name"]) if runs else None
    current = teacher_identity(first.distill.teacher)["weights"] if runs else None
    from distill.eval.evaluate import best_row, setting_name

    t = {r["steps"]: r for r in teacher if r.get("guidance_scale", 1.0) == 1.0}
    best = best_row(teacher)  # guided rows count
    real_div = runs[0]["rows"][0]["real_intra_class_dist"] if runs else float("nan")
    split = first.eval.reference_split if runs else "-"
    lines = [f"Teacher (DDIM): 1 step FID {t[1]['fid']:.3f}, 50 steps FID {t[50]['fid']:.3f} (guidance 1); "
             f"best {setting_name(best)}, FID {best['fid']:.3f}. Real within-class distance "
             f"({split} split) {real_div:.2f}.", "", *run_table([r for r in runs if r["teacher"]["weights"] == current])]
    others = {}
    for r in runs:
        if r["teacher"]["weights"] != current:
            others.setdefault(r["teacher"]["weights"], []).append(r)
    for rs in others.values():
        tid = rs[0]["teacher"]
        lines += ["", f"Against other teacher weights ({tid['source']} with best FID {tid.get('best_fid', float('nan')):.3f} "
                      f"at {tid.get('best_steps', '-')} steps, guidance {tid.get('best_guidance', 1.0):g}):", "", *run_table(rs)]
    md = "\n".join(lines) + "\n"
    (res_dir / f"{group}.md").write_text(md)
    (res_dir / f"{group}.json").write_text(json.dumps({"teacher": teacher, "runs": runs}, indent=1))
    print(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", nargs="?", help="<group>/<name>, e.g. mnist/fsbb_nodistill_w1")
    ap.add_argument("--list", metavar="GROUP", choices=list(GROUPS), help="print the entries of GROUP")
    ap.add_argument("--collect", metavar="GROUP", choices=list(GROUPS), help="merge GROUP's results")
    ap.add_argument("--data", default=None, help="data.source (default: the group's data under ../shared/data)")
    ap.add_argument("--steps", type=int, default=None, help="train.max_steps (default: the entry's)")
    ap.add_argument("--student-steps", type=int, nargs="+", default=[1, 2, 4], help="step counts scored")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides applied last")
    a = ap.parse_args()
    if a.list:
        for name, e in entries(a.list).items():
            print(f"{a.list}/{name}: {e['about']}")
    elif a.collect:
        collect(a.collect)
    elif a.experiment:
        group, _, name = a.experiment.partition("/")
        if group not in GROUPS or name not in entries(group):
            ap.error(f"unknown experiment {a.experiment!r} (see --list {group if group in GROUPS else 'mnist'})")
        run(group, name, a.data or GROUPS[group]["data"], a.steps, a.student_steps, a.set)
    else:
        ap.error("give an experiment, --list GROUP or --collect GROUP")


if __name__ == "__main__":
    main()
