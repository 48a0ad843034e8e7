"""Translation data: two image domains A and B held in memory as uint8 tensors (N, C, H, W).

Sources (translate.dataset_mode, "auto" detects them in this order):
  npz        file.npz with arrays <split>A / <split>B, (N, H, W, C) or (N, H, W) uint8 (horse2zebra)
  aligned    <root>/<split>/*.jpg, each image A|B side by side (facades, the reference format)
  paired     <root>/A/<split>/x.jpg + <root>/B/<split>/x.jpg, matched by file name
  unaligned  <root>/<split>A/*.jpg + <root>/<split>B/*.jpg (CycleGAN folders)
  hub        a Hub dataset name: datasets.load_dataset(name, split=split), columns translate.hub_columns
`direction: BtoA` swaps the domains after loading, so the model always maps `a` -> `b`.

Training batches apply the papers' augmentation: resize to load_size, random crop crop_size,
random horizontal flip; paired images share crop and flip. Evaluation resizes to crop_size.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..data.pixels import to_uint8
from ..errors import DataError
from .labels import LabelsConfig, check_indices, one_hot, read_label_image, resize_labels

IMG_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class TranslationData:
    a: torch.Tensor  # (N_A, C, H, W) uint8, the input domain (after direction)
    b: torch.Tensor  # (N_B, C, H, W) uint8, the output domain
    paired: bool
    num_classes: Optional[int] = None  # set: `a` holds label maps (N, 1, H, W) of class indices

    def to_input(self, xa: torch.Tensor) -> torch.Tensor:
        """uint8 input-domain images -> the network's input: [-1, 1] floats, or one-hot label maps."""
        return one_hot(xa, self.num_classes) if self.num_classes else _to_float(xa)

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def batch(self, idx_a: torch.Tensor, idx_b: torch.Tensor, cfg, generator: Optional[torch.Generator] = None,
              train: bool = True):
        """-> (real_A, real_B) float (n, C, crop, crop) in [-1, 1]. Paired data uses idx_a for both."""
        xa, xb = self.a[idx_a], self.b[idx_a if self.paired else idx_b]
        if not train:
            resize_a = resize_labels if self.num_classes else _resize
            return self.to_input(resize_a(xa, cfg.crop_size)), _to_float(_resize(xb, cfg.crop_size))
        if self.paired:  # one crop/flip for both halves: stack along channels
            ab = augment(torch.cat([xa, xb], 1), cfg, generator)
            return self.to_input(ab[:, :xa.shape[1]]), _to_float(ab[:, xa.shape[1]:])
        return self.to_input(augment(xa, cfg, generator)), _to_float(augment(xb, cfg, generator))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1.0


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return y.round().clamp(0, 255).to(torch.uint8)


def augment(x: torch.Tensor, cfg, generator: Optional[torch.Generator]) -> torch.Tensor:
    """(n, C, H, W) uint8 -> (n, C, crop, crop): resize to load_size, random crop, random flip
    (one draw per sample, from `generator`)."""
    x = _resize(x, cfg.load_size if cfg.preprocess == "resize_and_crop" else cfg.crop_size)  # no-op when loaded so
    c = cfg.crop_size
    out = []
    for img in x:
        h, w = img.shape[-2:]
        if h < c or w < c:
            raise DataError(f"translate.crop_size={c} is larger than the images ({h}x{w}); lower it or resize")
        i = int(torch.randint(0, h - c + 1, (), generator=generator))
        j = int(torch.randint(0, w - c + 1, (), generator=generator))
        img = img[:, i:i + c, j:j + c]
        if cfg.flip and torch.rand((), generator=generator).item() < 0.5:
            img = img.flip(-1)
        out.append(img)
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------
# Readers


def _pil_to_tensor(img, channels: int) -> torch.Tensor:
    img = img.convert("L" if channels == 1 else "RGB")  # grey images in a colour set -> RGB
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)  # (C, H, W)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTS) if folder.is_dir() else []


