"""Tiny translation data sets and recipes for the tests (32 px, ngf = ndf = 8)."""

from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def tiny_images(n, size=36, seed=0):
    """(n, size, size, 3) uint8 smooth random images."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, size // 6, size // 6, 3)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(b).resize((size, size), Image.BILINEAR)) for b in base])


def make_aligned(root: Path, n=6, size=36, splits=("train", "test")):
    """root/<split>/k.png with A | B side by side, B = 255 - A (a learnable pairing)."""
    for s, split in enumerate(splits):
        (root / split).mkdir(parents=True, exist_ok=True)
        for k, a in enumerate(tiny_images(n, size, seed=s)):
            Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / split / f"{k}.png")
    return root


def make_npz(path: Path, n=6, size=32):
    a = tiny_images(n, size, seed=1)
    b = (tiny_images(n + 2, size, seed=2) // 2 + 100).astype(np.uint8)  # a different "domain"
    np.savez(path, trainA=a, trainB=b, testA=a[:4], testB=b[:4])
    return path


def pix2pix_recipe(tmp_path, data, **train):
    return {
        "task": "pix2pix", "name": "tiny-p2p", "output_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "load_size": 36, "crop_size": 32},
        "translate": {"netG": "unet_32", "ngf": 8, "ndf": 8, "sample_count": 2},
        "train": {"max_steps": 6, "batch_size": 2, "log_every": 1, "sample_every": 1000, "checkpoint_every": 3,
                  "seed": 0, "lr_decay_fraction": 0.5, **train},
        "eval": {"num_samples": 0},
    }


def cyclegan_recipe(tmp_path, data, **train):
    return {
        "task": "cyclegan", "name": "tiny-cyc", "output_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "load_size": 32, "crop_size": 32},
        "translate": {"netG": "resnet_6blocks", "ngf": 8, "ndf": 8, "norm": "instance",
                      "dropout": False, "gan_mode": "lsgan", "pool_size": 3, "sample_count": 2},
        "train": {"max_steps": 6, "batch_size": 2, "log_every": 1, "sample_every": 1000, "checkpoint_every": 3,
                  "seed": 0, **train},
        "eval": {"num_samples": 0},
    }


def tiny_label_maps(n, size=32, classes=12, seed=0):
    """(n, size, size) uint8 class indices: blocks of 8 x 8 pixels with random classes."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, classes, (n, size // 8, size // 8))
    return blocks.repeat(8, 1).repeat(8, 2).astype(np.uint8)


def make_label_aligned(root: Path, n=6, size=32, splits=("train", "test")):
    """root/<split>/k.png, photo | CMP-coloured label map (the facades layout, BtoA): the photo is a
    fixed colour per class (a learnable mapping)."""
    from distill.translate.labels import CMP_PALETTE

    pal = np.array(CMP_PALETTE, dtype=np.uint8)
    photo_colours = np.random.default_rng(5).integers(0, 256, (len(pal), 3)).astype(np.uint8)
    for s, split in enumerate(splits):
        (root / split).mkdir(parents=True, exist_ok=True)
        for k, lab in enumerate(tiny_label_maps(n, size, seed=s)):
            Image.fromarray(np.concatenate([photo_colours[lab], pal[lab]], axis=1)).save(root / split / f"{k}.png")
    return root


def spade_recipe(tmp_path, data, **train):
    return {
        "task": "spade", "name": "tiny-spade", "output_dir": str(tmp_path / "run"),
        "data": {"source": str(data), "direction": "BtoA", "load_size": 32, "crop_size": 32, "flip": True},
        "translate": {"ngf": 2, "ndf": 4, "spade_hidden": 4, "n_layers_D": 2, "num_D": 2,
                      "gan_mode": "hinge", "sample_count": 2, "z_dim": 8},
        "train": {"max_steps": 6, "batch_size": 2, "log_every": 1, "sample_every": 1000, "checkpoint_every": 3,
                  "seed": 0, "learning_rate": 1e-4, "lr_d": 4e-4, "adam_beta1": 0.0, "lr_scheduler": "constant",
                  **train},
        "eval": {"num_samples": 0},
    }
