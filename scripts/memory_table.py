"""Memory per GPU for distilling SD 1.5, SDXL, SD3-medium and FLUX.1-dev with `task: sd-distill`, computed
from parameter, gradient and optimizer-state sizes (no GPU needed; nothing is allocated: the real configs
are instantiated under accelerate.init_empty_weights, LoRA layers included). The configs are written out
below from the published config.json files of the Hub repositories (the Hub is not read).

    python scripts/memory_table.py > /tmp/table.md     # the tables of docs/memory.md

Bytes per trainable parameter (AdamW: two fp32 moments):
  1 GPU / DDP, fp32 or accelerate bf16 autocast (fp32 master weights): w 4 + g 4 + Adam 8 = 16
  FSDP FULL_SHARD over P GPUs (fp32 storage, bf16 compute):            16 / P
  DeepSpeed ZeRO-2 over P GPUs, bf16:   bf16 weights 2 (replicated) + (fp32 master 4 + Adam 8 + bf16 grads 2) / P
EMA (train.ema_decay > 0): an fp32 copy of the trainable parameters on every GPU (4 bytes each).
Frozen modules (teacher network for full fine-tuning (with LoRA it IS the student's base), VAE, text
encoders) are held in the compute dtype on every GPU (they are not sharded by the recipes' configs).
Activations are NOT included (they depend on batch and resolution; gradient checkpointing cuts them).
"""

from __future__ import annotations

import sys

import torch
from accelerate import init_empty_weights

sys.path.insert(0, ".")
from distill.sd.config import DEFAULT_LORA_TARGETS  # noqa: E402
from distill.sd.families import TRANSFORMER_LORA_TARGETS  # noqa: E402

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
# stabilityai/stable-diffusion-3-medium-diffusers: transformer/, vae/ (text encoders: CLIP_L, CLIP_BIGG, T5_XXL)
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                  num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                  pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
VAE16 = dict(VAE, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)  # SD3 / Flux VAEs
# black-forest-labs/FLUX.1-dev: transformer/ (text encoders: CLIP_L without projection, T5_XXL)
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=(16, 56, 56))
# google/t5-v1_1-xxl encoder, as text_encoder_3 (SD3) / text_encoder_2 (Flux)
T5_XXL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
              relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
              tie_word_embeddings=False)


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def _unet(model):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    net = UNet2DConditionModel(**(SD15_UNET if model == "SD 1.5" else SDXL_UNET))
    te = [CLIPTextModel(CLIPTextConfig(**CLIP_L))]
    if model == "SDXL":
        te.append(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG)))
    boc = list(net.config.block_out_channels)
    pooled = 768 if model == "SD 1.5" else 1280
    return net, AutoencoderKL(**VAE), te, boc + boc[-1:], pooled, DEFAULT_LORA_TARGETS


def _t5_xxl():
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(**T5_XXL))
    t5.encoder.embed_tokens = t5.shared  # tied in a loaded model; init_empty_weights leaves two copies
    return t5


def _sd3(model):
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    net = SD3Transformer2DModel(**SD3_MEDIUM)
    te = [CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_L)), CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIGG)),
          _t5_xxl()]
    width = SD3_MEDIUM["num_attention_heads"] * SD3_MEDIUM["attention_head_dim"]
    # LADD heads on every block's tokens, conditioned on the pooled text (2048) and the noise level (16)
    return net, AutoencoderKL(**VAE16), te, [width] * SD3_MEDIUM["num_layers"], 2048 + 16, TRANSFORMER_LORA_TARGETS


def _flux(model):
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    net = FluxTransformer2DModel(**FLUX_DEV)
    te = [CLIPTextModel(CLIPTextConfig(**CLIP_L)), _t5_xxl()]
    width = FLUX_DEV["num_attention_heads"] * FLUX_DEV["attention_head_dim"]
    blocks = len(range(0, FLUX_DEV["num_layers"] + FLUX_DEV["num_single_layers"], 3))  # recipes/flux-schnell.yaml
    return net, AutoencoderKL(**VAE16), te, [width] * blocks, 768 + 16, TRANSFORMER_LORA_TARGETS


# model -> builder: (network, VAE, text encoders, head input channels, head conditioning dim, LoRA targets)
MODELS = {"SD 1.5": _unet, "SDXL": _unet, "SD3-medium": _sd3, "FLUX.1-dev": _flux}


def count(model: str, lora_rank: int) -> dict:
    from distill.discriminator.heads import PatchHead
    from distill.sd.lora import add_lora

    with init_empty_weights():
        net, vae, te, head_channels, cond_dim, targets = MODELS[model](model)
        n_net = n_params(net)
        n_lora = add_lora(net, lora_rank, lora_rank, targets) if lora_rank else 0
        heads = sum(n_params(PatchHead(c, 64, None, False, cond_dim)) for c in head_channels)
    return dict(unet=n_net, lora=n_lora, vae=n_params(vae), te=sum(n_params(t) for t in te), heads=heads)


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
            f"{'UNet' if model in ('SD 1.5', 'SDXL') else 'transformer'} {c['unet'] / 1e6:,.1f} M, VAE {c['vae'] / 1e6:.1f} M, text encoders {c['te'] / 1e6:,.1f} M", "",
            "| mode | student w+g+Adam | EMA | frozen (teacher network, VAE, text enc.) | total per GPU (no activations) |",
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
    for model in MODELS:
        out += table(model, 0, ema=model in ("SD 1.5", "SDXL"))  # the SD3 / Flux recipes run without EMA
        out += table(model, 64, ema=False)
    print("\n".join(out))
