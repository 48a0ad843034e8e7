"""Extra embeddings added to a diffusers UNet's time embedding for one call: the way a student is told more than its
timestep (a trajectory student's target time, distill.diffusion.trajectory; a guidance scale,
distill.diffusion.guided) without touching UNet2DModel's forward.

  emb = time_embedding(t) + extra     extra (B, D), stored on the time-embedding module for the call's duration
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from diffusers.models.embeddings import TimestepEmbedding


def add_extra(module, inputs, output):
    """Forward hook on the time embedding: adds the extra embedding stored for this call (a module-level function:
    deepcopy-safe)."""
    extra = getattr(module, "_extra", None)
    return output if extra is None else output + extra.to(output.dtype)


def zero_embedding(unet) -> TimestepEmbedding:
    """An MLP from the UNet's sinusoidal features (block_out_channels[0]) to its time-embedding width, its output layer
    at zero (the network starts as it was); the UNet's time embedding is hooked to add extra embeddings."""
    emb = TimestepEmbedding(unet.config.block_out_channels[0], unet.time_embedding.linear_2.out_features)
    torch.nn.init.zeros_(emb.linear_2.weight)
    torch.nn.init.zeros_(emb.linear_2.bias)
    unet.time_embedding.register_forward_hook(add_extra)
    return emb


@contextmanager
def extra_embedding(time_embedding: torch.nn.Module, extra: torch.Tensor):
    """Within the block, `time_embedding`'s output gains `extra` (B, D)."""
    time_embedding._extra = extra
    try:
        yield
    finally:
        time_embedding._extra = None


def from_unet(cls, unet, new: str):
    """`cls` (a UNet2DModel subclass with a zero-initialised embedding under `new`) built from `unet`'s config and
    weights: it starts as `unet` for every value of what the embedding reads."""
    net = cls(**{k: v for k, v in unet.config.items() if not k.startswith("_")})
    missing, unexpected = net.load_state_dict(unet.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(new + ".") for k in missing), (missing, unexpected)
    return net.to(device=unet.device) if unet.dtype == net.dtype else net.to(unet.device, unet.dtype)
