"""What the device runs natively: `train.mixed_precision: auto` resolves to bf16 or fp32 here, and
an unset `train.mixed_precision` takes accelerate's setting (`choose_mixed_precision`).

bf16 autocast pays off only where the hardware computes in bf16: a CUDA GPU with
`torch.cuda.is_bf16_supported()`, or a CPU with AVX512-BF16 or AMX (the `avx512_bf16` /
`amx_bf16` flags of /proc/cpuinfo). On a CPU without them (AVX2 only) autocast emulates bf16 and
was measured about 10x slower than fp32, so `auto` picks fp32 ("no") there and an explicit `bf16`
warns. Non-Linux CPUs (no /proc/cpuinfo) count as without native bf16.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from .messages import get_logger

logger = get_logger(__name__)

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> list[tuple[str, str]]:
    """(key, value) lines of /proc/cpuinfo; empty where there is none (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())]


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none: not Linux)."""
    return {f for k, v in _cpuinfo() if k in ("flags", "Features") for f in v.split()}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    import platform

    return next((v for k, v in _cpuinfo() if k == "model name"), "") or platform.processor() or platform.machine()


def _uses_cuda() -> bool:
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return False
    return torch.cuda.is_available()


def native_bf16() -> tuple[bool, str]:
    """(whether the training device computes bf16 natively, why) for the device accelerate will use."""
    if _uses_cuda():
        name = torch.cuda.get_device_name(0) if torch.cuda.device_count() else "CUDA"
        if torch.cuda.is_bf16_supported():
            return True, f"{name} supports bf16"
        return False, f"{name} has no native bf16"
    flags = cpu_flags()
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if found:
        return True, f"CPU has {found[0]}"
    if not flags:
        return False, "CPU flags unknown (no /proc/cpuinfo)"
    return False, "CPU has neither avx512_bf16 nor amx_bf16"


def resolve_mixed_precision(value: str, notice: Optional[callable] = logger.info) -> str:
    """`train.mixed_precision` -> what accelerate gets. "auto" -> "bf16" where the device runs bf16
    natively, "no" (fp32) elsewhere, with a one-line notice of the choice and why; an explicit "bf16"
    on a device without native bf16 warns that it will be slow; other values pass through."""
    if value == "auto":
        ok, why = native_bf16()
        chosen = "bf16" if ok else "no"
        if notice is not None:
            notice(f"train.mixed_precision=auto: {'bf16' if ok else 'fp32 (no)'} ({why})")
        return chosen
    if value == "bf16":
        ok, why = native_bf16()
        if not ok:
            warnings.warn(f"train.mixed_precision=bf16 without native bf16 ({why}): autocast emulates it, "
                          "about 10x slower than fp32; use auto or no", stacklevel=2)
    return value


def launcher_mixed_precision() -> Optional[str]:
    """accelerate's mixed precision as its launcher passes it: `accelerate launch --mixed_precision X` and the
    launcher's config file both arrive as ACCELERATE_MIXED_PRECISION (set by hand, too); None where unset."""
    value = os.environ.get("ACCELERATE_MIXED_PRECISION", "").strip().lower()
    return value or None


def choose_mixed_precision(asked: Optional[str], notice: Optional[callable] = logger.info) -> str:
    """What accelerate gets for `train.mixed_precision` = `asked`. Unset (None): accelerate's own setting
    (`launcher_mixed_precision`), else "auto". A recipe value whose resolution differs from the launcher's
    is used, with one warning line naming both."""
    launcher = launcher_mixed_precision()
    if asked is None:
        if launcher is not None:
            return resolve_mixed_precision(launcher, notice)
        asked = "auto"
    used = resolve_mixed_precision(asked, notice)
    if launcher is not None and launcher != used:
        warnings.warn(f"train.mixed_precision={asked} ({used}) is used, not accelerate's mixed_precision={launcher} "
                      "(ACCELERATE_MIXED_PRECISION, from `accelerate launch` or its config); unset the recipe key "
                      "to follow accelerate", stacklevel=2)
    return used
