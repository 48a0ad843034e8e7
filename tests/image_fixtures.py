"""Tiny generated PNG folders in the `imagefolder` layouts (class folders, split/class folders)."""

import numpy as np
from PIL import Image

COLOURS = {"buildings": (200, 40, 40), "forest": (40, 200, 40), "sea": (40, 40, 200)}


def write_class_folder(root, classes=("buildings", "forest", "sea"), per_class=4, size=(12, 10), seed=0):
    """root/<class>/<i>.png, RGB; each class a noisy version of its own colour."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(np.array(COLOURS[c]) + rng.integers(-30, 30, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


def write_split_folder(root, splits=None, per_class=4, size=(12, 10)):
    """root/<split>/<class>/<i>.png; `splits` maps split -> its classes (a split may lack one)."""
    splits = splits or {"train": ("buildings", "forest", "sea"), "test": ("buildings", "forest", "sea")}
    for k, (split, classes) in enumerate(splits.items()):
        write_class_folder(root / split, classes, per_class, size, seed=k)
    return root
