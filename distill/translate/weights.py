"""Fine-tuning: start networks from trained weights and optionally freeze generator layers.

`translate.init_from` may be
  * one of our checkpoint folders (`checkpoints/checkpoint-N`, holding G.safetensors, D.safetensors
    or G_A / G_B / D_A / D_B) or a run folder (its latest checkpoint): every network found loads;
  * a reference-code folder (`latest_net_G.pth`, `latest_net_G_A.pth`, ...): same;
  * one file, `.pth` (a reference state dict, read with torch.load(weights_only=True)) or
    `.safetensors`: loaded into the generator (G, or G_A for CycleGAN).
`translate.init_d_from` loads one discriminator file (D, or D_A).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import DistillError
from ..engine.checkpoint import checkpoint_dirs

WEIGHT_EXTS = (".safetensors", ".pth", ".pt", ".bin")


def read_state_dict(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorError: truncated or not a safetensors file
            raise DistillError(f"{path}: not a loadable safetensors file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DistillError(f"{path}: not a loadable state dict ({str(e).splitlines()[0][:120]})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise DistillError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items()}  # DataParallel prefixes


def load_into(net: nn.Module, sd: dict, where: str) -> None:
    """Strict load, tolerating the stale InstanceNorm running stats of old reference checkpoints."""
    own = net.state_dict()
    stale = ("running_mean", "running_var", "num_batches_tracked")
    sd = {k: v for k, v in sd.items() if k in own or not k.endswith(stale)}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shape)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{'...' if len(keys) > 3 else ''}")
        raise DistillError(f"{where}: weights do not fit this architecture ({'; '.join(parts)}); "
                           f"check translate.netG/netD, ngf/ndf, norm")
    net.load_state_dict(sd)


def _files_in(folder: Path, name: str) -> list[Path]:
    return [folder / f"{name}.safetensors", folder / f"latest_net_{name}.pth", folder / f"{name}.pth"]


def init_from(nets: dict, cfg) -> list[str]:
    """Load `cfg.init_from` / `cfg.init_d_from` into `nets`; returns the names loaded."""
    loaded = []
    gen_name = "G" if "G" in nets else "G_A"
    disc_name = "D" if "D" in nets else "D_A"
    if cfg.init_from:
        src = Path(cfg.init_from)
        if src.is_dir():
            if not (src / "state.json").is_file() and checkpoint_dirs(src):
                src = checkpoint_dirs(src)[-1]  # a run folder: its latest checkpoint
            for name, net in nets.items():
                f = next((f for f in _files_in(src, name) if f.is_file()), None)
                if f is not None:
                    load_into(net, read_state_dict(f), str(f))
                    loaded.append(name)
            if not loaded:
                raise DistillError(f"{src}: no weights for {', '.join(nets)} found (translate.init_from)")
        elif src.suffix in WEIGHT_EXTS:
            load_into(nets[gen_name], read_state_dict(src), str(src))
            loaded.append(gen_name)
        else:
            raise DistillError(f"{src}: translate.init_from must be a checkpoint / run folder or a weights file")
    if cfg.init_d_from:
        load_into(nets[disc_name], read_state_dict(cfg.init_d_from), str(cfg.init_d_from))
        loaded.append(disc_name)
    return loaded


def freeze(net: nn.Module, prefixes: list[str], where: str = "generator") -> int:
    """requires_grad=False for parameters whose names start with one of `prefixes`; -> count."""
    count = 0
    for prefix in prefixes:
        hits = [p for n, p in net.named_parameters() if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            raise DistillError(f"translate.freeze: '{prefix}' matches no {where} parameter "
                               f"(names look like {next(iter(dict(net.named_parameters())))})")
        for p in hits:
            p.requires_grad_(False)
            count += 1
    return count
