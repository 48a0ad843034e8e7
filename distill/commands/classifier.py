"""`distill classifier train --data SOURCE --channels C --resolution R --out PATH.safetensors`: train
the evaluation classifier (FID/KID features, class accuracy; never a training loss) on any data
source: digits, a .npz file, an image folder (class folders, or split folders of class folders), a
Hub dataset name. Writes PATH (safetensors, the architecture in its metadata) and beside it PATH with
.json (test accuracy on --eval-split when the source has it, classes, channels, resolution, steps) and
.md (a Hub model card of the same facts: metadata, then a table). `eval.features: classifier:PATH` (or `distill eval --features classifier:PATH`)
then uses it."""

from __future__ import annotations

from .arguments import check_output_path, positive_float, positive_int, threads

HELP = "evaluation classifier: `distill classifier train --data SOURCE --out PATH.safetensors`"


def add_train_arguments(p):
    p.add_argument("--data", required=True, help="digits | path/to/file.npz | image folder | Hub dataset name")
    p.add_argument("--channels", type=positive_int, default=1, help="image channels (1 grey, 3 RGB)")
    p.add_argument("--resolution", type=positive_int, default=28, help="images are resized to R x R")
    p.add_argument("--out", required=True, help="the classifier file to write (.safetensors)")
    p.add_argument("--split", default="train", help="training split (default: train)")
    p.add_argument("--eval-split", default="test", help="split for the test accuracy, when the source has it")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps (default: 4 epochs)")
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--learning-rate", type=positive_float, default=2e-3)
    p.add_argument("--image-key", default=None, help="npz array / dataset column of the images")
    p.add_argument("--label-key", default=None, help="npz array / dataset column of the labels")
    p.add_argument("--limit", type=positive_int, default=None, help="keep the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=threads, default="auto", help="CPU threads: auto (default) or N")


def add_arguments(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    tr = sub.add_parser("train", help="train an evaluation classifier on a data source", description=__doc__)
    add_train_arguments(tr)
    p.set_defaults(_action=None)
    tr.set_defaults(_action=train)


def card_paths(out):
    from pathlib import Path

    out = Path(out)
    return out.with_suffix(".json"), out.with_suffix(".md")


def _eval_split(cfg, split: str):
    """The eval split's images, or (None, why not) when the source has no such split distinct from
    the training one."""
    import dataclasses
    from pathlib import Path

    from ..data import load_images
    from ..data.images import _image_files, folder_splits, source_kind
    from ..errors import DataError

    if split == cfg.split:
        return None, f"--eval-split is the training split '{split}'"
    if source_kind(cfg.source) == "folder":
        root = Path(cfg.source)
        if not folder_splits(root, _image_files(root)):
            return None, f"{root} has no split folders (root/{cfg.split}/<class>/, root/{split}/<class>/)"
    try:
        return load_images(dataclasses.replace(cfg, split=split, limit=None)), ""
    except DataError as e:
        return None, str(e)


def train(args) -> int:
    import json
    import time
    from pathlib import Path

    from ..config import DataConfig
    from ..data import load_images
    from ..errors import DataError, DistillError
    from ..eval.classifier import accuracy, save_classifier, train_classifier

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise DistillError(f"--out {out}: must end in .safetensors (eval.features: classifier:<path>.safetensors)")
    check_output_path(out, "--out", "file")
    for card in card_paths(out):
        check_output_path(card, "--out card", "file")
    if args.channels > 4:
        raise DistillError(f"--channels {args.channels}: must be 1-4")
    cfg = DataConfig(source=args.data, split=args.split, resolution=args.resolution, channels=args.channels,
                     image_key=args.image_key, label_key=args.label_key, limit=args.limit)
    tr = load_images(cfg)
    if tr.labels is None:
        raise DataError(f"{args.data} (split '{args.split}'): no labels; the classifier needs class labels "
                        "(class folders, a label array or column)")
    if tr.num_classes < 2:
        raise DataError(f"{args.data} (split '{args.split}'): {tr.num_classes} class; the classifier needs at least 2")
    te, note = _eval_split(cfg, args.eval_split)
    if te is not None and te.labels is None:
        te, note = None, f"split '{args.eval_split}' has no labels"
    if te is not None:
        te.check_labels(tr.num_classes)  # a test label the classifier cannot output is a data error
    if te is None:
        print(f"no test accuracy: {note}")
    from ..engine.threads import use_threads

    use_threads(args.threads, processes=1, key="--threads")
    t0 = time.time()
    model = train_classifier(tr.images, tr.labels, tr.num_classes, batch=args.batch_size, lr=args.learning_rate,
                             seed=args.seed, input_size=args.resolution, steps=args.steps, progress=not args.quiet)
    wall = time.time() - t0
    per_epoch = (len(tr) + args.batch_size - 1) // args.batch_size
    steps = args.steps if args.steps is not None else 4 * per_epoch
    classes = tr.class_names or list(range(tr.num_classes))
    info = {"file": str(out), "data": args.data, "split": args.split, "train_size": len(tr),
            "eval_split": args.eval_split if te is not None else None, "test_size": len(te) if te is not None else 0,
            "test_accuracy": accuracy(model, te.images, te.labels) if te is not None else None,
            "eval_note": note, "train_accuracy": accuracy(model, tr.images, tr.labels),
            "num_classes": tr.num_classes, "classes": classes, "channels": args.channels,
            "resolution": args.resolution, "steps": steps, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate, "seed": args.seed, "wall_seconds": round(wall, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_classifier(model, out, info)
    js, md = card_paths(out)
    js.write_text(json.dumps(info, indent=1) + "\n")
    from ..cards import classifier_card

    classifier_card(info).save(md)
    acc = info["test_accuracy"]
    print(f"test accuracy {acc:.4f} on '{args.eval_split}'" if acc is not None else
          f"train accuracy {info['train_accuracy']:.4f} (no test split)")
    print(f"wrote {out}, {js}, {md}")
    return 0


def main(args) -> int:
    if getattr(args, "_action", None) is None:
        from ..errors import DistillError

        raise DistillError("choose an action: `distill classifier train --help`")
    return args._action(args)
