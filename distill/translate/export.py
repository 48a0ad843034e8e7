"""The run folder as the export: a finished pix2pix / CycleGAN / SPADE run saves its generator where diffusers
users look for it, so `UnetGenerator.from_pretrained(run_folder)` (or `ResnetGenerator`, `SPADEGenerator`) loads it.

  run_folder/config.json, diffusion_pytorch_model.safetensors   G (pix2pix, SPADE) or G_A (CycleGAN, A -> B)
  run_folder/G_B/                                                CycleGAN's B -> A generator
  run_folder/style_encoder/                                      SPADE's style encoder E, where trained
  run_folder/translator.json                                     method, translate and data sections: what
                                                                 `distill translate` needs beyond the weights

Spectral norm (SPADE) is folded into plain weights first (W / sigma(W) at the stored power-iteration vectors, the
eval-mode function), so the exported classes build without it. Load a subfolder by its path
(`ResnetGenerator.from_pretrained(run_folder / "G_B")`), not with `subfolder=`: diffusers' from_pretrained takes a
local folder's own weights file before its subfolder's. translator.json is written last, atomically: its
presence marks a complete export. Checkpoints stay the way to resume or fine-tune (`translate.init_from`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

import torch.nn as nn

from ..errors import DistillError

EXPORT_FILE = "translator.json"
METHODS = ("pix2pix", "cyclegan", "spade")
SUBFOLDERS = {"G": "", "G_A": "", "G_B": "G_B", "E": "style_encoder"}  # trainer's net name -> export subfolder


def generator_classes() -> dict[str, type]:
    from .networks import ResnetGenerator, UnetGenerator
    from .spade import SPADEGenerator, StyleEncoder

    return {c.__name__: c for c in (UnetGenerator, ResnetGenerator, SPADEGenerator, StyleEncoder)}


def is_export(path) -> bool:
    """Whether `path` holds a finished translator export (translator.json beside a generator config.json)."""
    p = Path(path)
    return (p / EXPORT_FILE).is_file() and (p / "config.json").is_file()


def export_translator(run_dir, nets: dict[str, nn.Module], method: str, cfg, data_cfg) -> list[str]:
    """Save the generators (and style encoder) among `nets` (trainer name -> raw module) at `run_dir`; -> names."""
    from .spade import folded_state_dict

    run_dir = Path(run_dir)
    saved = []
    for name, sub in SUBFOLDERS.items():
        if name in nets:
            # the same class from its config, without spectral norms (SPADE's `initialize` adds them); not from_config,
            # which drops the arguments given positionally (diffusers lists them in _use_default_values)
            net = type(nets[name])(**{k: v for k, v in nets[name].config.items() if not k.startswith("_")})
            net.load_state_dict({k: v.cpu() for k, v in folded_state_dict(nets[name]).items()})
            net.save_pretrained(str(run_dir / sub) if sub else str(run_dir))
            saved.append(name)
    info = {"method": method, "nets": saved, "translate": dataclasses.asdict(cfg), "data": dataclasses.asdict(data_cfg)}
    tmp = run_dir / f".{EXPORT_FILE}.tmp"
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, run_dir / EXPORT_FILE)
    return saved


def export_info(path) -> dict:
    """translator.json of an export folder."""
    f = Path(path) / EXPORT_FILE
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise DistillError(f"{f}: not a readable translator export ({type(e).__name__})") from None
    if not isinstance(info, dict) or "translate" not in info:
        raise DistillError(f"{f}: not a translator export (no translate section)")
    if info.get("method") not in METHODS:
        raise DistillError(f"{f}: method {info.get('method')!r} is not one of {', '.join(METHODS)}")
    return info


def load_exported(path, name: str) -> nn.Module:
    """`<Class>.from_pretrained` of net `name` ("G", "G_A", "G_B", "E") of an export folder, in eval mode."""
    info = export_info(path)
    if name not in info.get("nets", []):
        raise DistillError(f"{path}: the export has no {name} (it has {', '.join(info.get('nets', [])) or 'none'})")
    folder = Path(path) / SUBFOLDERS[name]
    cls_name = _class_name(folder)
    classes = generator_classes()
    if cls_name not in classes:
        raise DistillError(f"{folder / 'config.json'}: _class_name {cls_name!r} is not one of {', '.join(classes)}")
    try:
        return classes[cls_name].from_pretrained(str(folder)).eval()
    except Exception as e:  # OSError, safetensors errors, shape mismatches: one line naming the folder
        text = str(e).strip().splitlines()
        raise DistillError(f"{folder}: cannot load the {name} export ({text[0][:200] if text else type(e).__name__})") from None


def _class_name(folder: Path) -> Optional[str]:
    """config.json's _class_name (None where it has none); a missing or broken file is a one-line error."""
    try:
        return json.loads((folder / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        raise DistillError(f"{folder / 'config.json'}: missing or not JSON") from None
