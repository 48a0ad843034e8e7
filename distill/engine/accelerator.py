"""The accelerator, FSDP wrapping and the global/micro batch arithmetic."""

from __future__ import annotations

import contextlib
import importlib.util
import os

from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

from ..errors import DistillError, RecipeError
from .hardware import choose_mixed_precision
from .messages import get_logger

logger = get_logger(__name__)


def trackers(report_to: str):
    """`train.report_to` -> accelerate's `log_with`: None for "none" and for "tensorboard" where it is not
    installed (the default must not need it); "all" as accelerate reads it (every installed tracker); any other
    name as given, once its package is found (else a one-line RecipeError naming the key)."""
    if report_to == "none":
        return None
    if report_to == "all":
        return "all"
    if importlib.util.find_spec(report_to) is None:
        if report_to == "tensorboard":
            return None
        raise RecipeError(f"train.report_to={report_to}: the {report_to} package is not installed "
                          f"(pip install {report_to}); use tensorboard or none")
    return report_to


def make_accelerator(train_cfg, run_dir) -> Accelerator:
    """Accelerator logging to the tracker `train_cfg.report_to` names, under `<run>/logs` (`trackers`).

    `train_cfg.mixed_precision` is resolved here (`hardware.choose_mixed_precision`): unset, accelerate's
    setting (`accelerate launch --mixed_precision`, its config file, ACCELERATE_MIXED_PRECISION), else "auto";
    "auto" is bf16 where the device runs it natively, fp32 elsewhere. The recipe keeps what was asked
    (recipe.yaml), `accelerator.mixed_precision` and the step-0 metrics row say what was used."""
    report_to = getattr(train_cfg, "report_to", "tensorboard")
    log_with = trackers(report_to)
    logger.debug(f"tracker: {log_with or 'none'} (train.report_to={report_to})")
    accelerator = Accelerator(
        mixed_precision=choose_mixed_precision(
            train_cfg.mixed_precision, notice=logger.info),
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


def micro_batch_size(global_batch: int, accum: int, num_processes: int) -> int:
    """Per-process micro batch: global = micro * accumulation * processes."""
    div = accum * num_processes
    if global_batch % div:
        raise RecipeError(
            f"train.batch_size={global_batch} must be divisible by gradient_accumulation_steps x processes = {div}"
        )
    return global_batch // div
