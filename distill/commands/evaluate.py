"""`distill eval PIPELINE --data SOURCE --steps 1 2 4 ...`: FID/KID, class accuracy and
within-class diversity at each step count, with the project's evaluation classifier.
`distill eval GAN_FOLDER --data SOURCE --truncation 1 0.7`: the same at each truncation psi of an
exported `task: gan` generator (eval-gan.json)."""

from __future__ import annotations

from pathlib import Path

from .arguments import (threads, check_input_path, check_output_path, check_pipeline_path, non_negative_float,
                        non_negative_int, positive_int)

HELP = "evaluate a pipeline (vs steps) or a GAN generator (vs truncation): FID/KID, class accuracy, diversity"
DIFFUSION_ONLY = ("steps", "scheduler", "guidance", "guidance_sweep", "guidance_steps")


def add_arguments(p):
    p.add_argument("pipeline", help="exported pipeline folder (or Hub id), or an exported GAN generator folder")
    p.add_argument("--recipe", default=None, help="take data/eval settings from this recipe")
    p.add_argument("--data", default=None, help="reference data source (digits, .npz, folder, Hub name)")
    p.add_argument("--split", default=None, help="reference split (default: eval.reference_split)")
    p.add_argument("--steps", type=positive_int, nargs="+", default=None)
    p.add_argument("--scheduler", default=None, help="ddim | ddpm | dpm++ | euler | lcm (DDPM schedule); flow-euler | flow-heun | flow-dpm++ (flow); "
                   "pipeline (its own); auto (the schedule's default); default: eval.scheduler")
    p.add_argument("--guidance", type=non_negative_float, default=None)
    p.add_argument("--guidance-sweep", type=non_negative_float, nargs="+", default=None,
                   help="guidance scales also scored, at --guidance-steps (a teacher's best setting may be guided; "
                        "default: eval.guidance_sweep)")
    p.add_argument("--guidance-steps", type=positive_int, default=None,
                   help="sampler steps of the --guidance-sweep rows (default: eval.guidance_steps)")
    p.add_argument("--num-samples", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=None)
    p.add_argument("--features", default=None, help="classifier:<name|path> | inception")
    p.add_argument("--seed", type=non_negative_int, default=None, help="noise and labels of the scored samples (default: eval.seed)")
    p.add_argument("--truncation", type=non_negative_float, nargs="+", default=None,
                   help="truncation psi values of a GAN generator (default: eval.truncation of a gan recipe, else 1 0.7)")
    p.add_argument("--tag", default="model", help="eval-<tag>.json of a pipeline (a GAN writes eval-gan.json)")
    p.add_argument("--out", default="eval")
    p.add_argument("--threads", type=threads, default="auto", help="CPU threads: auto (default) or N")


def main(args) -> int:
    from ..errors import DistillError
    from ..diffusion.pipelines import exported_pipeline
    from ..gan.architectures import is_generator_folder

    path = Path(args.pipeline)
    if path.is_dir() and is_generator_folder(path):
        return evaluate_gan(args)
    if args.truncation is not None:
        raise DistillError(f"--truncation: for GAN generator folders; {path} is not one")
    if path.is_dir() and not (exported_pipeline(path) / "model_index.json").is_file():
        raise DistillError(f"pipeline {path}: not a pipeline folder (no model_index.json) nor a GAN generator folder "
                           "(no config.json naming a GAN generator class)")

    from ..config import EvalConfig
    from ..eval.evaluate import evaluate_pipeline
    from ..diffusion.teachers import load_teacher

    check_pipeline_path(args.pipeline)
    data_cfg, eval_cfg = settings(args, EvalConfig(), guidance_sweep=args.guidance_sweep,
                                  guidance_steps=args.guidance_steps)
    pipe = load_teacher(args.pipeline)
    from ..engine.threads import use_threads

    use_threads(args.threads, [pipe.unet], processes=1, key="--threads")
    rows = evaluate_pipeline(pipe, eval_cfg, data_cfg, args.out, tag=args.tag, scheduler=args.scheduler,
                             steps=args.steps, guidance_scale=args.guidance, sweep_guidance=True)
    for r in rows:
        print(f"steps={r['steps']:>3} guidance={r['guidance_scale']:g} fid={r['fid']:.4f} kid={r['kid']:.5f} class_acc={r.get('class_acc', float('nan')):.3f}")
    print(f"wrote {args.out}/eval-{args.tag}.json")
    return 0


def settings(args, ec, **more):
    """(DataConfig, `ec` updated): the data section and the eval keys `ec` shares with --recipe's eval section (a
    diffusion, GAN or translation recipe), then the command line's data source and eval options (and `more`)."""
    import dataclasses

    from ..config import DataConfig, load_recipe

    data_cfg = DataConfig()
    if args.recipe:
        check_input_path(args.recipe, "--recipe", "file")
        recipe = load_recipe(args.recipe)
        data_cfg = recipe.data
        shared = {f.name for f in dataclasses.fields(ec)} & {f.name for f in dataclasses.fields(recipe.eval)}
        ec = dataclasses.replace(ec, **{k: getattr(recipe.eval, k) for k in shared})
    check_output_path(args.out, "--out", "dir")
    if args.data:
        data_cfg = dataclasses.replace(data_cfg, source=args.data)
    changes = dict(num_samples=args.num_samples, batch_size=args.batch_size, features=args.features,
                   reference_split=args.split, seed=args.seed, **more)
    return data_cfg, dataclasses.replace(ec, **{k: v for k, v in changes.items() if v is not None})


def evaluate_gan(args) -> int:
    """FID/KID, class accuracy and coverage, within-class distance at each truncation psi -> eval-gan.json."""
    from ..errors import DistillError
    from ..eval.fid import feature_extractor
    from ..gan.evaluate import evaluate_generator
    from ..gan.architectures import load_generator
    from ..gan.recipe import GANEvalConfig

    given = [f"--{k.replace('_', '-')}" for k in DIFFUSION_ONLY if getattr(args, k) is not None]
    if given:
        raise DistillError(f"{', '.join(given)}: for diffusion pipelines; {args.pipeline} is a GAN generator "
                           "(use --truncation)")
    data_cfg, ec = settings(args, GANEvalConfig(), truncation=args.truncation)
    if ec.num_samples <= 0:
        raise DistillError("--num-samples must be positive to evaluate")
    G = load_generator(args.pipeline)
    rows = evaluate_generator(G, ec, data_cfg, args.out, feature_extractor(ec.features))
    for r in rows:
        print(f"psi={r['truncation']:g} fid={r['fid']:.4f} kid={r['kid']:.5f} "
              f"class_acc={r.get('class_acc', float('nan')):.3f} intra_class_dist={r['intra_class_dist']:.3f}")
    print(f"wrote {args.out}/eval-gan.json")
    return 0
