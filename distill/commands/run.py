"""`distill run RECIPE [section.key=value ...]`: run a recipe into its run folder."""

from __future__ import annotations

from .arguments import threads

HELP = "run a recipe (train a teacher, distil, translate) into its run folder"


def add_arguments(p):
    p.add_argument("recipe", help="path to a YAML recipe, e.g. recipes/digits.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=100")
    p.add_argument("--threads", type=threads, default=None,
                   help="CPU threads per process: auto or N (train.num_threads; default: the recipe's, auto)")


def main(args) -> int:
    from ..config import load_recipe
    from ..tasks import run_task

    from .arguments import check_input_path

    check_input_path(args.recipe, "RECIPE", "file")
    overrides = list(args.overrides) + ([f"train.num_threads={args.threads}"] if args.threads is not None else [])
    recipe = load_recipe(args.recipe, overrides)
    run_dir = run_task(recipe)
    print(f"run folder: {run_dir}")
    return 0
