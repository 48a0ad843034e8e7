"""Reading code shared by the image loaders (distill.data.images: labelled image sets;
distill.translate.data: two translation domains): uint8 resizing, channel conversion, PIL images
to tensors, .npz files and Hub datasets opened with one-line `DataError`s."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def resize_uint8(images: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8 with antialiasing (`mode`: bilinear |
    bicubic), in chunks of 4096 images; unchanged when already that size."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = []
    for chunk in images.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode=mode, antialias=True, align_corners=False)
        out.append(y.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def match_channels(images: torch.Tensor, channels: int, where: str = "") -> torch.Tensor:
    """(N, C, H, W) uint8 with `channels` channels: grey -> colour by repetition, colour -> grey by
    luminance (ITU-R 601), RGBA -> RGB by dropping alpha."""
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
    raise DataError(f"{where + ': ' if where else ''}cannot convert {c}-channel images to {channels} channels")


def pil_to_chw(img, mode: str) -> torch.Tensor:
    """A PIL image converted to `mode` ("L" | "RGB") -> (C, H, W) uint8."""
    arr = np.asarray(img.convert(mode), dtype=np.uint8)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def list_images(folder: Path, extensions=IMAGE_EXTENSIONS, recursive: bool = False) -> list[Path]:
    """Image files of `folder` (all sub-folders with `recursive`), sorted; [] when it is not a folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in extensions)


@contextlib.contextmanager
def open_npz(path: Path):
    """The arrays of a .npz file (no pickles); an unreadable file is a one-line DataError."""
    try:
        z = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as .npz ({e.__class__.__name__})") from None
    with z:
        try:
            yield z
        except (OSError, ValueError) as e:  # e.g. an object array (pickles are refused)
            raise DataError(f"{path}: cannot read as .npz ({e.__class__.__name__})") from None


def load_hub(name: str, split: str, what: str):
    """`datasets.load_dataset(name, split=split)`; any failure is a DataError "<what>: <first line>"."""
    try:
        from datasets import load_dataset

        return load_dataset(name, split=split)
    except Exception as e:  # the datasets library raises many types; keep it to one line
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"{what}: {msg}") from None
