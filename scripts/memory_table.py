"""Memory per GPU for distilling SD 1.5 and SDXL with `task: sd-distill`, computed from parameter,
gradient and optimizer-state sizes (no GPU needed; nothing is allocated: the real configs are
instantiated under accelerate.init_empty_weights, LoRA layers included).

    python scripts/memory_table.py > /tmp/table.md     # the tables of docs/memory.md

Bytes per trainable parameter (AdamW: two fp32 moments):
  1 GPU / DDP, fp32 or accelerate bf16 autocast (fp32 master weights): w 4 + g 4 + Adam 8 = 16
  FSDP FULL_SHARD over P GPUs (fp32 storage, bf16 compute):            16 / P
  DeepSpeed ZeRO-2 over P GPUs, bf16:   bf16 weights 2 (replicated) + (fp32 master 4 + Adam 8 + bf16 grads 2) / P
EMA (train.ema_decay > 0): an fp32 copy of the trainable parameters on every GPU (4 bytes each).
Frozen modules (teacher UNet for full fine-tuning (with LoRA it IS the student's base), VAE, text
encoders) are held in the compute dtype on every GPU (they are not sharded by the recipes' configs).
Activations are NOT included (they depend on batch and resolution; gradient checkpointing cuts them).
"""

from __future__ import annotations

import sys

import torch
from accelerate import init_empty_weights

sys.path.insert(0, ".")
from distill.sd.config import DEFAULT_LORA_TARGETS  # noqa: E402

GiB = 1024 ** 3

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
           block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu")
CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                 num_attention_heads=20, max_position_embeddings=77, projection_dim=1280, hidden_act="gelu")


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def count(model: str, lora_rank: int) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from distill.discriminator.heads import PatchHead
    from distill.sd.lora import add_lora

    with init_empty_weights():
        unet = UNet2DConditionModel(**(SD15_UNET if model == "SD 1.5" else SDXL_UNET))
        vae = AutoencoderKL(**VAE)
        te = [CLIPTextModel(CLIPTextConfig(**CLIP_L))]
        if model == "SDXL":
            te.append(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG)))
        n_unet = n_params(unet)
        n_lora = add_lora(unet, lora_rank, lora_rank, DEFAULT_LORA_TARGETS) if lora_rank else 0
        boc = list(unet.config.block_out_channels)
        pooled = 768 if model == "SD 1.5" else 1280
        heads = sum(n_params(PatchHead(c, 64, None, False, pooled)) for c in boc + boc[-1:])
    return dict(unet=n_unet, lora=n_lora, vae=n_params(vae), te=sum(n_params(t) for t in te), heads=heads)


MODES = [  # name, compute bytes of frozen weights, trainable bytes per parameter f(P)
    ("1 GPU, fp32", 4, lambda: 16.0),
    ("1 GPU, bf16 mixed", 2, lambda: 16.0),
    ("8 GPUs DDP, bf16 mixed", 2, lambda: 16.0),
    ("8 GPUs FSDP full shard, bf16", 2, lambda: 16.0 / 8),
    ("8 GPUs ZeRO-2, bf16", 2, lambda: 2 + (4 + 8 + 2) / 8),
]


def table(model: str, lora_rank: int, ema: bool) -> list[str]:
    c = count(model, lora_rank)
    trainable = c["lora"] if lora_rank else c["unet"]
    frozen = c["vae"] + c["te"] + c["unet"]  # full FT: the teacher UNet; LoRA: the shared base
    what = f"LoRA rank {lora_rank}" if lora_rank else "full fine-tuning"
    rows = [f"**{model}, {what}**: trainable {trainable / 1e6:,.1f} M (+ heads {c['heads'] / 1e6:.2f} M); "
            f"UNet {c['unet'] / 1e6:,.1f} M, VAE {c['vae'] / 1e6:.1f} M, text encoders {c['te'] / 1e6:,.1f} M", "",
            "| mode | student w+g+Adam | EMA | frozen (teacher UNet, VAE, text enc.) | total per GPU (no activations) |",
            "|---|---:|---:|---:|---:|"]
    for name, fb, tb in MODES:
        train_b = trainable * tb() + c["heads"] * 16  # heads: small, never sharded here
        ema_b = trainable * 4 if ema else 0
        frozen_b = frozen * fb  # LoRA: the one UNet (teacher = student's base); full: the separate teacher
        tot = train_b + ema_b + frozen_b
        rows.append(f"| {name} | {train_b / GiB:.2f} GiB | {ema_b / GiB:.2f} GiB | {frozen_b / GiB:.2f} GiB | "
                    f"**{tot / GiB:.2f} GiB** |")
    return rows + [""]


if __name__ == "__main__":
    out = []
    for model in ["SD 1.5", "SDXL"]:
        out += table(model, 0, ema=True)
        out += table(model, 64, ema=False)
    print("\n".join(out))