@dataclass
class ImageReader:
    """One domain's photos: PIL images / (N, H, W, C) arrays -> uint8 (C, size, size) / (N, C, size, size)."""

    channels: int
    size: int

    def image(self, im, where: str) -> torch.Tensor:
        return _resize(_pil_to_tensor(im, self.channels)[None], self.size)[0]

    def array(self, arr: np.ndarray, where: str) -> torch.Tensor:
        return _resize(_array_to_tensor(arr, self.channels, where), self.size)


@dataclass
class LabelReader:
    """One domain's label maps (distill.translate.labels): -> uint8 class indices (1, size, size)."""

    cfg: LabelsConfig
    size: int

    def image(self, im, where: str) -> torch.Tensor:
        return resize_labels(read_label_image(im, self.cfg, where)[None], self.size)[0]

    def array(self, arr: np.ndarray, where: str) -> torch.Tensor:
        if arr.ndim != 3:
            raise DataError(f"{where}: label maps must be (N, H, W) class indices, got shape {arr.shape}")
        return resize_labels(check_indices(arr, self.cfg.num_classes, where)[:, None], self.size)


def _read(path: Path, reader) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return reader.image(im, str(path))


def _stack(images: list[torch.Tensor], what: str) -> torch.Tensor:
    if not images:
        raise DataError(f"{what}: no images (empty domain)")
    return torch.stack(images)


