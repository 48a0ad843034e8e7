"""One loader for labelled image sets, held in memory as uint8 tensors.

Sources (picked by `DataConfig.source`):
  - "digits": scikit-learn's embedded 8x8 digits (no download), a fixed 80/20 train/test split;
  - a `.npz` file: arrays such as `x_train`/`y_train` (../shared/data/mnist/mnist_full.npz);
  - a folder of images: the `imagefolder` layout, one sub-folder per class (`root/<class>/*.png`) or
    split folders of class folders (`root/train/<class>/*.png`, `root/test/...`: `data.split`
    picks one; label ids are the sorted class names of all splits), or a flat folder (unlabelled);
  - anything else: a `datasets.load_dataset` name (a Hub dataset such as `ylecun/mnist`).

Every source ends as `ImageSet(images (N, C, H, W) uint8, labels (N,) int64 | None)`, resized to
the recipe's resolution. Bad input raises `DataError` with a one-line message naming the file/key:
NaN/inf pixels, float images outside [0, 1], [-1, 1] or [0, 255] (how floats are read, see
`distill.data.pixels.to_uint8`), integer images outside [0, 255], labels that are negative, not integers, or (given the
class count: `load_images(cfg, num_classes)`, or a Hub dataset's label names) not below it.
"""

from __future__ import annotations

import functools

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DataConfig
from ..errors import DataError
from .pixels import to_uint8

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: Optional[torch.Tensor]  # (N,) int64, or None when unlabelled
    num_classes: Optional[int]
    name: str = ""
    label_where: str = ""  # where the labels came from (file[key]), for error messages
    class_names: Optional[list] = None  # label id -> name, where the source names its classes (folders, Hub)

    def check_labels(self, num_classes: Optional[int]) -> None:
        """Every label must lie in [0, num_classes) (e.g. the teacher's classes)."""
        if num_classes is None or self.labels is None or not self.labels.numel():
            return
        hi = int(self.labels.max())
        if hi >= num_classes:
            raise DataError(f"{self.label_where or self.name}: label {hi} outside [0, {num_classes}) "
                            f"({num_classes} classes)")

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
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = []
    for chunk in images.split(4096):
        y = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear",
                          antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def _set_channels(images: torch.Tensor, channels: int, where: str) -> torch.Tensor:
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3 and c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c in (3, 4):
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (images[:, :3].float() * w).sum(1, keepdim=True).round().to(torch.uint8)
    if channels == 3 and c == 4:
        return images[:, :3].contiguous()
    raise DataError(f"{where}: images have {c} channels, the recipe asks for {channels}")


def _array_to_nchw(arr: np.ndarray, where: str) -> torch.Tensor:
    if arr.ndim == 3:  # (N, H, W)
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3, 4):
        arr = arr.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    elif arr.ndim != 4:
        raise DataError(f"{where}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError(f"{where}: contains no images")
    return torch.from_numpy(np.ascontiguousarray(to_uint8(arr, where)))


def _labels(arr, n: int, where: str, num_classes: Optional[int] = None) -> tuple[torch.Tensor, int]:
    """Integer labels (N,) -> (int64 tensor, class count). Names (strings) become indices in sorted
    order; floats must be finite whole numbers; negatives, or labels >= num_classes when it is known,
    are a `DataError` naming `where`."""
    y = np.asarray(arr)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{where}: {y.shape[0] if y.ndim else 0} labels for {n} images")
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(f"{where}: labels contain NaN/inf")
        if (y != np.round(y)).any():
            raise DataError(f"{where}: labels must be whole numbers, got {y[y != np.round(y)][0]:g}")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        classes = sorted(set(y.tolist()))
        y = np.array([classes.index(v) for v in y.tolist()])
    y = torch.from_numpy(y.astype(np.int64))
    if y.numel() and y.min() < 0:
        raise DataError(f"{where}: label {int(y.min())} is negative (labels must lie in [0, num_classes))")
    if num_classes is not None and y.numel() and y.max() >= num_classes:
        raise DataError(f"{where}: label {int(y.max())} outside [0, {num_classes}) ({num_classes} classes)")
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
    return x[idx], y[idx], 10, "digits", [str(i) for i in range(10)]


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
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            ik = _pick_key(keys, cfg.image_key, [f"x_{cfg.split}", cfg.split, "images", "x"], str(path), "image")
            if ik is None:
                raise DataError(f"{path}: no image array for split '{cfg.split}' (found: {', '.join(keys)}); set data.image_key")
            x = _array_to_nchw(z[ik], f"{path}[{ik}]")
            y, k, lw = None, None, ""
            if cfg.label_key != "":
                lk = _pick_key(keys, cfg.label_key, [f"y_{cfg.split}", "labels", "y"], str(path), "label")
                if lk is not None:
                    lw = f"{path}[{lk}]"
                    y, k = _labels(z[lk], x.shape[0], lw)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, truncated, object arrays (no pickles)
        raise DataError(f"{path}: cannot read as .npz ({e.__class__.__name__})") from None
    return x, y, k, lw


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB") if im.mode not in ("L", "RGB") else im.copy()
    except Exception:
        raise DataError(f"{path}: unreadable image") from None
    arr = np.array(im, dtype=np.uint8)  # a writable copy, (H, W) or (H, W, 3) whatever the size
    return torch.from_numpy(arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1)))


