"""Score one checkpoint of a `task: gan` run with the monitor's protocol, its EMA or its raw (training) generator,
with the running batch-norm statistics it carries and with standing statistics re-estimated for those weights:

    python scripts/gan_checkpoint_probe.py RUN --step 8949 [--weights ema|raw] [--samples 1000]

prints one line per setting (FID, class accuracy, within-class diversity ratio to real data). The monitor
scores against up to 5,000 training images: numbers compare with the run's monitor curve, not with the
10,000-sample evaluation. Standing statistics: distill.gan.batchnorm.standing_statistics.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill.config import load_recipe  # noqa: E402
from distill.gan.batchnorm import standing_statistics  # noqa: E402
from distill.gan.train import standalone  # noqa: E402

logger = logging.getLogger("gan_checkpoint_probe")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--step", type=int, required=True)
    p.add_argument("--weights", choices=["ema", "raw"], default="ema")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="standing-statistics batches to try")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    ck = a.run / "checkpoints" / f"checkpoint-{a.step}"
    if not ck.is_dir():
        sys.exit(f"error: no checkpoint {ck}")
    recipe = load_recipe(a.run / "recipe.yaml", [f"eval.monitor_samples={a.samples}"])
    trainer = standalone(recipe)  # data, classifier features and the monitor of the run's recipe
    G = trainer.models["generator"]
    G.load_state_dict(load_file(ck / "generator.safetensors"))
    if a.weights == "ema":
        with torch.no_grad():
            for param, shadow in zip(G.parameters(), torch.load(ck / "ema.pt", weights_only=True)["shadow_params"]):
                param.copy_(shadow)
    settings = [("running statistics of the checkpoint", G)] + [
        (f"standing statistics, {n} batches", standing_statistics(copy.deepcopy(G), n, recipe.train.batch_size, 0))
        for n in a.batches]
    for name, g in settings:
        r = trainer.monitor(g)
        logger.info(f"{a.weights} weights, {name}: FID {r['fid']:.2f}, class accuracy {r['class_acc']:.3f}, "
                    f"within-class {r['diversity_ratio']:.2f}x real ({a.samples} samples)")


if __name__ == "__main__":
    main()
