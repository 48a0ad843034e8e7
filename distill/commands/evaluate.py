"""`distill eval PIPELINE --data SOURCE --steps 1 2 4 ...`: FID/KID, class accuracy and
within-class diversity at each step count, with the project's evaluation classifier."""

from __future__ import annotations

from .arguments import (check_input_path, check_output_path, check_pipeline_path, non_negative_float,
                        positive_int)

HELP = "evaluate a pipeline: FID/KID, class accuracy, within-class diversity vs steps"


def add_arguments(p):
    p.add_argument("pipeline", help="exported pipeline folder (or Hub id)")
    p.add_argument("--recipe", default=None, help="take data/eval settings from this recipe")
    p.add_argument("--data", default=None, help="reference data source (digits, .npz, folder, Hub name)")
    p.add_argument("--split", default=None, help="reference split (default: eval.reference_split)")
    p.add_argument("--steps", type=positive_int, nargs="+", default=None)
    p.add_argument("--scheduler", default=None, help="ddim | ddpm | dpm++ | euler | lcm (DDPM schedule); flow-euler | flow-heun | flow-dpm++ (flow); "
                   "pipeline (its own); auto (the schedule's default); default: eval.scheduler")
    p.add_argument("--guidance", type=non_negative_float, default=None)
    p.add_argument("--num-samples", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--features", default=None, help="classifier:<name|path> | inception")
    p.add_argument("--tag", default="model")
    p.add_argument("--out", default="eval")


def main(args) -> int:
    import dataclasses

    from ..config import DataConfig, EvalConfig, load_recipe
    from ..eval.evaluate import evaluate_pipeline
    from ..diffusion.teachers import load_teacher

    check_pipeline_path(args.pipeline)
    if args.recipe:
        check_input_path(args.recipe, "--recipe", "file")
    check_output_path(args.out, "--out", "dir")
    if args.recipe:
        recipe = load_recipe(args.recipe)
        data_cfg, eval_cfg = recipe.data, recipe.eval
    else:
        data_cfg, eval_cfg = DataConfig(), EvalConfig()
    pipe = load_teacher(args.pipeline)
    res = pipe.unet.config.sample_size
    data_cfg = dataclasses.replace(data_cfg, resolution=res, channels=pipe.unet.config.in_channels,
                                   **({"source": args.data} if args.data else {}))
    changes = {k: v for k, v in dict(num_samples=args.num_samples, batch_size=args.batch_size, features=args.features,
                                     reference_split=args.split).items() if v is not None}
    eval_cfg = dataclasses.replace(eval_cfg, **changes)
    rows = evaluate_pipeline(pipe, eval_cfg, data_cfg, args.out, tag=args.tag, scheduler=args.scheduler,
                             steps=args.steps, guidance_scale=args.guidance)
    for r in rows:
        print(f"steps={r['steps']:>3} fid={r['fid']:.4f} kid={r['kid']:.5f} class_acc={r.get('class_acc', float('nan')):.3f}")
    print(f"wrote {args.out}/eval-{args.tag}.json")
    return 0
