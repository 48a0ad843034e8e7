"""One loader for labelled image sets, held in memory as uint8 tensors.

Sources (picked by `DataConfig.source`):
  - "digits": scikit-learn's embedded 8x8 digits (no download), a fixed 80/20 train/test split;
  - a `.npz` file: arrays such as `x_train`/`y_train` (../shared/data/mnist/mnist_full.npz);
  - a folder of images: the `imagefolder` layout (one sub-folder per class) or a flat folder;
  - anything else: a `datasets.load_dataset` name (a Hub dataset such as `ylecun/mnist`).

Every source ends as `ImageSet(images (N, C, H, W) uint8, labels (N,) int64 | None)`, resized to
the recipe's resolution. Bad input raises `DataError` with a one-line message naming the file/key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..config import DataConfig
from ..errors import DataError
from .readers import IMAGE_EXTENSIONS, list_images, load_hub, match_channels, open_npz, pil_to_chw, resize_uint8


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: Optional[torch.Tensor]  # (N,) int64, or None when unlabelled
    num_classes: Optional[int]
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Images in [-1, 1] as float32 (B, C, H, W) and their labels (B,)."""
        x = self.images[index].float().div_(127.5).sub_(1.0)
        y = self.labels[index] if self.labels is not None else None
        return x, y


def to_uint8_images(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (B, C, H, W) -> uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, R, R) uint8, bilinear with antialiasing, in chunks."""
    return resize_uint8(images, resolution, "bilinear")


def _set_channels(images: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    return match_channels(images, channels, where)


def _array_to_nchw(arr: np.ndarray, where: str) -> torch.Tensor:
    if arr.ndim == 3:  # (N, H, W)
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif arr.ndim != 4:
        raise DataError(f"{where}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{where}: contains no images")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0 + 1e-6:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(arr))


def _labels(arr, n: int, where: str) -> tuple[torch.Tensor, int]:
    y = np.asarray(arr)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{where}: {y.shape[0] if y.ndim else 0} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer):
        classes = sorted(set(y.tolist()))
        y = np.array([classes.index(v) for v in y.tolist()])
    y = torch.from_numpy(y.astype(np.int64))
    if y.numel() and y.min() < 0:
        raise DataError(f"{where}: labels must be non-negative integers")
    return y, int(y.max()) + 1 if y.numel() else 0


# ----------------------------------------------------------------------------------------------
# Sources


def _load_digits(cfg: DataConfig):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]  # (N, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(y))
    splits = {"train": perm[:cut], "test": perm[cut:], "all": perm}
    if cfg.split not in splits:
        raise DataError(f"digits: unknown split '{cfg.split}' (use train, test or all)")
    idx = splits[cfg.split].sort().values
    return x[idx], y[idx], 10


def _pick_key(keys, wanted: Optional[str], defaults: list[str], where: str, what: str):
    if wanted:
        if wanted not in keys:
            raise DataError(f"{where}: no {what} key '{wanted}' (found: {', '.join(sorted(keys))})")
        return wanted
    for k in defaults:
        if k in keys:
            return k
    return None


def _load_npz(cfg: DataConfig):
    path = Path(cfg.source)
    with open_npz(path) as z:
        keys = list(z.keys())
        ik = _pick_key(keys, cfg.image_key, [f"x_{cfg.split}", cfg.split, "images", "x"], str(path), "image")
        if ik is None:
            raise DataError(f"{path}: no image array for split '{cfg.split}' (found: {', '.join(keys)}); set data.image_key")
        x = _array_to_nchw(z[ik], f"{path}[{ik}]")
        y, k = None, None
        if cfg.label_key != "":
            lk = _pick_key(keys, cfg.label_key, [f"y_{cfg.split}", "labels", "y"], str(path), "label")
            if lk is not None:
                y, k = _labels(z[lk], x.shape[0], f"{path}[{lk}]")
    return x, y, k


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except Exception:
        raise DataError(f"{path}: unreadable image") from None
    arr = np.asarray(im)
    return _array_to_nchw(arr[None], str(path))[0]


def _load_folder(cfg: DataConfig):
    root = Path(cfg.source)
    files = list_images(root, IMAGE_EXTENSIONS, recursive=True)
    if not files:
        raise DataError(f"{root}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    labelled = cfg.label_key != "" and classes != ["."]
    images = []
    for p in files:
        im = _read_image(p)
        im = _set_channels(im[None], cfg.channels, str(p))
        images.append(_resize(im, cfg.resolution)[0])
    x = torch.stack(images)
    if not labelled:
        return x, None, None
    y = torch.tensor([classes.index(p.parent.relative_to(root).as_posix()) for p in files])
    return x, y, len(classes)


def _load_hub(cfg: DataConfig):
    ds = load_hub(cfg.source, cfg.split, f"dataset '{cfg.source}' (split '{cfg.split}')")
    cols = ds.column_names
    ik = _pick_key(cols, cfg.image_key, ["image", "img", "images"], cfg.source, "image column")
    if ik is None:
        raise DataError(f"dataset '{cfg.source}': no image column (columns: {', '.join(cols)}); set data.image_key")
    images = []
    for i, im in enumerate(ds[ik]):
        t = _array_to_nchw(np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)[None],
                           f"{cfg.source}[{i}]")
        t = _set_channels(t, cfg.channels, f"{cfg.source}[{i}]")
        images.append(_resize(t, cfg.resolution)[0])
    x = torch.stack(images)
    y, k = None, None
    if cfg.label_key != "":
        lk = _pick_key(cols, cfg.label_key, ["label", "labels"], cfg.source, "label column")
        if lk is not None:
            y, k = _labels(ds[lk], x.shape[0], f"{cfg.source}[{lk}]")
            names = getattr(ds.features.get(lk), "names", None)
            k = len(names) if names else k
    return x, y, k


SOURCES: dict[str, Callable] = {"digits": _load_digits, "npz": _load_npz, "folder": _load_folder, "hub": _load_hub}


def source_kind(source: str) -> str:
    if source == "digits":
        return "digits"
    p = Path(source)
    if source.endswith(".npz"):
        if not p.is_file():
            raise DataError(f"{source}: file not found")
        return "npz"
    if p.is_dir():
        return "folder"
    if source.startswith((".", "/", "~")) or p.suffix:
        raise DataError(f"{source}: path not found")
    return "hub"


def load_images(cfg: DataConfig) -> ImageSet:
    """Load `cfg.source` into memory as an `ImageSet` at `cfg.resolution` and `cfg.channels`."""
    kind = source_kind(cfg.source)
    x, y, k = SOURCES[kind](cfg)
    if cfg.label_key and y is None:
        raise DataError(f"{cfg.source}: label key '{cfg.label_key}' not found")
    x = _set_channels(x, cfg.channels, cfg.source)
    x = _resize(x, cfg.resolution)
    if cfg.limit is not None:
        x = x[: cfg.limit]
        y = y[: cfg.limit] if y is not None else None
    if len(x) == 0:
        raise DataError(f"{cfg.source}: no images left")
    return ImageSet(x.contiguous(), y, k, name=cfg.source)
