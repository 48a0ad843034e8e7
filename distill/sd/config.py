"""`sd:` recipe section: Stable Diffusion teachers -> one-step latent students (SD-Turbo style).

The ADD hyperparameters shared with the pixel-space loop stay in the `distill:` section (teacher,
student_timesteps, lambda_distill, distill_weighting, teacher_guidance, distill_t_*, adv_loss,
adv_weight, r1_gamma, backbone*, disc_t_*, head_channels, spectral_norm, augment, d_learning_rate,
d_steps, adam betas); the generic loop settings (steps, batch, optimizer, mixed_precision,
checkpoints, resume) in `train:`; the real images in `data:` (source, split, resolution = the
pixel resolution, image_key, label_key, limit). This section holds what is specific to latent
text-to-image students.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

# attention projections, feed-forward and ResNet convolutions of UNet2DConditionModel
DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                        "conv1", "conv2", "conv_shortcut", "time_emb_proj"]


@dataclass
class SDConfig:
    # --- teacher (distill.teacher holds the Hub id or folder of the teacher pipeline)
    build_tiny: bool = False  # build a tiny SD pipeline from configs into distill.teacher when missing
    tiny_kind: Literal["sd", "sdxl"] = "sd"
    revision: Optional[str] = None  # Hub revision of the teacher
    variant: Optional[str] = None  # Hub weight variant, e.g. "fp16"
    taesd: Optional[str] = None  # AutoencoderTiny (e.g. madebyollin/taesd, taesdxl) for fast decoding
    # --- student
    lora_rank: int = 0  # 0: full fine-tuning; > 0: LoRA adapters (peft) on the student UNet
    lora_alpha: Optional[float] = None  # None: = lora_rank
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    gradient_checkpointing: bool = False
    export_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # every module of the exported pipeline
    # --- losses and discriminator
    loss_space: Literal["latent", "pixel"] = "latent"  # distillation loss in latents or through the VAE decoder
    disc_text_cond: bool = True  # project the pooled text embedding into the heads' logits
    # --- data: captions for real images, or prompts alone (then the inputs are synthetic)
    input: Literal["real", "synthetic"] = "real"  # ADD: noised real latents; LADD: cached teacher samples
    prompts: Optional[str] = None  # text file, one prompt a line (synthetic input or extra prompts)
    caption_column: Optional[str] = None  # dataset column / imagefolder metadata column; None: "text"/"caption"
    caption_template: str = "a photo of the digit {label}"  # labelled sets without captions
    synthetic_count: int = 64  # teacher samples to generate (LADD); prompts are cycled
    synthetic_steps: int = 25
    synthetic_cache: Optional[str] = None  # folder for the cached teacher latents; None: <run>/cache
    # --- samples and report
    sample_prompts: list[str] = field(default_factory=list)  # empty: the first distinct captions
    teacher_sample_steps: int = 25
