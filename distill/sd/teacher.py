"""Stable Diffusion teachers: load a StableDiffusionPipeline / StableDiffusionXLPipeline (or an SD3 /
Flux pipeline, distill.sd.mmdit) from a Hub id or a local folder, encode prompts (SDXL: two encoders, pooled embedding, add_time_ids), and
run the UNet with classifier-free guidance.

`TextCond` carries everything a UNet2DConditionModel call needs besides (x_t, t), for SD and SDXL
alike, plus the pooled text embedding the discriminator heads are conditioned on:
  SD 1.x/2.x: embeds = last hidden state of the CLIP text encoder (B, 77, 768 | 1024),
              pooled = its pooler output (EOS token) (B, 768 | 1024), no added conditions.
  SDXL:       embeds = penultimate hidden states of both encoders, concatenated (B, 77, 2048),
              pooled = text_embeds of the second (projection) encoder (B, 1280),
              time_ids = (orig_h, orig_w, crop_top, crop_left, target_h, target_w) (B, 6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import DistillError

# the teacher pipelines the latent space reads (distill.sd.families says how each is driven)
PIPELINE_CLASSES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "StableDiffusion3Pipeline", "FluxPipeline")


@dataclass
class TextCond:
    embeds: torch.Tensor  # (B, L, D) encoder_hidden_states
    pooled: torch.Tensor  # (B, P)
    time_ids: Optional[torch.Tensor] = None  # (B, 6), SDXL only

    def unet_kwargs(self) -> dict:
        kw = {"encoder_hidden_states": self.embeds}
        if self.time_ids is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kw

    def map(self, fn) -> "TextCond":
        return TextCond(fn(self.embeds), fn(self.pooled), fn(self.time_ids) if self.time_ids is not None else None)

    @staticmethod
    def cat(a: "TextCond", b: "TextCond") -> "TextCond":
        t = torch.cat([a.time_ids, b.time_ids]) if a.time_ids is not None else None
        return TextCond(torch.cat([a.embeds, b.embeds]), torch.cat([a.pooled, b.pooled]), t)


def pipeline_class_name(source: str, revision: Optional[str] = None) -> str:
    """The `_class_name` of the teacher's model_index.json (local folder or Hub); one-line errors."""
    p = Path(source)
    if p.is_dir():
        f = p / "model_index.json"
        if not f.is_file():
            raise DistillError(f"{source}: no model_index.json (not a diffusers pipeline folder)")
        name = json.loads(f.read_text()).get("_class_name", "")
    else:
        if source.startswith((".", "/", "~")):
            raise DistillError(f"{source}: teacher folder not found")
        try:
            from huggingface_hub import hf_hub_download

            name = json.loads(Path(hf_hub_download(source, "model_index.json", revision=revision)).read_text())["_class_name"]
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            raise DistillError(f"distill.teacher: cannot read model_index.json of '{source}' ({msg[:160]})") from None
    if name not in PIPELINE_CLASSES:
        raise DistillError(f"distill.teacher: '{source}' is a {name or 'unknown'} pipeline; expected one of "
                           f"{', '.join(PIPELINE_CLASSES)}")
    return name


def load_sd_teacher(source: str, revision: Optional[str] = None, variant: Optional[str] = None,
                    dtype: torch.dtype = torch.float32):
    """The teacher pipeline (one of PIPELINE_CLASSES), every module
    frozen and in eval mode. Never executes remote code; no safety checker is loaded."""
    import diffusers

    name = pipeline_class_name(source, revision)
    cls = getattr(diffusers, name)
    kw = {"safety_checker": None, "requires_safety_checker": False} if name == "StableDiffusionPipeline" else {}
    if dtype != torch.float32:
        kw["torch_dtype"] = dtype
    try:
        pipe = cls.from_pretrained(source, revision=revision, variant=variant, **kw)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DistillError(f"distill.teacher: cannot load {name} from '{source}' ({msg[:160]})") from None
    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def is_sdxl(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None or type(pipe).__name__.startswith("StableDiffusionXL")


def _tokens(tokenizer, prompts: list[str], device):
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids.to(device)


@torch.no_grad()
def encode_prompts(pipe, prompts: list[str], resolution: int, device=None) -> TextCond:
    """TextCond for a list of prompts (the frozen text encoders of `pipe`)."""
    device = device or pipe.unet.device
    if not is_sdxl(pipe):
        out = pipe.text_encoder(_tokens(pipe.tokenizer, prompts, device))
        return TextCond(out.last_hidden_state, out.pooler_output)
    embeds, pooled = [], None
    for tok, enc in [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]:
        if tok is None or enc is None:
            continue
        out = enc(_tokens(tok, prompts, device), output_hidden_states=True)
        embeds.append(out.hidden_states[-2])
        pooled = out.text_embeds if hasattr(out, "text_embeds") else out[0]
    size = (resolution, resolution)
    ids = torch.tensor([size + (0, 0) + size], dtype=embeds[0].dtype, device=device).repeat(len(prompts), 1)
    return TextCond(torch.cat(embeds, dim=-1), pooled, ids)


def null_cond(pipe, batch: int, resolution: int, device=None) -> TextCond:
    """The unconditional input for classifier-free guidance: the empty prompt (zeros for SDXL
    pipelines with `force_zeros_for_empty_prompt`, as diffusers does)."""
    c = encode_prompts(pipe, [""], resolution, device)
    if is_sdxl(pipe) and getattr(pipe.config, "force_zeros_for_empty_prompt", False):
        c = TextCond(torch.zeros_like(c.embeds), torch.zeros_like(c.pooled), c.time_ids)
    return c.map(lambda x: x.expand(batch, *x.shape[1:]))


class TextConditioning:
    """How a TextCond reaches a UNet2DConditionModel, for the Denoiser: two are batched with
    TextCond.cat, and the unconditional input is the empty prompt encoded once (`uncond1`, batch 1)."""

    def __init__(self, uncond1: TextCond):
        self.uncond1 = uncond1

    def call(self, net, x_t, t, cond: TextCond):
        return net(x_t, t, **cond.unet_kwargs()).sample

    def cat(self, a: TextCond, b: TextCond) -> TextCond:
        return TextCond.cat(a, b)

    def null(self, cond: TextCond) -> TextCond:
        return self.uncond1.map(lambda x: x.expand(cond.embeds.shape[0], *x.shape[1:]))

    def guidable(self, cond) -> bool:
        return cond is not None


def make_decoder(pipe, taesd: Optional[str] = None):
    """latents (scaled, as the UNet sees them) -> images in [-1, 1], differentiable: the teacher's
    VAE decoder, or a tiny autoencoder (AutoencoderTiny, e.g. madebyollin/taesd / taesdxl) when
    `taesd` names one (Hub id or folder): much faster, a little less faithful."""
    vae = pipe.vae
    if taesd:
        from diffusers import AutoencoderTiny

        try:
            vae = AutoencoderTiny.from_pretrained(taesd).to(pipe.vae.device, pipe.vae.dtype)
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            raise DistillError(f"sd.taesd: cannot load AutoencoderTiny from '{taesd}' ({msg[:160]})") from None
        vae.requires_grad_(False).eval()
    sf, shift = vae.config.scaling_factor, getattr(vae.config, "shift_factor", None) or 0.0

    def decode(z: torch.Tensor) -> torch.Tensor:  # z = (latent - shift) * sf (SD3 / Flux VAEs have a shift)
        return vae.decode(z.to(vae.dtype) / sf + shift).sample.float()

    decode.vae = vae
    return decode
