"""Train the horse2zebra domain classifier used only for evaluation (never by a training loss).

  OMP_NUM_THREADS=1 python scripts/train_domain_classifier.py \
      --data ../shared/data/horse2zebra/horse2zebra_64px.npz --name horse2zebra
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from distill.eval.classifier import ASSETS, save_classifier  # noqa: E402
from distill.translate.domain import domain_accuracy, train_domain_classifier  # noqa: E402


def _load(npz, key):
    return torch.from_numpy(np.ascontiguousarray(npz[key])).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W) uint8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--name", default="horse2zebra")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    npz = np.load(a.data)
    tr_a, tr_b, te_a, te_b = (_load(npz, k) for k in ("trainA", "trainB", "testA", "testB"))
    t0 = time.time()
    model = train_domain_classifier(tr_a, tr_b, epochs=a.epochs, seed=a.seed, input_size=a.input_size)
    wall = time.time() - t0
    info = {"data": Path(a.data).name, "task": "domain A (0) vs B (1)", "epochs": a.epochs, "seed": a.seed,
            "input_size": a.input_size, "train_size": len(tr_a) + len(tr_b), "test_size": len(te_a) + len(te_b),
            "train_accuracy": domain_accuracy(model, tr_a, tr_b), "test_accuracy": domain_accuracy(model, te_a, te_b),
            "wall_seconds": round(wall, 1)}
    save_classifier(model, ASSETS / f"classifier-{a.name}.safetensors", info)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
