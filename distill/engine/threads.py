"""Intra-op CPU threads chosen, not inherited (`train.num_threads`, `--threads`): "auto" or a count.

"auto" gives each process min(the cores it may use / the processes on this node, the cores not busy
with other work / the processes on this node), and one thread for a small network. PyTorch's default is
every core: for the toolkit's small networks a second thread makes a step slower, and a thread team
that shares its cores with another job stalls at every parallel region (16 s a step instead of 0.6 s for
the quickstart beside one single-threaded job). Measurements: benchmarks/threads.py,
benchmarks/results/threads.md.
"""

from __future__ import annotations

import os
import time
from typing import Optional, Union

import torch

from ..errors import DistillError
from .messages import get_logger

logger = get_logger(__name__)

# parameters x pixels of one image below which a network counts as small: one thread per process. The
# quickstart's networks (0.64 M parameters at 16 px: 0.16e9) stepped slower on two threads than on one on a quiet
# 2-core AVX2 laptop (12 steps in 21-22 s against 12-14 s) and 1.5x faster on a quiet 2-core AVX512 server, where the
# same two threads beside one busy thread are 2.5x slower than one (benchmarks/results/threads.md): for a small
# network the gain is small or negative and the collapse large. The CIFAR-10 teacher (2.5 M at 32 px: 2.6e9) is
# above. Sizes in between are not measured: the bound is a rule, not a fit.
SMALL_NETWORK_WORK = 1e9


def allowed_cores() -> int:
    """Cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def running_now(samples: int = 5, interval: float = 0.02, stat: str = "/proc/stat") -> Optional[int]:
    """Threads running on the machine right now besides the caller: the median of `samples` readings of the
    kernel's procs_running (Linux /proc/stat) minus one for the reading thread; None where there is no such file."""
    readings = []
    for i in range(samples):
        try:
            with open(stat) as f:
                line = next((ln for ln in f if ln.startswith("procs_running")), None)
        except OSError:
            return None
        if line is None:
            return None
        readings.append(int(line.split()[1]))
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, sorted(readings)[len(readings) // 2] - 1)


def busy_cores() -> int:
    """Cores busy with other work: the 1-minute load average of the machine, rounded, or fewer where the threads
    running right now say so (the load average decays over minutes after a job ends); 0 where unknown."""
    try:
        load = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):
        return 0
    now = running_now() if load > 0 else None  # a quiet machine needs no second look
    return load if now is None else min(load, now)


def local_processes() -> int:
    """Training processes on this node (accelerate/torchrun's LOCAL_WORLD_SIZE; 1 for a single process)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def network_work(models) -> Optional[float]:
    """Parameters x pixels per image of the largest image network among `models` (nn.Modules whose config has
    sample_size), a proxy for a step's compute per image; None where there is none."""
    works = []
    for m in models:
        size = getattr(getattr(m, "config", None), "sample_size", None)
        if isinstance(m, torch.nn.Module) and isinstance(size, int):
            works.append(sum(p.numel() for p in m.parameters()) * size * size)
    return max(works) if works else None


def auto_threads(work: Optional[float], processes: int = 1, cores: Optional[int] = None,
                 busy: Optional[int] = None, total: Optional[int] = None) -> tuple[int, str]:
    """(threads, why) per process for "auto"."""
    cores = allowed_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    total = (os.cpu_count() or cores) if total is None else total
    free = max(1, min(cores, total - busy))  # the load average counts the whole machine
    n = max(1, min(cores, free) // processes)
    why = f"{cores} usable cores, {busy} busy, {processes} process{'es' if processes > 1 else ''}"
    if work is not None and work < SMALL_NETWORK_WORK and n > 1:
        return 1, f"{why}; a small network ({work / 1e9:.2f}e9 parameters x pixels < {SMALL_NETWORK_WORK:.0e})"
    return n, why


def choose_threads(setting: Union[str, int], work: Optional[float] = None, processes: int = 1,
                   key: str = "train.num_threads") -> tuple[int, str]:
    """(threads, why) for `setting`: "auto", or a count >= 1 (used as given)."""
    if setting == "auto" or setting is None:
        n, why = auto_threads(work, processes)
        return n, f"auto: {why}"
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise DistillError(f"{key}: expects 'auto' or an integer >= 1, got {setting!r}")
    return setting, f"{key}={setting}"


def use_threads(setting: Union[str, int], models=(), processes: Optional[int] = None, key: str = "train.num_threads",
                say=logger.info) -> int:
    """Choose and apply (torch.set_num_threads) the intra-op threads; one line through `say`."""
    n, why = choose_threads(setting, network_work(models), processes or local_processes(), key)
    torch.set_num_threads(n)
    if say is not None:
        say(f"threads: {n} ({why})")
    return n

