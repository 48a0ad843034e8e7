"""Extra embeddings added to a diffusers UNet's time embedding for one call: the way a student is told more than its
timestep (a trajectory student's target time, distill.diffusion.trajectory; a guidance scale,
distill.diffusion.guided) without touching UNet2DModel's forward.

  emb = time_embedding(t) + extra     extra (B, D), stored on the time-embedding module for the call's duration
  ExtraEmbeddingUNet                  a UNet2DModel (same config keys) with one zero-initialised embedding MLP under
                                      the subclass's `extra_name`; subclasses compute `extra` and call `forward_with`
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
from accelerate.utils import extract_model_from_parallel
from diffusers import UNet2DModel
from diffusers.models.embeddings import TimestepEmbedding


def unwrapped(net):
    """The network under DDP / torch.compile wrappers; anything not an nn.Module (tests' toy functions) as it is."""
    return extract_model_from_parallel(net, keep_torch_compile=False) if isinstance(net, torch.nn.Module) else net


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


class ExtraEmbeddingUNet(UNet2DModel):
    """UNet2DModel(..., same config) + a zero-initialised embedding MLP stored as `self.<extra_name>` (its state-dict
    prefix), whose output the subclass adds to the time embedding through `forward_with`."""

    extra_name = "extra_embedding"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        setattr(self, self.extra_name, zero_embedding(self))

    # diffusers reads a model's config keys from its __init__ signature: the same as UNet2DModel's
    __init__.__signature__ = inspect.signature(UNet2DModel.__init__)

    @property
    def extra_mlp(self) -> TimestepEmbedding:
        return getattr(self, self.extra_name)

    @classmethod
    def from_unet(cls, unet: UNet2DModel):
        """The student of a teacher UNet: its config and weights, the extra embedding at zero (it starts as `unet`
        for every value of what the embedding reads)."""
        net = cls(**{k: v for k, v in unet.config.items() if not k.startswith("_")})
        missing, unexpected = net.load_state_dict(unet.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(cls.extra_name + ".") for k in missing), (missing, unexpected)
        return net.to(device=unet.device) if unet.dtype == net.dtype else net.to(unet.device, unet.dtype)

    def forward_with(self, extra: torch.Tensor, sample, timestep, class_labels=None, return_dict: bool = True):
        """UNet2DModel's forward with `extra` (B, D) added to the time embedding."""
        with extra_embedding(self.time_embedding, extra):
            return super().forward(sample, timestep, class_labels=class_labels, return_dict=return_dict)
