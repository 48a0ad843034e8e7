"""`distill sample PIPELINE --steps 4 --guidance 2`: write a grid of samples (one column per class)."""

from __future__ import annotations

from .arguments import check_output_path, check_pipeline_path, non_negative_float, positive_int

HELP = "sample a saved pipeline into a grid PNG"


def add_arguments(p):
    p.add_argument("pipeline", help="exported pipeline folder (or Hub id)")
    p.add_argument("--steps", type=positive_int, default=50)
    p.add_argument("--guidance", type=non_negative_float, default=1.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--scheduler", default=None, help="ddim | ddpm | dpm++ | euler | lcm (DDPM schedule); flow-euler | flow-heun | flow-dpm++ (flow); "
                   "default: the pipeline's own")
    p.add_argument("--per-class", type=positive_int, default=8, help="rows of the grid (samples per class)")
    p.add_argument("--classes", type=int, nargs="*", default=None, help="class labels (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png")


def main(args) -> int:
    import torch

    from ..diffusion.sampling import make_scheduler
    from ..diffusion.teachers import load_teacher
    from ..viz import save_grid, upscale_for_view

    check_pipeline_path(args.pipeline)
    check_output_path(args.out, "--out")
    if args.scheduler:
        from ..diffusion.sampling import SCHEDULERS

        if args.scheduler not in SCHEDULERS:
            from ..errors import DistillError

            raise DistillError(f"--scheduler '{args.scheduler}': unknown (choose from {', '.join(SCHEDULERS)})")
    pipe = load_teacher(args.pipeline)
    if args.scheduler:
        pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    k = pipe.num_classes
    classes = args.classes if args.classes else (list(range(k)) if k else None)
    if classes is not None and k is not None and any(not 0 <= c < k for c in classes):
        from ..errors import DistillError

        raise DistillError(f"--classes: labels must lie in [0, {k - 1}]")
    n = args.per_class * (len(classes) if classes else 10)
    labels = torch.tensor(classes).repeat(args.per_class) if classes else None
    g = torch.Generator().manual_seed(args.seed)
    x = pipe(class_labels=labels, batch_size=n, num_inference_steps=args.steps, guidance_scale=args.guidance,
             generator=g, output_type="pt").images * 2 - 1
    path = save_grid(x, args.out, nrow=len(classes) if classes else 10, scale=upscale_for_view(x.shape[-1]))
    print(f"wrote {path}")
    return 0
