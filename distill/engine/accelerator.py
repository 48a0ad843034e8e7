"""Pieces every trainer shares: the accelerator, deterministic batches and randomness, the
global/micro batch arithmetic, and the progress bar."""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Optional

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

from ..errors import DistillError, RecipeError


def make_accelerator(train_cfg, run_dir) -> Accelerator:
    """Accelerator with TensorBoard under `<run>/logs` when tensorboard is installed."""
    try:
        import tensorboard  # noqa: F401

        log_with = "tensorboard"
    except ImportError:
        log_with = None
    accelerator = Accelerator(
        mixed_precision=train_cfg.mixed_precision,
        gradient_accumulation_steps=train_cfg.gradient_accumulation_steps,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != accelerator.num_processes:  # P independent copies would write into one run folder
        raise DistillError(f"launched {world} processes but accelerate formed {accelerator.num_processes} (on CPU "
                           "launch with `ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m distill.cli run ...`)")
    return accelerator


@contextlib.contextmanager
def whole_fsdp_unit(accelerator):
    """Under FSDP, `prepare` inside shards a model as one unit: the configured auto-wrap policy names
    the student's layer classes (recipes/accelerate/fsdp.yaml), which e.g. discriminator heads lack."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    saved = plugin.auto_wrap_policy if plugin is not None else None
    if plugin is not None:
        plugin.auto_wrap_policy = None
    try:
        yield
    finally:
        if plugin is not None:
            plugin.auto_wrap_policy = saved


def make_ema(parameters, train_cfg, **kw):
    """diffusers' EMAModel with the recipe's decay and warm-up (`train.ema_decay`, `train.ema_power`)."""
    from diffusers.training_utils import EMAModel

    p = train_cfg.ema_power
    if p is not None and not 0 < p <= 1:
        raise RecipeError(f"train.ema_power: must be in (0, 1], got {p}")
    warm = {} if p is None else {"use_ema_warmup": True, "inv_gamma": 1.0, "power": p}
    return EMAModel(parameters, decay=train_cfg.ema_decay, **warm, **kw)


def make_lr_scheduler(optimizer, train_cfg):
    """`train.lr_scheduler`: "wsd" here, any other name from diffusers' get_scheduler."""
    from diffusers.optimization import get_scheduler

    tc = train_cfg
    if tc.lr_scheduler != "wsd":
        return get_scheduler(tc.lr_scheduler, optimizer, num_warmup_steps=tc.lr_warmup_steps,
                             num_training_steps=tc.max_steps)
    if not 0 < tc.lr_decay_fraction <= 1:
        raise RecipeError(f"train.lr_decay_fraction: must be in (0, 1], got {tc.lr_decay_fraction}")
    T, W = tc.max_steps, tc.lr_warmup_steps
    D = min(max(W, round(T * (1 - tc.lr_decay_fraction))), T - 1)  # first step of the decay

    def factor(s):  # s: optimizer steps taken so far
        return min(1.0, s / W) if s < W else (1.0 if s < D else max(0.0, (T - s) / (T - D)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def micro_batch_size(global_batch: int, accum: int, num_processes: int) -> int:
    """Per-process micro batch: global = micro * accumulation * processes."""
    div = accum * num_processes
    if global_batch % div:
        raise RecipeError(
            f"train.batch_size={global_batch} must be divisible by gradient_accumulation_steps x processes = {div}"
        )
    return global_batch // div


def seed_for(*parts) -> int:
    """A 63-bit seed from any tuple of ints/strings (stable across runs and machines)."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def generator(*parts, device="cpu") -> torch.Generator:
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
            self._cache[epoch] = torch.randperm(self.n, generator=generator(self.seed, "epoch", epoch))
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


def progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, dynamic_ncols=True)
