"""Pixel arrays from files (npz) to uint8, shared by the image loaders (distill.data.images) and
the translation loaders (distill.translate.data): one rule for what float and integer values mean,
and a one-line `DataError` naming the file and array key for values that cannot be pixels."""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """Pixel values -> uint8. Floats in [0, 1] are scaled by 255, floats in [-1, 1] (some negative)
    map by (x + 1) * 127.5, floats in [0, 255] and integers in [0, 255] are rounded; anything else
    (NaN/inf, other ranges, bool) is a `DataError` naming `where` (the file and array key)."""
    if arr.dtype == np.uint8 or arr.size == 0:
        return arr.astype(np.uint8, copy=False)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{where}: images must be numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise DataError(f"{where}: {bad} non-finite pixel values (NaN/inf)")
    lo, hi, eps = float(arr.min()), float(arr.max()), 1e-6
    if np.issubdtype(arr.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer pixel values range over [{lo:g}, {hi:g}], expected [0, 255]")
        return arr.astype(np.uint8)
    if lo >= -eps and hi <= 1 + eps:
        arr = arr * 255.0
    elif lo >= -1 - eps and hi <= 1 + eps:
        arr = (arr + 1.0) * 127.5
    elif not (lo >= -eps and hi <= 255 + eps):
        raise DataError(f"{where}: float pixel values range over [{lo:.4g}, {hi:.4g}], "
                        f"expected [0, 1], [-1, 1] or [0, 255]")
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
