"""What the one distillation loop needs to know about where the student works: the `DistillationSpace` protocol.

Two spaces declare it: the pixel space of class-conditional UNet/DiT teachers (distill.distillation.pixel.PixelSpace)
and the latent space of Stable Diffusion, SDXL, SD3 and Flux teachers (distill.sd.space.LatentSpace). A new teacher
family with its own data, conditioning or codec is a class declaring this protocol and a task whose run function
calls run_distill(recipe, YourSpace(recipe)) (docs/design.md).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Optional, Protocol

import torch


class DistillationSpace(Protocol):
    tag: str  # names the random stream of every draw
    label: str  # the progress bar's name
    teacher: Any  # the frozen teacher as a Denoiser, set by `load`
    data: Any  # the training set (len(data) samples), set by `load`
    head_classes: Optional[int]  # classes the discriminator heads project (None: unconditional heads)
    head_cond_dim: Optional[int]  # width of a continuous head conditioning (text), or None

    def check_launch(self, accelerator) -> None:
        """Refuse a launch (processes, FSDP) the space cannot run, before anything is built."""

    def load(self, engine) -> None:
        """Load the teacher and the data; a bad teacher or data set is a one-line error."""

    def student_timesteps(self, ts: list) -> torch.Tensor:
        """The recipe's student timesteps, checked against the teacher's schedule: (K,)."""

    def make_student(self) -> tuple[torch.nn.Module, list]:
        """(the student network, initialised from the teacher; its trainable parameters)."""

    def make_fake_score(self) -> torch.nn.Module:
        """DMD2's fake score network, the teacher's architecture and weights."""

    def student_weights(self, net: torch.nn.Module) -> torch.nn.Module:
        """The module whose state the checkpoints hold for the student (the network, or its adapters)."""

    def backbone(self, fake_score: Optional[torch.nn.Module]) -> torch.nn.Module:
        """The discriminator's feature backbone (distill.discriminator)."""

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """(x0 (n, C, H, W), conditioning) of the global batch's samples `idx`."""

    def shard_cond(self, cond, rank: int, P: int, device) -> Any:
        """This process's shard of a global batch's conditioning, on its device."""

    @staticmethod
    def cat_cond(a, b) -> Any:
        """Two conditionings batched as one: [a; b]."""

    def discriminate(self, disc, x, cond, t_d, noise, u, **kw):
        """The discriminator's logits (and features) for samples x: the space's head conditioning and precision."""

    def teacher_mode(self) -> AbstractContextManager:
        """The context in which the shared network is the teacher (LoRA adapters off), or a null context."""

    def regression_pair(self, fake: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair the regression term compares (latents, or both decoded to pixels)."""

    def monitor(self, student_net: torch.nn.Module, step: int, run_dir: Path) -> Optional[dict]:
        """The periodic check of the EMA student (sample grid, coverage): a metrics row or None."""

    def gather_student(self, accelerator, raw_student: torch.nn.Module, prepared: torch.nn.Module):
        """The whole student for export on the main process (FSDP gathers its shards)."""

    def export(self, student_net: torch.nn.Module, folder: Path) -> None:
        """Save the student as a plain diffusers pipeline in `folder`."""

    def report(self, run_dir: Path) -> None:
        """Evaluate the exported student and write run_dir/report.md."""
