"""`distill sample FOLDER`: write a grid of samples (one column per class) from an exported diffusion
pipeline (`--steps 4 --guidance 2`) or an exported GAN generator (`--truncation 0.7`); the folder's
contents decide which (model_index.json: a pipeline; config.json naming a GAN generator class: a GAN)."""

from __future__ import annotations

from pathlib import Path

from .arguments import check_output_path, threads, check_pipeline_path, non_negative_float, positive_int

HELP = "sample a saved pipeline or GAN generator into a grid PNG"
DIFFUSION_ONLY = ("steps", "guidance", "scheduler")


def add_arguments(p):
    p.add_argument("pipeline", help="exported pipeline folder (or Hub id), or an exported GAN generator folder")
    p.add_argument("--steps", type=positive_int, default=None, help="sampling steps of a pipeline (default 50)")
    p.add_argument("--guidance", type=non_negative_float, default=None,
                   help="classifier-free guidance scale of a pipeline (default 1 = off)")
    p.add_argument("--scheduler", default=None, help="ddim | ddpm | dpm++ | euler | lcm (DDPM schedule); flow-euler | flow-heun | flow-dpm++ (flow); "
                   "default: the pipeline's own")
    p.add_argument("--truncation", type=non_negative_float, default=None,
                   help="truncation psi of a GAN generator (default 1 = none; 0: each class's mean image)")
    p.add_argument("--per-class", type=positive_int, default=8, help="rows of the grid (samples per class)")
    p.add_argument("--classes", type=int, nargs="*", default=None, help="class labels (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png")
    p.add_argument("--threads", type=threads, default="auto", help="CPU threads: auto (default) or N")


def _classes(args, k):
    from ..errors import DistillError

    classes = args.classes if args.classes else (list(range(k)) if k else None)
    if classes is not None and k and any(not 0 <= c < k for c in classes):
        raise DistillError(f"--classes: labels must lie in [0, {k - 1}]")
    return classes


def main(args) -> int:
    from ..errors import DistillError
    from ..diffusion.pipelines import exported_pipeline
    from ..gan.architectures import is_generator_folder

    path = Path(args.pipeline)
    if path.is_dir() and is_generator_folder(path):
        given = [f"--{k}" for k in DIFFUSION_ONLY if getattr(args, k) is not None]
        if given:
            raise DistillError(f"{', '.join(given)}: for diffusion pipelines; {path} is a GAN generator (use --truncation)")
        check_output_path(args.out, "--out")
        return sample_gan(args)
    if path.is_dir() and not (exported_pipeline(path) / "model_index.json").is_file():
        raise DistillError(f"pipeline {path}: not a pipeline folder (no model_index.json) nor a GAN generator folder "
                           "(no config.json naming a GAN generator class)")
    if args.truncation is not None:
        raise DistillError(f"--truncation: for GAN generator folders; {path} is not one")
    return sample_pipeline(args)


def sample_gan(args) -> int:
    from ..gan.architectures import load_generator
    from ..gan.pictures import class_grid

    G = load_generator(args.pipeline)
    classes = _classes(args, G.num_classes)
    psi = 1.0 if args.truncation is None else args.truncation
    path = class_grid(G, args.out, truncation=psi, per_class=args.per_class, classes=classes, seed=args.seed)
    print(f"wrote {path}")
    return 0


def sample_pipeline(args) -> int:
    import torch

    from ..diffusion.sampling import make_scheduler
    from ..diffusion.teachers import load_teacher
    from ..viz import save_grid, telling_names, upscale_for_view

    check_pipeline_path(args.pipeline)
    check_output_path(args.out, "--out")
    if args.scheduler:
        from ..diffusion.sampling import SCHEDULERS

        if args.scheduler not in SCHEDULERS:
            from ..errors import DistillError

            raise DistillError(f"--scheduler '{args.scheduler}': unknown (choose from {', '.join(SCHEDULERS)})")
    pipe = load_teacher(args.pipeline)
    from ..engine.threads import use_threads

    use_threads(args.threads, [pipe.unet], processes=1, key="--threads")
    if args.scheduler:
        pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    classes = _classes(args, pipe.num_classes)
    n = args.per_class * (len(classes) if classes else 10)
    labels = torch.tensor(classes).repeat(args.per_class) if classes else None
    g = torch.Generator().manual_seed(args.seed)
    x = pipe(class_labels=labels, batch_size=n, num_inference_steps=args.steps or 50,
             guidance_scale=1.0 if args.guidance is None else args.guidance, generator=g,
             output_type="pt").images * 2 - 1
    names = [pipe.class_name(c) for c in classes] if classes and telling_names(pipe.config.get("class_names")) else None
    path = save_grid(x, args.out, nrow=len(classes) if classes else 10, scale=upscale_for_view(x.shape[-1]),
                     column_names=names)
    print(f"wrote {path}" + (f" (columns: {', '.join(names)})" if names else ""))
    return 0
