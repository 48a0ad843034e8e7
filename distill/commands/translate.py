"""`distill translate CHECKPOINT INPUT OUTPUT [--onnx model.onnx]`: translate an image or a
folder with a trained pix2pix / CycleGAN / SPADE generator (SPADE: label maps in, photos out;
`--style PHOTO` with its style encoder), and/or export it to ONNX."""

from __future__ import annotations

from .arguments import check_input_path, check_output_path, positive_int

HELP = "translate images with a pix2pix / CycleGAN / SPADE checkpoint; export the generator to ONNX"


def add_arguments(p):
    p.add_argument("checkpoint", help="run folder (its export; an unfinished run's latest checkpoint) or checkpoint folder")
    p.add_argument("input", nargs="?", help="image file or folder of images")
    p.add_argument("output", nargs="?", help="output folder (or file, for one input image)")
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--size", type=positive_int, default=None, help="resize inputs to this (default: the training crop size)")
    p.add_argument("--reverse", action="store_true", help="CycleGAN: use G_B (B -> A)")
    p.add_argument("--paper-test-mode", action="store_true",
                   help="per-image batch statistics and dropout at test time (pix2pix Sec. 3.3)")
    p.add_argument("--style", default=None, help="SPADE with a style encoder: take the style of this photo")
    p.add_argument("--seed", type=int, default=0, help="SPADE with a style encoder: the seed of the random style")
    p.add_argument("--onnx", default=None, help="also export the generator to this .onnx file (checked with onnxruntime)")


def main(args) -> int:
    import torch

    from ..errors import DistillError
    from ..translate.infer import export_onnx, load_generator, load_style_encoder, style_code, translate_images

    if not args.onnx and not (args.input and args.output):
        raise DistillError("give INPUT and OUTPUT, or --onnx PATH")
    check_input_path(args.checkpoint, "CHECKPOINT", "dir")
    if args.input or args.output:
        if not (args.input and args.output):
            raise DistillError("give both INPUT and OUTPUT")
        inp = check_input_path(args.input, "INPUT")
        from ..translate.data import IMG_EXTS

        one_file = inp.is_file() and str(args.output).lower().endswith(tuple(IMG_EXTS))
        check_output_path(args.output, "OUTPUT", "file" if one_file else "dir")
    if args.onnx:
        check_output_path(args.onnx, "--onnx")
    if args.style:
        check_input_path(args.style, "--style", "file")
    G, cfg = load_generator(args.checkpoint, reverse=args.reverse)
    z = style_code(load_style_encoder(args.checkpoint), args.style) if args.style else None
    if args.input and args.output:
        with torch.no_grad():
            written = translate_images(G, cfg, args.input, args.output, batch=args.batch, size=args.size,
                                       eval_mode=not args.paper_test_mode, z=z, seed=args.seed)
        print(f"wrote {len(written)} image(s) to {args.output}")
    if args.onnx:
        r = export_onnx(G, cfg, args.onnx, size=args.size)
        diff = "onnxruntime not installed: not checked" if r["max_abs_diff"] is None else f"max |onnx - torch| = {r['max_abs_diff']:.2e}"
        print(f"exported {r['path']} ({diff})")
    return 0
