"""Thin wrapper of `distill classifier train` (kept for old instructions): the shipped classifiers are
reproduced with e.g.

  distill classifier train --data digits --resolution 16 --out distill/assets/classifier-digits.safetensors
  distill classifier train --data ../shared/data/mnist/mnist_full.npz --resolution 28 \
      --out distill/assets/classifier-mnist.safetensors

  python scripts/train_classifier.py --data digits --resolution 16 --out runs/classifier-digits.safetensors
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distill.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["classifier", "train", *sys.argv[1:]]))
