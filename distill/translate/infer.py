"""Inference: load a trained generator, translate an image or a folder in batches, export ONNX.

CHECKPOINT is a checkpoint folder (`runs/x/checkpoints/checkpoint-N`) or a run folder (its
latest checkpoint); its state.json holds the translate config, so the architecture is rebuilt
exactly. CycleGAN checkpoints hold both generators: G_A (A -> B) by default, G_B with reverse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..errors import DistillError
from ..engine.checkpoint import checkpoint_dirs, resolve_resume
from .config import TranslateConfig, configs_from_state
from .data import IMG_EXTS, _pil_to_tensor, _resize
from .networks import build_generator
from .weights import load_into, read_state_dict


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder's newest readable checkpoint (damaged ones are skipped
    with a warning, see `resolve_resume`)."""
    p = Path(path)
    if (p / "state.json").is_file():
        return resolve_resume(p.parent.parent, str(p))
    if not checkpoint_dirs(p):
        raise DistillError(f"{p}: not a checkpoint or run folder (no state.json, no checkpoints/)")
    return resolve_resume(p, "latest")


def load_generator(checkpoint: str | Path, reverse: bool = False) -> tuple[nn.Module, TranslateConfig]:
    ckpt = resolve_checkpoint(checkpoint)
    state = json.loads((ckpt / "state.json").read_text())
    if "translate" not in state:
        raise DistillError(f"{ckpt}: not a pix2pix / CycleGAN checkpoint (no translate config)")
    cfg, data = configs_from_state(state, str(ckpt / "state.json"))
    if state.get("method") == "cyclegan":
        name, (i, o) = ("G_B", (data.output_nc, data.input_nc)) if reverse else ("G_A", (data.input_nc, data.output_nc))
    else:
        if reverse:
            raise DistillError("--reverse needs a CycleGAN checkpoint (pix2pix has one generator)")
        name, (i, o) = "G", (data.input_nc, data.output_nc)
    G = build_generator(cfg, i, o)
    load_into(G, read_state_dict(ckpt / f"{name}.safetensors"), str(ckpt / f"{name}.safetensors"))
    G.in_channels = i
    G.crop_size = data.crop_size  # the training crop: the default size of translate_images / export_onnx
    return G.eval(), cfg


@torch.no_grad()
def run_generator(G: nn.Module, x: torch.Tensor, eval_mode: bool = True, seed: int = 0) -> torch.Tensor:
    """x: (B, C, H, W) in [-1, 1] -> G(x). eval_mode=False reproduces the paper's test time
    (pix2pix Sec. 3.3): each image normalised by its own batch statistics, dropout active
    (seeded); BN running statistics are left untouched."""
    if eval_mode:
        G.eval()
        return G(x)
    G.train()
    bns = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running: unchanged
    try:
        torch.manual_seed(seed)
        out = torch.cat([G(x[i:i + 1]) for i in range(len(x))])
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        G.eval()
    return out


def _collect(inp: Path) -> list[Path]:
    if inp.is_file():
        return [inp]
    if inp.is_dir():
        files = sorted(p for p in inp.iterdir() if p.suffix.lower() in IMG_EXTS)
        if files:
            return files
    raise DistillError(f"{inp}: no image file or folder of images")


def translate_images(G: nn.Module, cfg: TranslateConfig, inp: str | Path, out: str | Path, batch: int = 16,
                     size: Optional[int] = None, eval_mode: bool = True) -> list[Path]:
    """Translate one image (OUTPUT: a file or folder) or a folder (OUTPUT: a folder), resized to
    `size` (default: the training crop size) in batches. -> written paths"""
    from PIL import Image
    from tqdm.auto import tqdm

    inp, out = Path(inp), Path(out)
    files = _collect(inp)
    size = size or G.crop_size
    div = getattr(G, "divisor", 1)
    if size % div:
        raise DistillError(f"--size {size} must be a multiple of {div} for {cfg.netG}")
    single_file_out = inp.is_file() and out.suffix.lower() in IMG_EXTS
    if not single_file_out:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in tqdm(range(0, len(files), batch), desc="translate", disable=len(files) <= batch):
        chunk = files[i:i + batch]
        xs = []
        for f in chunk:
            with Image.open(f) as im:
                xs.append(_resize(_pil_to_tensor(im, G.in_channels)[None], size)[0])
        x = torch.stack(xs).float() / 127.5 - 1  # (b, C, size, size)
        y = run_generator(G, x, eval_mode)
        u8 = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for f, arr in zip(chunk, u8):
            dst = out if single_file_out else out / (f.stem + ".png")
            Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(dst)
            written.append(dst)
    return written


def export_onnx(G: nn.Module, cfg: TranslateConfig, path: str | Path, size: Optional[int] = None,
                check: bool = True) -> dict:
    """Export G (eval mode, dynamic batch) to ONNX; with onnxruntime installed, compare its output
    to PyTorch's on random inputs. -> {"path", "max_abs_diff" or None}"""
    size = size or G.crop_size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    G = G.eval()
    x = torch.rand(2, G.in_channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.onnx.export(G, (x,), str(path), input_names=["input"], output_names=["output"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    result = {"path": str(path), "max_abs_diff": None}
    if check:
        try:
            import onnxruntime as ort
        except ImportError:
            return result
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        xt = torch.rand(3, G.in_channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
        ours = G(xt).detach().numpy()
        theirs = sess.run(None, {"input": xt.numpy()})[0]
        result["max_abs_diff"] = float(np.abs(ours - theirs).max())
        if result["max_abs_diff"] > 1e-3:
            raise DistillError(f"{path}: ONNX output differs from PyTorch by {result['max_abs_diff']:.2e}")
    return result
