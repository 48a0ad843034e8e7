"""LoRA on the student network (a UNet, or an SD3 / Flux transformer) through peft (diffusers'
`add_adapter`), with the teacher sharing the frozen base weights: the teacher pass runs with the
adapters disabled, so the network is held once. (`unet` below names any such network.)

  add_lora(unet, rank, alpha, targets, dropout) -> number of trainable (adapter) parameters
  as_teacher(unet)               context manager: the base (teacher) UNet, adapters off, eval mode
  lora_state_dict(unet)          adapter weights only (peft names), for checkpoints
  save_lora(folder, unet, cls, name)   LoRA-only export loadable with `pipe.load_lora_weights(folder)`
  fused_copy(unet)               a plain copy of the network with the adapters merged in
"""

from __future__ import annotations

import contextlib
import copy

import torch

from ..errors import RecipeError


def add_lora(unet, rank: int, alpha=None, targets=(), dropout: float = 0.0) -> int:
    from peft import LoraConfig

    names = {n.rsplit(".", 1)[-1] for n, _ in unet.named_modules()} | {n for n, _ in unet.named_modules()}
    found = [t for t in targets if any(n == t or n.endswith("." + t) for n in names)]
    if not found:
        raise RecipeError(f"sd.lora_target_modules: none of {list(targets)} name a module of the "
                          f"{type(unet).__name__}")
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=dropout, init_lora_weights="gaussian",
                                target_modules=found))
    return count_trainable(unet)


def count_trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def has_lora(unet) -> bool:
    return bool(getattr(unet, "_hf_peft_config_loaded", False))


@contextlib.contextmanager
def as_teacher(unet):
    """The frozen base weights (the teacher) inside, in eval mode; the student's adapters and
    training mode again on exit. Gradient checkpointing is off inside: a checkpointed segment of
    the teacher pass, recomputed in the backward pass, would otherwise run with the adapters back
    on (a different graph)."""
    was_training, lora = unet.training, has_lora(unet)
    ckpt = [m for m in unet.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in ckpt:
        m.gradient_checkpointing = False
    if lora:
        unet.disable_adapters()
    unet.eval()
    try:
        yield unet
    finally:
        if lora:
            unet.enable_adapters()
        unet.train(was_training)
        for m in ckpt:
            m.gradient_checkpointing = True


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().contiguous() for k, v in get_peft_model_state_dict(unet).items()}


class LoraWeights:
    """state_dict / load_state_dict over a UNet's adapter weights only (for checkpoints)."""

    def __init__(self, unet):
        self.module = self.unet = unet

    def state_dict(self):
        return lora_state_dict(self.unet)

    def select(self, unet_state_dict):
        """The adapter entries of a full UNet state dict (e.g. one gathered from FSDP shards)."""
        from peft.utils import get_peft_model_state_dict

        return {k: v.contiguous() for k, v in get_peft_model_state_dict(self.unet, state_dict=unet_state_dict).items()}

    def load_state_dict(self, sd):
        from peft.utils import set_peft_model_state_dict

        res = set_peft_model_state_dict(self.unet, sd)
        unexpected = getattr(res, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(f"unexpected LoRA keys in checkpoint: {unexpected[:3]}")


def save_lora(folder, unet, pipeline_cls, name: str = "unet") -> None:
    """LoRA-only export (`pytorch_lora_weights.safetensors`, peft key names, which diffusers loads
    as they are; converting them to the old diffusers names would rename only the attention
    layers and leave a mixed file). The LoraConfig (rank, alpha, targets) is stored as metadata
    where diffusers supports it, so an alpha != rank loads with the right scale. `name`: the pipeline
    attribute of the network ("unet" | "transformer"), which names the save_lora_weights arguments."""
    import inspect

    kw = {}
    if f"{name}_lora_adapter_metadata" in inspect.signature(pipeline_cls.save_lora_weights).parameters:
        cfg = unet.peft_config["default"].to_dict()
        kw[f"{name}_lora_adapter_metadata"] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
    kw[f"{name}_lora_layers"] = lora_state_dict(unet)
    pipeline_cls.save_lora_weights(str(folder), safe_serialization=True, **kw)


def unsharded_copy(unet, state_dict):
    """A plain network of `unet`'s class and config (and LoRA adapters) holding `state_dict`: the
    student gathered from FSDP shards, to export."""
    u = type(unet).from_config(unet.config)
    if has_lora(unet):
        u.add_adapter(unet.peft_config["default"])
    u.load_state_dict(state_dict)
    return u


def fused_copy(unet):
    """A deep copy with LoRA merged into the base weights and the peft layers removed."""
    u = copy.deepcopy(unet)
    if has_lora(u):
        u.fuse_lora(lora_scale=1.0)
        u.unload_lora()
    return u.requires_grad_(False).eval()
