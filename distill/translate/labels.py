"""Semantic label maps: the input of SPADE (Park et al. 2019), read as class indices and fed to the
generator one-hot.

A label map file is one of
  * a colour-coded image (RGB, e.g. the facades label halves, JPEG): each pixel takes the class of
    the nearest palette colour. JPEG blurs the edges between classes; a pixel farther than
    `FAR` from every palette colour is "far", and an image with more than `MAX_FAR` of its pixels
    far is not a label map (a photo given where a label map is expected): a one-line error;
  * an integer image (PNG mode L / I / P): the pixel values are the class indices;
  * an array (`.npz`, (N, H, W)) of integers.
A value >= the class count, or a non-integer value, is a one-line error naming the file.

The CMP facade palette (Tylecek & Sara 2013, 12 classes) is the colour coding of the pix2pix
facades label halves: the centres of their colour clusters, in the order of the CMP class ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ranged
from ..errors import DataError, RecipeError

CMP_CLASSES = ("background", "facade", "window", "door", "cornice", "sill", "balcony", "blind", "deco",
               "molding", "pillar", "shop")
CMP_PALETTE = ((0, 0, 222), (0, 48, 255), (0, 128, 255), (1, 207, 255), (32, 255, 224), (112, 254, 142),
               (192, 255, 63), (255, 240, 1), (255, 159, 0), (255, 80, 0), (254, 0, 0), (174, 0, 1))
FAR = 60.0  # Euclidean RGB distance beyond which a pixel matches no palette colour
MAX_FAR = 0.5  # more far pixels than this: not a label map (facades labels: at most 33%, photos: at least 95%)


@dataclass
class LabelsConfig:
    """`translate.labels:` the label maps SPADE reads (the input domain)."""

    num_classes: int = ranged(12, ge=2, le=255)  # classes; 12: the CMP facades classes
    # colour of each class (RGB 0-255) for colour-coded label images; null: the CMP facade palette
    # (12 classes); integer images and .npz arrays need none
    palette: Optional[list[list[int]]] = None


def palette_of(cfg: LabelsConfig) -> Optional[torch.Tensor]:
    """(K, 3) float palette, or None when colour label maps cannot be read (no palette, K != 12)."""
    if cfg.palette is None:
        return torch.tensor(CMP_PALETTE, dtype=torch.float32) if cfg.num_classes == len(CMP_PALETTE) else None
    pal = cfg.palette
    if len(pal) != cfg.num_classes or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in pal):
        raise RecipeError(f"translate.labels.palette: needs {cfg.num_classes} RGB colours (0-255), one per class, "
                          f"got {len(pal)} entries")
    return torch.tensor(pal, dtype=torch.float32)


def colours_to_index(rgb: torch.Tensor, palette: torch.Tensor, where: str) -> torch.Tensor:
    """(3, H, W) uint8 colour-coded label map -> (1, H, W) uint8 class indices (nearest colour)."""
    px = rgb.reshape(3, -1).T.float()  # (HW, 3)
    d = torch.cdist(px, palette)  # (HW, K)
    dist, idx = d.min(1)
    far = float((dist > FAR).float().mean())
    if far > MAX_FAR:
        raise DataError(f"{where}: not a label map: {far:.0%} of its pixels are far from every palette colour "
                        f"(a photo? label maps are colour-coded classes or integer images)")
    return idx.to(torch.uint8).reshape(1, *rgb.shape[1:])


def check_indices(arr: np.ndarray, num_classes: int, where: str) -> torch.Tensor:
    """Integer label array (H, W) or (N, H, W) -> uint8 tensor; one-line errors for non-integer values
    and values outside [0, num_classes)."""
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError(f"{where}: label map has non-integer values (dtype {arr.dtype}); "
                            f"label maps hold class indices")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{where}: label map of dtype {arr.dtype}; label maps hold integer class indices")
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{where}: label values {lo}..{hi} do not fit translate.labels.num_classes={num_classes} "
                        f"(wrong class count, or not a label map)")
    return torch.from_numpy(arr.astype(np.uint8))


def read_label_image(im, cfg: LabelsConfig, where: str) -> torch.Tensor:
    """PIL image -> (1, H, W) uint8 class indices."""
    if im.mode in ("P", "L", "I", "I;16", "1"):
        return check_indices(np.asarray(im), cfg.num_classes, where)[None]
    pal = palette_of(cfg)
    if pal is None:
        raise DataError(f"{where}: a colour label map needs translate.labels.palette ({cfg.num_classes} classes; "
                        f"or give integer PNGs)")
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return colours_to_index(torch.from_numpy(arr.copy()).permute(2, 0, 1), pal, where)


def resize_labels(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, H, W) uint8 indices -> (N, 1, size, size), nearest neighbour (no class mixing)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x.float(), size=(size, size), mode="nearest-exact").to(torch.uint8)


def one_hot(idx: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, 1, H, W) integer indices -> (N, K, H, W) float one-hot."""
    return F.one_hot(idx[:, 0].long(), num_classes).permute(0, 3, 1, 2).float()


def colorize(onehot: torch.Tensor, palette: Optional[torch.Tensor]) -> torch.Tensor:
    """(N, K, H, W) one-hot (or scores) -> (N, 3, H, W) in [-1, 1] for pictures; without a palette,
    K evenly spaced greys."""
    k = onehot.shape[1]
    pal = palette if palette is not None else torch.linspace(0, 255, k)[:, None].expand(k, 3)
    idx = onehot.argmax(1)  # (N, H, W)
    return pal.to(onehot.device)[idx].permute(0, 3, 1, 2) / 127.5 - 1
