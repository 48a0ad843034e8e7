"""The toolkit's messages: Python `logging` through accelerate's multi-process logger.

Every module logs through `get_logger(__name__)`: accelerate's `MultiProcessAdapter`, so a line is
written by the main process only unless `main_process_only=False` is passed. The library logger
`distill` gets one handler (as diffusers and transformers configure theirs): bare message lines on the
current `sys.stdout`, written through `tqdm.write` so a running progress bar is not torn, level INFO
unless the application set one. `set_verbosity` (the CLI's `--quiet` / `--verbose`) changes the level:
WARNING keeps warnings only, DEBUG adds the detail lines."""

from __future__ import annotations

import logging
import os
import sys

from accelerate.logging import MultiProcessAdapter, get_logger as accelerate_logger
from accelerate.state import PartialState

LIBRARY = "distill"


class _CurrentStdout(logging.Handler):
    """Writes each record to the `sys.stdout` of the moment (pytest's capture, a redirect), via tqdm."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # noqa: BLE001 - logging's own convention: a broken stream never raises
            self.handleError(record)


def _library_logger() -> logging.Logger:
    lib = logging.getLogger(LIBRARY)
    if not any(isinstance(h, _CurrentStdout) for h in lib.handlers):
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        lib.addHandler(handler)
        lib.propagate = False  # one copy of each line, also where the application configured the root logger
        if lib.level == logging.NOTSET:
            lib.setLevel(logging.INFO)
    return lib


class MainProcessLogger(MultiProcessAdapter):
    """accelerate's adapter, usable before the `Accelerator` exists (the main process is then RANK 0 of
    the launcher's environment) and without its `[RANK i]` prefix when a single process runs."""

    def process(self, msg, kwargs):
        if PartialState._shared_state and PartialState().num_processes > 1:
            return super().process(msg, kwargs)
        return msg, kwargs

    def log(self, level, msg, *args, **kwargs):
        if PartialState._shared_state:
            return super().log(level, msg, *args, **kwargs)
        kwargs.pop("in_order", None)
        if kwargs.pop("main_process_only", True) and os.environ.get("RANK", "0") != "0":
            return None
        if self.isEnabledFor(level):
            self.logger.log(level, msg, *args, **kwargs)
        return None


def get_logger(name: str) -> MainProcessLogger:
    """The logger of module `name` (under `distill`), main process only by default."""
    _library_logger()
    return MainProcessLogger(accelerate_logger(name).logger, {})


def set_verbosity(level: int | str) -> None:
    """The level of every `distill` logger: logging.INFO (default), WARNING (quiet), DEBUG (verbose)."""
    _library_logger().setLevel(level.upper() if isinstance(level, str) else level)


def verbosity() -> int:
    return _library_logger().getEffectiveLevel()
