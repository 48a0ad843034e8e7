"""Translation equivariance of exported style-based GAN generators (stylegan2, stylegan3-t): EQ-T (whole-pixel
shifts) and EQ-T_frac (sub-pixel shifts) in dB, the StyleGAN3 paper's PSNRs (distill.gan.equivariance), and the
same on outputs brought to a common spread (`norm`), which compares generators whose output scales differ.

    python scripts/gan_equivariance.py runs/gan-stylegan3-t-mnist distill/assets/gans/mnist --samples 256

Bad input (not a generator folder, a kind without a translatable input) is one line on stderr, exit 2.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from distill.errors import DistillError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generators", nargs="+", help="exported generator folders")
    ap.add_argument("--samples", type=int, default=256, help="latents per measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args(argv)
    import torch

    from distill.gan.architectures import generator_kind_of, load_generator
    from distill.gan.equivariance import eqt_psnr

    rows = []
    try:
        for path in a.generators:
            G = load_generator(path)
            if not hasattr(G, "synthesis"):
                raise DistillError(f"{path}: a {generator_kind_of(path)} generator has no translatable input")
            row = {"generator": path, "kind": generator_kind_of(path)}
            with torch.no_grad():
                for frac, name in ((False, "eq_t"), (True, "eq_t_frac")):
                    row[name] = eqt_psnr(G, a.samples, fractional=frac, seed=a.seed)
                    row[name + "_norm"] = eqt_psnr(G, a.samples, fractional=frac, seed=a.seed, normalize=True)
            rows.append(row)
    except DistillError as e:
        print(f"gan_equivariance: error: {e}", file=sys.stderr)
        return 2
    print("| generator | kind | EQ-T (dB) | EQ-T_frac (dB) | EQ-T norm | EQ-T_frac norm |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['generator']} | {r['kind']} | {r['eq_t']:.1f} | {r['eq_t_frac']:.1f} | {r['eq_t_norm']:.1f} | "
              f"{r['eq_t_frac_norm']:.1f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