@functools.lru_cache(maxsize=None)
def split_names() -> tuple[str, ...]:
    """The split folder names `datasets`' imagefolder recognises (root/<split>/<class>/*.png), from datasets itself."""
    from datasets.data_files import SPLIT_KEYWORDS

    return tuple(name for names in SPLIT_KEYWORDS.values() for name in names)



def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def folder_splits(root: Path, files: list[Path]) -> list[str]:
    """The split folders of `root` when it has the split layout (every top-level folder holding
    images is a split name and no image lies at the top), else []."""
    tops = {p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "." for p in files}
    if "." in tops or not tops or not tops <= set(split_names()):
        return []
    return sorted(tops)


def _check_training_split_classes(root: Path, files: list[Path], splits: list[str]) -> None:
    """In the split layout every class must have training images: a class folder found only in another
    split (test, validation) would be a class the model never trains on. A DataError naming it."""
    train = next((s for s in ("train", "training") if s in splits), None)
    if train is None:
        return
    per_split: dict[str, set] = {}
    for p in files:
        split, _, cls = p.parent.relative_to(root).as_posix().partition("/")
        per_split.setdefault(split, set()).add(cls or ".")
    for split in splits:
        extra = sorted(per_split.get(split, set()) - per_split.get(train, set()))
        if extra:
            raise DataError(f"{root / split}: class folder '{extra[0]}' has no images in {root / train} (a class "
                            f"the model would never train on); add its training images or remove it")


def _load_folder(cfg: DataConfig):
    """One sub-folder per class (`root/<class>/*.png`), or the split layout `root/<split>/<class>/*.png`
    (data.split picks the split; classes are the folder names under the splits, sorted, the same
    label ids in every split); a folder of images alone is unlabelled. These are the layout, split and
    class rules of `datasets.load_dataset("imagefolder", data_dir=root)`, read here directly: imagefolder
    took 12.8-15.8 s against 3.1-3.9 s for the same 3000 32 px PNGs (2 classes, train/test; 2-core CPU) and
    silently keeps a class found only in `test` and drops an empty class folder, the checks this loader
    adds on top (a one-line error, a warning)."""
    root = Path(cfg.source)
    files = _image_files(root)
    if not files:
        raise DataError(f"{root}: no images found (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    splits = folder_splits(root, files)
    base, where = root, f"{root} (class folders)"
    if splits:
        if cfg.split not in splits:
            raise DataError(f"{root}: no split '{cfg.split}' (splits found: {', '.join(splits)}); set data.split")
        base, where = root / cfg.split, f"{root / cfg.split} (class folders)"
        # the class list comes from every split, so a label means the same class in train and test
        classes = sorted({p.parent.relative_to(root).as_posix().partition("/")[2] or "." for p in files})
        _check_training_split_classes(root, files, splits)
        files = [p for p in files if p.relative_to(root).parts[0] == cfg.split]
    else:
        classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    labelled = cfg.label_key != "" and classes != ["."]
    if labelled:
        empty = sorted(d.name for d in base.iterdir() if d.is_dir() and not any(d in f.parents for f in files))
        if empty:
            warnings.warn(f"{base}: class folder(s) {', '.join(empty)} hold no images and are left out of the classes",
                          stacklevel=3)
    images = []
    for p in files:
        im = _read_image(p)
        im = _set_channels(im[None], cfg.channels, str(p))
        images.append(_resize(im, cfg.resolution)[0])
    x = torch.stack(images)
    if not labelled:
        return x, None, None, ""
    y = torch.tensor([classes.index(p.parent.relative_to(base).as_posix()) for p in files])
    return x, y, len(classes), where, classes


def _load_hub(cfg: DataConfig):
    import datasets

    try:
        ds = datasets.load_dataset(cfg.source, split=cfg.split)
    except Exception as e:  # the datasets library raises many types; keep it to one line
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"dataset '{cfg.source}' (split '{cfg.split}'): {msg}") from None
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
    y, k, lw = None, None, ""
    if cfg.label_key != "":
        lk = _pick_key(cols, cfg.label_key, ["label", "labels"], cfg.source, "label column")
        if lk is not None:
            lw = f"{cfg.source}[{lk}]"
            names = getattr(ds.features.get(lk), "names", None)
            y, k = _labels(ds[lk], x.shape[0], lw, len(names) if names else None)
            k = len(names) if names else k
            return x, y, k, lw, list(names) if names else None
    return x, y, k, lw


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


def load_images(cfg: DataConfig, num_classes: Optional[int] = None) -> ImageSet:
    """Load `cfg.source` into memory as an `ImageSet` at `cfg.resolution` and `cfg.channels`; with
    `num_classes` (e.g. the teacher's), every label must lie in [0, num_classes)."""
    kind = source_kind(cfg.source)
    x, y, k, label_where, *names = SOURCES[kind](cfg)  # a source may add its class names
    if cfg.label_key and y is None:
        raise DataError(f"{cfg.source}: label key '{cfg.label_key}' not found")
    x = _set_channels(x, cfg.channels, cfg.source)
    x = _resize(x, cfg.resolution)
    if cfg.limit is not None:
        x = x[: cfg.limit]
        y = y[: cfg.limit] if y is not None else None
    if len(x) == 0:
        raise DataError(f"{cfg.source}: no images left")
    data = ImageSet(x.contiguous(), y, k, name=cfg.source, label_where=label_where,
                    class_names=names[0] if names and y is not None else None)
    data.check_labels(num_classes)
    return data
