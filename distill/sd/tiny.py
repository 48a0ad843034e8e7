"""A tiny Stable Diffusion pipeline built locally from configs (no download): for CPU runs, CI
and tests. Same classes as the real models (UNet2DConditionModel, AutoencoderKL, CLIPTextModel,
CLIPTokenizer), so every code path of the SD distillation runs on it.

The tokenizer is a byte-level CLIP BPE with no merges: the vocabulary is the 256 byte symbols,
each also with CLIP's end-of-word suffix `</w>`, plus `<|startoftext|>` / `<|endoftext|>`.
`build_tiny_sd(folder)` writes `vocab.json` + `merges.txt`, builds the pipeline and saves it with
`save_pretrained`, so it loads back with plain `StableDiffusionPipeline.from_pretrained(folder)`.
`build_tiny_sdxl` does the same for StableDiffusionXLPipeline (two text encoders, pooled embeds,
add_time_ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def write_tokenizer(folder: str | Path, max_length: int = 32):
    """A CLIPTokenizer over bytes (514 tokens) saved in `folder`; returns the loaded tokenizer."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars] + [BOS, EOS])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    import inspect

    kw = dict(model_max_length=max_length, pad_token=EOS, bos_token=BOS, eos_token=EOS, unk_token=EOS)
    if "vocab" in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers 5: in-memory vocab
        tok = CLIPTokenizer(vocab=vocab, merges=[], **kw)
    else:  # transformers 4: file paths
        tok = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"), **kw)
    tok.save_pretrained(str(folder))
    return tok


def tiny_text_encoder(vocab_size: int, dim: int = 32, projection: bool = False, max_length: int = 32, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=max_length, projection_dim=dim,
                         bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32),
                         layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=32)


def tiny_unet(sample_size: int, cross_attention_dim: int = 32, xl: bool = False, pooled_dim: int = 16, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    kw = {}
    if xl:  # SDXL: text_time additional embeddings (pooled text embed + 6 time ids)
        kw = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=pooled_dim + 6 * 8)
    return UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=cross_attention_dim,
                                attention_head_dim=8, norm_num_groups=8, **kw)


def tiny_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def build_tiny_sd(folder: str | Path, resolution: int = 16, prediction_type: str = "epsilon", seed: int = 0,
                  overwrite: bool = False) -> Path:
    """Build and save a tiny StableDiffusionPipeline (latent size resolution / 2) in `folder`."""
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    tok = write_tokenizer(folder / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(len(tok), seed=seed), tokenizer=tok,
        unet=tiny_unet(resolution // 2, seed=seed), scheduler=tiny_scheduler(prediction_type),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return folder


def build_tiny_sdxl(folder: str | Path, resolution: int = 16, seed: int = 0, overwrite: bool = False) -> Path:
    """Build and save a tiny StableDiffusionXLPipeline: two text encoders (16 + 16 = 32 dims), the
    second with a projection giving the pooled embedding."""
    from diffusers import StableDiffusionXLPipeline

    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    tok = write_tokenizer(folder / "tokenizer")
    tok2 = write_tokenizer(folder / "tokenizer_2")
    pipe = StableDiffusionXLPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(len(tok), dim=16, seed=seed),
        text_encoder_2=tiny_text_encoder(len(tok2), dim=16, projection=True, seed=seed + 1),
        tokenizer=tok, tokenizer_2=tok2, unet=tiny_unet(resolution // 2, cross_attention_dim=32, xl=True, seed=seed),
        scheduler=tiny_scheduler(), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(str(folder))
    return folder


def build_tiny_taesd(folder: str | Path, seed: int = 0) -> Path:
    """A tiny AutoencoderTiny (TAESD class, random weights) with the tiny VAE's factor 2, for `sd.taesd`."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16), num_encoder_blocks=(1, 1),
                    num_decoder_blocks=(1, 1), latent_channels=4).save_pretrained(str(folder))
    return Path(folder)