def _array_to_tensor(arr: np.ndarray, channels: int, what: str) -> torch.Tensor:
    if arr.ndim == 3:  # (N, H, W): grey
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"{what}: expected (N, H, W, C) images, got shape {arr.shape}")
    arr = to_uint8(arr, what)  # NaN/inf or out-of-range values: DataError naming file:key
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return _match_channels(x, channels)


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, H, W) uint8: grey -> colour by repetition, colour -> grey by luminance."""
    if x.shape[1] == channels:
        return x.contiguous()
    if x.shape[1] == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    if x.shape[1] in (3, 4) and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x[:, :3].float() * w).sum(1, keepdim=True).round().to(torch.uint8)
    if x.shape[1] == 4 and channels == 3:
        return x[:, :3].contiguous()
    raise DataError(f"cannot convert {x.shape[1]}-channel images to {channels} channels")


def _load_npz(cfg, split, readers):
    path = Path(cfg.source)
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            out = []
            for d in ("A", "B"):
                k = f"{split}{d}"
                if k not in z:
                    raise DataError(f"{path}: no array '{k}' (missing half; arrays: {', '.join(keys)})")
                out.append(readers[d].array(z[k], f"{path}:{k}"))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not a zip, truncated, object arrays (no pickles)
        raise DataError(f"{path}: cannot read as .npz ({e.__class__.__name__})") from None
    return out[0], out[1], False


def _load_aligned(cfg, split, readers):
    files = _list_images(Path(cfg.source) / split)
    a, b = [], []
    from PIL import Image

    for f in files:
        with Image.open(f) as im:
            w, h = im.size
            if w < 2 or w != 2 * h:
                raise DataError(f"{f}: aligned images must hold A|B side by side (width = 2 x height), got {w}x{h}; "
                                f"missing half?")
            a.append(readers["A"].image(im.crop((0, 0, w // 2, h)), f"{f} (left half)"))
            b.append(readers["B"].image(im.crop((w // 2, 0, w, h)), f"{f} (right half)"))
    return _stack(a, f"{Path(cfg.source) / split}"), _stack(b, f"{Path(cfg.source) / split}"), True


def _load_paired(cfg, split, readers):
    root = Path(cfg.source)
    da, db = (root / "A" / split, root / "B" / split) if (root / "A").is_dir() else (root / f"{split}A", root / f"{split}B")
    fa, fb = _list_images(da), _list_images(db)
    na, nb = {p.name: p for p in fa}, {p.name: p for p in fb}
    if not fa or not fb:
        raise DataError(f"{da if not fa else db}: no images (empty domain)")
    if set(na) != set(nb):
        only = sorted(set(na) ^ set(nb))
        raise DataError(f"{root}: paired data needs the same file names in A and B ({len(fa)} A vs {len(fb)} B "
                        f"images; unmatched: {', '.join(only[:3])}{'...' if len(only) > 3 else ''})")
    names = sorted(na)
    return (torch.stack([_read(na[n], readers["A"]) for n in names]),
            torch.stack([_read(nb[n], readers["B"]) for n in names]), True)


def _load_unaligned(cfg, split, readers):
    root = Path(cfg.source)
    da, db = root / f"{split}A", root / f"{split}B"
    for d in (da, db):
        if not d.is_dir():
            raise DataError(f"{d}: folder missing (unaligned data needs {split}A and {split}B; missing half)")
    a = _stack([_read(p, readers["A"]) for p in _list_images(da)], str(da))
    b = _stack([_read(p, readers["B"]) for p in _list_images(db)], str(db))
    return a, b, False


def _load_hub(cfg, split, readers):  # pragma: no cover - needs the Hub
    try:
        from datasets import load_dataset

        ds = load_dataset(cfg.source, split=split)
    except Exception as e:
        raise DataError(f"data.source '{cfg.source}': not a local path and not loadable from the Hub "
                        f"({str(e).splitlines()[0] if str(e) else e.__class__.__name__})") from None
    ca, cb = cfg.hub_columns
    for c in (ca, cb):
        if c not in ds.column_names:
            raise DataError(f"{cfg.source}: no column '{c}' (columns: {', '.join(ds.column_names)}); set data.hub_columns")
    a = _stack([readers["A"].image(r[ca], f"{cfg.source}:{ca}") for r in ds], cfg.source)
    b = _stack([readers["B"].image(r[cb], f"{cfg.source}:{cb}") for r in ds], cfg.source)
    return a, b, True


LOADERS = {"npz": _load_npz, "aligned": _load_aligned, "paired": _load_paired, "unaligned": _load_unaligned,
           "hub": _load_hub}


def detect_mode(cfg, split: str) -> str:
    p = Path(cfg.source)
    if not cfg.source:
        raise DataError("translate.source: no data source given")
    if p.suffix == ".npz":
        if not p.is_file():
            raise DataError(f"{p}: file not found")
        return "npz"
    if not p.exists():
        return "hub"
    if (p / "A" / split).is_dir() or (p / "B" / split).is_dir():
        return "paired"
    if (p / f"{split}A").is_dir() or (p / f"{split}B").is_dir():
        return "unaligned"
    if (p / split).is_dir():
        return "aligned"
    raise DataError(f"{p}: no '{split}' data found (expected {split}/, {split}A/+{split}B/ or A/{split}/+B/{split}/)")


def load_translation(cfg, split: str = "train", train: bool = True,
                     labels: Optional[LabelsConfig] = None) -> TranslationData:
    """Load both domains of `split`, resized to load_size (train) or crop_size (evaluation).
    `labels`: the input domain holds label maps (SPADE), read as class indices."""
    mode = cfg.dataset_mode if cfg.dataset_mode != "auto" else detect_mode(cfg, split)
    if mode in ("aligned", "paired", "unaligned", "npz") and not Path(cfg.source).exists():
        raise DataError(f"{cfg.source}: not found")
    size = cfg.load_size if (train and cfg.preprocess == "resize_and_crop") else cfg.crop_size
    readers = {"A": ImageReader(cfg.input_nc, size), "B": ImageReader(cfg.output_nc, size)}
    if labels is not None:  # the input domain, before the direction swap
        readers["B" if cfg.direction == "BtoA" else "A"] = LabelReader(labels, size)
        readers["A" if cfg.direction == "BtoA" else "B"] = ImageReader(cfg.output_nc, size)
    a, b, paired = LOADERS[mode](cfg, split, readers)
    if cfg.direction == "BtoA":
        a, b = b, a  # channels are matched to input_nc / output_nc below
    if cfg.max_images:
        a, b = a[:cfg.max_images], b[:cfg.max_images]
    if len(a) == 0 or len(b) == 0:
        raise DataError(f"{cfg.source} ({split}): empty domain {'A' if len(a) == 0 else 'B'}")
    if paired and len(a) != len(b):
        raise DataError(f"{cfg.source} ({split}): paired data with {len(a)} A but {len(b)} B images")
    if labels is not None:
        return TranslationData(a, _match_channels(b, cfg.output_nc), paired, labels.num_classes)
    return TranslationData(_match_channels(a, cfg.input_nc), _match_channels(b, cfg.output_nc), paired)
