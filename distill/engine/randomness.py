"""Randomness as a pure function of (seed, step): seeds, generators, the epoch sampler and the
per-process shard of a global batch. Resuming at step s therefore replays an uninterrupted run."""

from __future__ import annotations

import hashlib
from typing import Optional

import torch


def seed_for(*parts) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs and machines)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def rng(*parts, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed_for(*parts))


class EpochSampler:
    """Sample indices as a pure function of the step: epoch e uses permutation
    randperm(N, seed=(seed, e)); global batch position p maps to perm_{p // N}[p % N].
    Resuming at step s therefore sees exactly the batches an uninterrupted run would."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = torch.randperm(self.n, generator=rng(self.seed, "epoch", epoch))
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> torch.Tensor:
        pos = torch.arange(start, start + count)
        out = torch.empty(count, dtype=torch.long)
        for e in pos.div(self.n, rounding_mode="floor").unique().tolist():
            m = pos.div(self.n, rounding_mode="floor") == e
            out[m] = self._perm(e)[pos[m] % self.n]
        return out


def shard(x: Optional[torch.Tensor], rank: int, num_processes: int):
    """This process's contiguous slice of a global-batch tensor."""
    if x is None:
        return None
    n = x.shape[0] // num_processes
    return x[rank * n:(rank + 1) * n]
