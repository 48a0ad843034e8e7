"""SPADE against pix2pix on the same paired test split (docs/results/translate.md): L1 / PSNR / SSIM
to the real photos, FID / KID against the real photos on the features of a network neither
translator trained on (default: the shipped CIFAR-10 evaluation classifier; KID on subsets of 50;
as many real training photos give the floor), and a picture with the
columns label map | pix2pix | SPADE | SPADE in the styles of two other test photos | real photo.

    python scripts/spade_vs_pix2pix.py runs/pix2pix-facades runs/spade-facades --out docs/translate-spade-vs-pix2pix.jpg

Each translator runs in eval mode; SPADE with a style encoder draws z ~ N(0, I) (seed 0) for the
metrics. Bad input is one line on stderr, exit 2.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _inputs(checkpoint, split: str):
    """(uint8 test data, its network inputs) for a run folder, read as that run was trained."""
    from distill.translate.config import configs_from_state
    from distill.translate.data import load_translation
    from distill.translate.infer import _state
    from distill.translate.methods import labels_for

    ckpt, state = _state(checkpoint)
    cfg, data_cfg = configs_from_state(state, str(ckpt / "state.json"))
    data = load_translation(data_cfg, split, train=False, labels=labels_for(state["method"], cfg))
    return data, data.to_input(data.a), cfg


def load_translation_like(data, run, n: int):
    """The first `n` training photos of `run`'s data, at its evaluation size, in [-1, 1]."""
    from distill.translate.config import configs_from_state
    from distill.translate.data import load_translation
    from distill.translate.infer import _state

    ckpt, state = _state(run)
    _, data_cfg = configs_from_state(state, str(ckpt / "state.json"))
    data_cfg.max_images = n
    return load_translation(data_cfg, "train", train=False).b.float() / 127.5 - 1


def compare(pix2pix_run, spade_run, out, split: str = "test", features: str = "classifier:cifar10",
            rows: int = 6) -> dict:
    import torch

    from distill.eval.fid import extract, feature_extractor, fid_kid
    from distill.translate.evaluate import paired_metrics
    from distill.translate.infer import load_generator, load_style_encoder
    from distill.translate.labels import colorize, palette_of
    from distill.viz import save_grid

    p_data, p_in, _ = _inputs(pix2pix_run, split)
    s_data, s_in, s_cfg = _inputs(spade_run, split)
    real = s_data.b.float() / 127.5 - 1
    if not torch.equal(p_data.b, s_data.b):
        from distill.errors import DistillError

        raise DistillError("the two runs' test photos differ (other data, size or direction)")
    P, _ = load_generator(pix2pix_run)
    S, _ = load_generator(spade_run)
    with torch.no_grad():
        fakes = {"pix2pix": torch.cat([P(p_in[i:i + 16]) for i in range(0, len(p_in), 16)])}
        torch.manual_seed(0)
        fakes["spade"] = torch.cat([S(s_in[i:i + 16]) for i in range(0, len(s_in), 16)])
    ext = feature_extractor(features)
    real_f = extract(ext, real)
    result = {"split": split, "n": len(real), "features": features}
    kid_subset = min(50, len(real))
    for name, fake in fakes.items():
        result[name] = {**paired_metrics(fake, real), **fid_kid(real_f, extract(ext, fake), kid_subset=kid_subset)}
    # the floor at this sample size: as many real training photos against the real test photos
    train_photos = load_translation_like(s_data, spade_run, len(real))
    result["real_train_photos"] = fid_kid(real_f, extract(ext, train_photos), kid_subset=kid_subset)
    k = min(rows, len(real))
    cols = [colorize(s_in[:k], palette_of(s_cfg.labels)), fakes["pix2pix"][:k], fakes["spade"][:k]]
    if getattr(S, "z_dim", None):
        E = load_style_encoder(spade_run)
        with torch.no_grad():
            for j in (1, 2):  # the styles of other test photos (image k + j's and 2k + j's)
                z = E(real[(j * k + j) % len(real)][None])[0]
                cols.append(S(s_in[:k], z.expand(k, -1)))
    cols.append(real[:k])
    x = torch.stack([c.float() for c in cols], 1).reshape(-1, *real.shape[1:])
    save_grid(x, out, nrow=len(cols))
    return result


def main(argv=None) -> int:
    from distill.commands.arguments import check_input_path, check_output_path
    from distill.errors import DistillError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pix2pix", help="pix2pix run folder")
    ap.add_argument("spade", help="SPADE run folder")
    ap.add_argument("--out", default="spade-vs-pix2pix.jpg", help="the picture")
    ap.add_argument("--split", default="test")
    ap.add_argument("--features", default="classifier:cifar10", help="FID / KID features (eval.features syntax)")
    a = ap.parse_args(argv)
    try:
        check_input_path(a.pix2pix, "PIX2PIX", "dir")
        check_input_path(a.spade, "SPADE", "dir")
        check_output_path(a.out, "--out")
        result = compare(a.pix2pix, a.spade, a.out, a.split, a.features)
    except DistillError as e:
        print(f"spade_vs_pix2pix: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
