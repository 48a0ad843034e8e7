"""Train and save the evaluation classifier for a data set (used only for FID/KID features and
class counts, never by a training loss).

  python scripts/train_classifier.py --name mnist --data ../shared/data/mnist/mnist_full.npz --resolution 28
  python scripts/train_classifier.py --name digits --data digits --resolution 16
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from distill.config import DataConfig  # noqa: E402
from distill.data import load_images  # noqa: E402
from distill.eval.classifier import ASSETS, accuracy, save_classifier, train_classifier  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tr = load_images(DataConfig(source=a.data, split="train", resolution=a.resolution))
    te = load_images(DataConfig(source=a.data, split="test", resolution=a.resolution))
    t0 = time.time()
    model = train_classifier(tr.images, tr.labels, tr.num_classes, epochs=a.epochs, seed=a.seed, input_size=a.resolution)
    wall = time.time() - t0
    acc = accuracy(model, te.images, te.labels)
    info = {"data": a.data, "resolution": a.resolution, "epochs": a.epochs, "seed": a.seed, "train_size": len(tr),
            "test_size": len(te), "test_accuracy": acc, "wall_seconds": round(wall, 1)}
    out = Path(a.out) if a.out else ASSETS / f"classifier-{a.name}.safetensors"
    save_classifier(model, out, info)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
