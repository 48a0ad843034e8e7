"""The pictures of an exported GAN generator (a `task: gan` run folder or a shipped one): a
style-mixing grid, a truncation sweep (psi 0..1) and a latent interpolation in w, as
`distill run` writes them at the end of a `task: gan` run (docs/gan.md, "Pictures").

    python scripts/gan_pictures.py runs/gan-stylegan2-mnist --out runs/gan-stylegan2-mnist/pictures --seed 0

Bad input (not a generator folder, damaged weights, an unwritable --out) is one line on stderr, exit 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    from distill.commands.arguments import check_output_path
    from distill.errors import DistillError

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", help="exported generator folder (config.json + safetensors)")
    ap.add_argument("--out", default="pictures", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        from distill.gan.architectures import load_generator
        from distill.gan.pictures import write_pictures

        check_output_path(a.out, "--out", "dir")
        paths = write_pictures(load_generator(a.generator), a.out, seed=a.seed)
    except DistillError as e:
        print(f"gan_pictures: error: {e}", file=sys.stderr)
        return 2
    for p in paths.values():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
