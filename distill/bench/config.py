"""`BenchConfig`: what `distill bench latency` times (models, batch sizes, step counts) and how
(device, dtype, warm-up, repeats). Checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..errors import DistillError
from .timing import device_type

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class BenchConfig:
    teacher: Optional[str] = None  # pipeline folder
    student: Optional[str] = None  # pipeline folder
    generators: list[str] = field(default_factory=list)  # [NAME=]PATH | [NAME=]py:module:factory
    gans: list[str] = field(default_factory=list)  # [NAME=]PATH of exported GAN generator folders (task: gan, any kind)
    generator_input: Optional[list[int]] = None  # C H W of a generator's input (default: its `input_shape`, else 3 256 256)
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 64])
    teacher_steps: list[int] = field(default_factory=lambda: [50, 25, 8, 4, 2, 1])
    student_steps: list[int] = field(default_factory=lambda: [1, 2, 4])
    guidance: float = 2.0  # the teacher is timed at guidance 1 (off) and at this scale
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    warmup: int = 5
    repeats: int = 20
    profile_repeats: int = 3  # instrumented calls for the component split
    budget_s: float = 0.0  # > 0: stop timed calls of a configuration past this many seconds (>= 3 calls)
    threads: int = 1
    seed: int = 0
    pair_headline: bool = True  # time the teacher-over-student headline ratio in alternation too

    def validate(self) -> None:
        if not (self.teacher or self.student or self.generators or self.gans):
            raise DistillError("nothing to time: give --teacher, --student, --gan and/or --generator")
        if self.dtype not in DTYPES:
            raise DistillError(f"unknown --dtype '{self.dtype}' (choose from {', '.join(DTYPES)})")
        if device_type(self.device) not in ("cpu", "cuda"):
            raise DistillError(f"unknown --device '{self.device}' (cpu or cuda)")
        if device_type(self.device) == "cuda" and not torch.cuda.is_available():
            raise DistillError("--device cuda: no CUDA device is available")
        for name, vals in [("--batch-sizes", self.batch_sizes), ("--teacher-steps", self.teacher_steps),
                           ("--student-steps", self.student_steps)]:
            if not vals or any(v < 1 for v in vals):
                raise DistillError(f"{name} must be positive integers")
        if self.warmup < 1 or self.repeats < 1 or self.profile_repeats < 0:
            raise DistillError("--warmup and --repeats must be >= 1")
        if self.threads < 1:
            raise DistillError("--threads must be >= 1")
