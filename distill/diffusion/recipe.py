"""`task: teacher`: train a pixel diffusion teacher (diffusers UNet2DModel + DDPM noise schedule)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import DataConfig, EvalConfig, RecipeBase, TrainConfig, ranged


@dataclass
class TeacherConfig:
    kind: str = "unet2d"  # registry key in distill.diffusion.teachers.TEACHERS
    pretrained: Optional[str] = None  # exported pipeline folder or Hub id to start from
    block_out_channels: list[int] = ranged(factory=lambda: [16, 32, 64], ge=1, nonempty=True)  # UNet widths per level
    layers_per_block: int = ranged(1, ge=1)  # ResNet blocks per level
    attention: bool = False  # self-attention at the lowest resolution
    norm_num_groups: int = ranged(8, ge=1)  # GroupNorm groups (divides every width)
    class_conditional: bool = True  # class embedding + a null label, when the data has labels
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "v_prediction"  # the Denoiser parameterisation
    beta_schedule: str = "squaredcos_cap_v2"  # diffusers DDPMScheduler schedule (cosine)
    num_train_timesteps: int = ranged(1000, ge=2)  # T of the discrete schedule
    cond_drop_prob: float = ranged(0.1, ge=0, le=1)  # label dropout for classifier-free guidance


@dataclass
class TeacherRecipe(RecipeBase):
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
