"""Text conditioning of the MMDiT teachers, Stable Diffusion 3 and Flux, for the Denoiser.

Both carry a `TextCond(embeds, pooled)` (distill.sd.teacher), encoded by the pipeline's own
`encode_prompt`, so training sees the embeddings inference sees:
  SD3   embeds = [CLIP-L ; CLIP-G penultimate states, zero-padded to T5's width] ++ T5 states along
        the sequence (B, 77 + 256, 4096); pooled = [CLIP-L ; CLIP-G] projections (B, 2048).
        Classifier-free guidance with the empty prompt as the unconditional input.
  Flux  embeds = T5 states (B, 512, 4096); pooled = CLIP-L pooler output (B, 768); text position
        ids are zeros (L, 3), image position ids (row, column) of the 2x2 latent patches.
        FLUX.1-dev is guidance-distilled: the guidance scale is an input of the network (an
        embedding added to the timestep's), so there is no unconditional batch.

The Denoiser sees latents (B, C, H, W) and timesteps t in FlowMatchEulerDiscreteScheduler units
(t = sigma T) for both; the adapters do what each network needs around that: SD3 takes t as it
is, Flux takes sigma = t / T and its latents packed into 2x2 patches, (B, C, H, W) <->
(B, H/2 * W/2, 4C), as FluxPipeline packs them.
"""

from __future__ import annotations

import torch

from .teacher import TextCond, TextConditioning


def per_sample(t, x: torch.Tensor) -> torch.Tensor:
    """Timesteps as a (B,) float tensor on x's device (a sampler's scalar t is broadcast)."""
    t = torch.as_tensor(t, device=x.device)
    return t.float().reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.float()


# ----------------------------------------------------------------------------------------------
# Stable Diffusion 3


@torch.no_grad()
def encode_sd3(pipe, prompts: list[str], device=None) -> TextCond:
    embeds, _, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, prompt_3=None, device=device,
                                              num_images_per_prompt=1, do_classifier_free_guidance=False)
    return TextCond(embeds, pooled)


class SD3Conditioning(TextConditioning):
    """A TextCond into SD3Transformer2DModel; batching and the unconditional input (the empty prompt, `uncond1`)
    as for the UNet teachers."""

    def call(self, net, x_t, t, cond: TextCond):
        return net(hidden_states=x_t, encoder_hidden_states=cond.embeds, pooled_projections=cond.pooled,
                   timestep=per_sample(t, x_t)).sample


# ----------------------------------------------------------------------------------------------
# Flux


def pack(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): 2x2 patches in FluxPipeline's channel order (c, dy, dx)."""
    B, C, H, W = z.shape
    return z.view(B, C, H // 2, 2, W // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(B, (H // 2) * (W // 2), 4 * C)


def unpack(tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H/2 * W/2, 4C) -> (B, C, H, W), the inverse of `pack`."""
    B, _, C4 = tokens.shape
    return tokens.view(B, H // 2, W // 2, C4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(B, C4 // 4, H, W)


def image_ids(h: int, w: int, device, dtype) -> torch.Tensor:
    """(h w, 3) rotary position ids of the patch grid: (0, row, column)."""
    ids = torch.zeros(h, w, 3)
    ids[..., 1] += torch.arange(h)[:, None]
    ids[..., 2] += torch.arange(w)[None, :]
    return ids.reshape(h * w, 3).to(device=device, dtype=dtype)


@torch.no_grad()
def encode_flux(pipe, prompts: list[str], device=None) -> TextCond:
    embeds, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=device, num_images_per_prompt=1)
    return TextCond(embeds, pooled)


class FluxConditioning(TextConditioning):
    """A TextCond into FluxTransformer2DModel around the Denoiser's (B, C, H, W) latents. `guidance`: the
    value of FLUX.1-dev's guidance embedding (None for a model without one); the teacher and the student
    both run at it. `T`: the scheduler's num_train_timesteps (Flux takes sigma = t / T)."""

    def __init__(self, uncond1: TextCond, guidance, T: int):
        super().__init__(uncond1)
        self.guidance, self.T = guidance, T

    def call(self, net, x_t, t, cond: TextCond):
        B, _, H, W = x_t.shape
        sigma = per_sample(t, x_t) / self.T  # (B,)
        g = None if self.guidance is None else torch.full((B,), float(self.guidance), device=x_t.device)
        out = net(hidden_states=pack(x_t), encoder_hidden_states=cond.embeds, pooled_projections=cond.pooled,
                  timestep=sigma, guidance=g, img_ids=image_ids(H // 2, W // 2, x_t.device, x_t.dtype),
                  txt_ids=torch.zeros(cond.embeds.shape[1], 3, device=x_t.device, dtype=x_t.dtype)).sample
        return unpack(out, H, W)  # (B, C, H, W) velocity

    def guidable(self, cond) -> bool:
        return False  # guidance-distilled (dev) or guidance-free (schnell): one batch, no CFG


@torch.no_grad()
def fold_guidance(transformer, guidance: float):
    """A FluxTransformer2DModel without the guidance input that computes what `transformer` computes at
    guidance `guidance`: the conditioning vector is timestep_emb(t) + guidance_emb(g) + text_emb(pooled),
    and guidance_emb(g) is a constant for a fixed g, so it moves into the last bias of the pooled-text
    projection. The exported student then needs no guidance argument (as FLUX.1-schnell)."""
    from diffusers import FluxTransformer2DModel

    if not transformer.config.guidance_embeds:
        return transformer
    emb = transformer.time_text_embed
    p = next(transformer.parameters())
    g = torch.full((1,), float(guidance) * 1000, device=p.device, dtype=p.dtype)  # as the model scales it
    g_emb = emb.guidance_embedder(emb.time_proj(g).to(p.dtype))[0]  # (D,)
    cfg = {k: v for k, v in transformer.config.items() if not k.startswith("_")}
    folded = FluxTransformer2DModel.from_config({**cfg, "guidance_embeds": False}).to(p.device, p.dtype)
    sd = {k: v for k, v in transformer.state_dict().items() if "guidance_embedder" not in k}
    key = "time_text_embed.text_embedder.linear_2.bias"
    sd[key] = sd[key] + g_emb
    folded.load_state_dict(sd)
    return folded.requires_grad_(False).eval()
