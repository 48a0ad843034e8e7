"""`task: teacher`: train a pixel diffusion teacher (a diffusers UNet2DModel or DiTTransformer2DModel) with the
DDPM objective (epsilon / v / sample prediction) or rectified flow (velocity prediction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import DataConfig, EvalConfig, RecipeBase, TrainConfig, ranged
from ..errors import RecipeError
from .flow import SIGMA_DENSITIES


@dataclass
class TeacherConfig:
    kind: str = "unet2d"  # registry key in distill.diffusion.teachers.TEACHERS ("unet2d", "dit")
    pretrained: Optional[str] = None  # exported pipeline folder or Hub id to start from
    block_out_channels: list[int] = ranged(factory=lambda: [16, 32, 64], ge=1, nonempty=True)  # UNet widths per level
    layers_per_block: int = ranged(1, ge=1)  # ResNet blocks per level
    attention: bool = False  # self-attention at the lowest resolution
    norm_num_groups: int = ranged(8, ge=1)  # GroupNorm groups (divides every width)
    dit_depth: int = ranged(6, ge=1)  # DiT: transformer blocks
    dit_width: int = ranged(192, ge=8)  # DiT: token width (dit_heads x head size)
    dit_heads: int = ranged(3, ge=1)  # DiT: attention heads (divides dit_width)
    dit_patch_size: int = ranged(2, ge=1)  # DiT: patch side in pixels (divides data.resolution)
    class_conditional: bool = True  # class embedding + a null label, when the data has labels
    # the objective: a DDPM parameterisation, or "flow" (rectified flow, velocity v = eps - x0; SD3, Esser et al. 2024)
    prediction_type: Literal["epsilon", "v_prediction", "sample", "flow"] = "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"  # diffusers DDPMScheduler schedule (cosine); not used by flow
    num_train_timesteps: int = ranged(1000, ge=2)  # T: the discrete schedule's length; flow: t = sigma T
    # flow: density of the training sigma, a key of distill.diffusion.flow.SIGMA_DENSITIES (uniform | logit_normal)
    timestep_sampling: str = "uniform"
    logit_mean: float = 0.0  # logit_normal: sigma = sigmoid(logit_mean + logit_std n) (SD3, Sec. 3.1)
    logit_std: float = ranged(1.0, gt=0)
    flow_shift: float = ranged(1.0, gt=0)  # flow: sigma' = shift sigma / (1 + (shift - 1) sigma), training and sampling
    cond_drop_prob: float = ranged(0.1, ge=0, le=1)  # label dropout for classifier-free guidance


@dataclass
class TeacherRecipe(RecipeBase):
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, where: str) -> None:
        tc = self.teacher
        if tc.timestep_sampling not in SIGMA_DENSITIES:
            raise RecipeError(f"{where}: key 'teacher.timestep_sampling': unknown '{tc.timestep_sampling}' "
                              f"(choose from {', '.join(SIGMA_DENSITIES)})")
        if tc.timestep_sampling != "uniform" and tc.prediction_type != "flow":
            raise RecipeError(f"{where}: key 'teacher.timestep_sampling': {tc.timestep_sampling} is for "
                              f"prediction_type flow (the DDPM objectives draw integer t uniformly)")
        if tc.kind == "dit" and not tc.pretrained:
            if tc.dit_width % tc.dit_heads:
                raise RecipeError(f"{where}: key 'teacher.dit_width' ({tc.dit_width}) must be a multiple of "
                                  f"teacher.dit_heads ({tc.dit_heads})")
            if self.data.resolution % tc.dit_patch_size:
                raise RecipeError(f"{where}: key 'teacher.dit_patch_size' ({tc.dit_patch_size}) must divide "
                                  f"data.resolution ({self.data.resolution})")
