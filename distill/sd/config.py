"""`task: sd-distill`: Stable Diffusion teachers (SD 1.x/2.x, SDXL, SD3, Flux) -> 1-4 step latent
students (SD-Turbo / SD3-Turbo style).

The distillation sections are the pixel task's (`distill:`, `discriminator:`, `dmd:`,
`experimental:`, see distill.distillation.recipe); `data:` holds the real images (resolution = the
pixel resolution); `sd:` what is specific to latent text-to-image students.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..config import DataConfig, ranged
from ..distillation.recipe import DistillationRecipe
from ..errors import RecipeError

# attention projections, feed-forward and ResNet convolutions of UNet2DConditionModel (the transformers'
# default is distill.sd.families.TRANSFORMER_LORA_TARGETS)
DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                        "conv1", "conv2", "conv_shortcut", "time_emb_proj"]


@dataclass
class SDConfig:
    # --- teacher (distill.teacher holds the Hub id or folder of the teacher pipeline)
    build_tiny: bool = False  # build a tiny pipeline from configs into distill.teacher when missing
    tiny_kind: Literal["sd", "sdxl", "sd3", "flux", "flux-schnell"] = "sd"  # which tiny pipeline build_tiny builds
    revision: Optional[str] = None  # Hub revision of the teacher
    variant: Optional[str] = None  # Hub weight variant, e.g. "fp16"
    taesd: Optional[str] = None  # AutoencoderTiny (e.g. madebyollin/taesd, taesdxl) for fast decoding
    # --- student
    lora_rank: int = ranged(0, ge=0)  # 0: full fine-tuning; > 0: LoRA adapters (peft) on the student network
    lora_alpha: Optional[float] = ranged(None, gt=0)  # None: = lora_rank
    lora_dropout: float = ranged(0.0, ge=0, lt=1)
    # module names (or name suffixes) that get adapters; empty: the teacher's default (UNet: attention, feed-forward
    # and ResNet layers; SD3 / Flux: the attention projections of both streams, to_q/k/v/out and add_q/k/v_proj/to_add_out)
    lora_target_modules: list[str] = field(default_factory=list)
    gradient_checkpointing: bool = False
    export_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # every module of the exported pipeline
    # --- losses and discriminator
    loss_space: Literal["latent", "pixel"] = "latent"  # distillation loss in latents or through the VAE decoder
    disc_text_cond: bool = True  # project the pooled text embedding into the heads' logits
    disc_noise_cond: bool = False  # also the discriminator's noise level t_d (Fourier features), as LADD's heads
    # --- data: captions for real images, or prompts alone (then the inputs are synthetic)
    input: Literal["real", "synthetic"] = "real"  # ADD: noised real latents; LADD: cached teacher samples
    prompts: Optional[str] = None  # text file, one prompt a line (synthetic input or extra prompts)
    caption_column: Optional[str] = None  # dataset column / imagefolder metadata column; None: "text"/"caption"
    caption_template: str = "a photo of the digit {label}"  # labelled sets without captions
    synthetic_count: int = ranged(64, ge=1)  # teacher samples to generate (LADD); prompts are cycled
    synthetic_steps: int = ranged(25, ge=1)
    synthetic_cache: Optional[str] = None  # folder for the cached teacher latents; None: <run>/cache
    # --- samples and report
    sample_prompts: list[str] = field(default_factory=list)  # empty: the first distinct captions
    teacher_sample_steps: int = ranged(25, ge=1)


@dataclass
class SDDistillRecipe(DistillationRecipe):
    data: DataConfig = field(default_factory=DataConfig)
    sd: SDConfig = field(default_factory=SDConfig)

    def validate(self, where: str) -> None:
        super().validate(where)
        if self.discriminator.backbone == "fake_score":
            raise RecipeError(f"{where}: key 'discriminator.backbone': fake_score is implemented for pixel students only "
                              "(task: distill); latent students use teacher or timm:<name>")
