"""Tiny Stable Diffusion 3 and Flux pipelines built locally from configs (no download), for CPU
runs and tests: the real classes (SD3Transformer2DModel / FluxTransformer2DModel, a 16-channel
AutoencoderKL with the shift and scaling factors of the real VAEs, CLIP text encoders, a T5
encoder) at a few thousand parameters each, so every code path of the latent flow distillation
runs on them, and `StableDiffusion3Pipeline.from_pretrained(folder)` /
`FluxPipeline.from_pretrained(folder)` load them back.

Tokenizers are written locally: the CLIP ones as distill.sd.tiny does (byte-level BPE, no merges),
the T5 one a unigram model over the printable ASCII characters (`tokenizer.json`), loaded by
T5TokenizerFast.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tiny import build_tiny_sd, build_tiny_sdxl, tiny_text_encoder, write_tokenizer

# the VAE latent statistics of the released models (vae/config.json of each)
SD3_VAE_FACTORS = dict(scaling_factor=1.5305, shift_factor=0.0609)
FLUX_VAE_FACTORS = dict(scaling_factor=0.3611, shift_factor=0.1159)


def write_t5_tokenizer(folder: str | Path, max_length: int = 512):
    """A T5TokenizerFast (unigram over printable ASCII, `</s>` appended, `<pad>` = 0) saved in `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(chr(c), -3.0) for c in range(33, 127)]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"model_max_length": max_length, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
         "extra_ids": 0, "tokenizer_class": "T5Tokenizer"}))
    return T5TokenizerFast.from_pretrained(str(folder))


def tiny_t5(vocab_size: int, dim: int = 32, seed: int = 0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab_size, d_model=dim, d_kv=8, d_ff=2 * dim, num_layers=2, num_heads=2,
                   relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0,
                   eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(cfg).eval()


def tiny_vae16(factors: dict, seed: int = 0):
    """A 16-channel AutoencoderKL (down by 2), no quant convolutions, as the SD3 / Flux VAEs."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                         latent_channels=16, norm_num_groups=8, sample_size=32, use_quant_conv=False,
                         use_post_quant_conv=False, **factors)


def build_tiny_sd3(folder: str | Path, resolution: int = 16, seed: int = 0, overwrite: bool = False) -> Path:
    """A tiny StableDiffusion3Pipeline: CLIP-L/G stand-ins (16 + 16 dims, projections: pooled 32),
    a T5 encoder (32 dims = joint_attention_dim), a 2-block MMDiT with patch 2, shift 3 (SD3-medium's)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    tok, tok2 = write_tokenizer(folder / "tokenizer"), write_tokenizer(folder / "tokenizer_2")
    tok3 = write_t5_tokenizer(folder / "tokenizer_3")
    torch.manual_seed(seed)
    latent = resolution // 2
    transformer = SD3Transformer2DModel(sample_size=latent, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                        caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=latent)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=tiny_vae16(SD3_VAE_FACTORS, seed),
        text_encoder=tiny_text_encoder(len(tok), dim=16, projection=True, seed=seed), tokenizer=tok,
        text_encoder_2=tiny_text_encoder(len(tok2), dim=16, projection=True, seed=seed + 1), tokenizer_2=tok2,
        text_encoder_3=tiny_t5(len(tok3), seed=seed + 2), tokenizer_3=tok3)
    pipe.save_pretrained(str(folder))
    return folder


def build_tiny_flux(folder: str | Path, resolution: int = 16, seed: int = 0, overwrite: bool = False,
                    guidance_embeds: bool = True) -> Path:
    """A tiny FluxPipeline: a CLIP stand-in (pooled 16 dims), a T5 encoder (32 dims), one double- and one
    single-stream block over 2x2-packed latents (64 channels), rotary axes (4, 6, 6). guidance_embeds=True
    and Flux-dev's dynamic shifting by default; False: a Flux-schnell-like model (shift 1, no guidance input)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    tok, tok2 = write_tokenizer(folder / "tokenizer"), write_t5_tokenizer(folder / "tokenizer_2")
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=16, guidance_embeds=guidance_embeds, axes_dims_rope=(4, 6, 6))
    if guidance_embeds:  # FLUX.1-dev's scheduler_config.json
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                    base_image_seq_len=256, max_image_seq_len=4096)
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=tiny_vae16(FLUX_VAE_FACTORS, seed),
                        text_encoder=tiny_text_encoder(len(tok), dim=16, seed=seed), tokenizer=tok,
                        text_encoder_2=tiny_t5(len(tok2), seed=seed + 1), tokenizer_2=tok2)
    pipe.save_pretrained(str(folder))
    return folder


def _tiny_schnell(folder, resolution: int = 16, seed: int = 0, overwrite: bool = False) -> Path:
    return build_tiny_flux(folder, resolution, seed, overwrite, guidance_embeds=False)


# sd.tiny_kind -> builder(folder, resolution)
TINY_PIPELINES = {"sd": build_tiny_sd, "sdxl": build_tiny_sdxl, "sd3": build_tiny_sd3, "flux": build_tiny_flux,
                  "flux-schnell": _tiny_schnell}
