"""Inference: load a trained generator, translate an image or a folder in batches, export ONNX.

PATH is a finished run folder (its export: the final generator, `from_pretrained`, with translator.json), a
checkpoint folder (`runs/x/checkpoints/checkpoint-N`) or an unfinished run folder (its latest checkpoint); the
translate config comes with either, so the architecture is rebuilt exactly. CycleGAN runs hold both generators:
G_A (A -> B) by default, G_B with reverse.
SPADE's generator reads label maps (colour-coded or integer images); its style encoder E, where
trained, turns a style photo into the code z (`--style`); the ONNX export is G alone, with inputs
`input` (one-hot label map) and, with the encoder, `z`.
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
from .data import IMG_EXTS, ImageReader, LabelReader, _pil_to_tensor, _resize
from .export import EXPORT_FILE, export_info, is_export, load_exported
from .labels import one_hot
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


def _state(checkpoint) -> tuple[Path, dict]:
    ckpt = resolve_checkpoint(checkpoint)
    state = json.loads((ckpt / "state.json").read_text())
    if "translate" not in state:
        raise DistillError(f"{ckpt}: not a pix2pix / CycleGAN / SPADE checkpoint (no translate config)")
    return ckpt, state


def _one_generator(reverse: bool) -> None:
    if reverse:
        raise DistillError("--reverse needs a CycleGAN checkpoint (pix2pix and SPADE have one generator)")


def _pix2pix_generator(cfg, data, reverse):
    _one_generator(reverse)
    return "G", build_generator(cfg, data.input_nc, data.output_nc), data.input_nc


def _cyclegan_generator(cfg, data, reverse):
    i, o = (data.output_nc, data.input_nc) if reverse else (data.input_nc, data.output_nc)
    return ("G_B" if reverse else "G_A"), build_generator(cfg, i, o), i


def _spade_generator(cfg, data, reverse):
    from .semantic import build_spade_generator

    _one_generator(reverse)
    G = build_spade_generator(cfg, data)
    G.labels = cfg.labels  # read inputs as label maps
    return "G", G, cfg.labels.num_classes


GENERATORS = {"pix2pix": _pix2pix_generator, "cyclegan": _cyclegan_generator, "spade": _spade_generator}


def load_generator(path: str | Path, reverse: bool = False) -> tuple[nn.Module, TranslateConfig]:
    """The generator of a finished run's export (`path` a run folder holding translator.json: the final weights,
    through `<Class>.from_pretrained`), else of a checkpoint folder or a run folder's newest checkpoint."""
    if is_export(path):
        info = export_info(path)
        cfg, data = configs_from_state(info, str(Path(path) / EXPORT_FILE))
        if info["method"] != "cyclegan":
            _one_generator(reverse)
        G = load_exported(path, {"cyclegan": "G_B" if reverse else "G_A"}.get(info["method"], "G"))
        in_channels = G.config.label_nc if info["method"] == "spade" else G.config.input_nc
        if info["method"] == "spade":
            G.labels = cfg.labels
    else:
        ckpt, state = _state(path)
        cfg, data = configs_from_state(state, str(ckpt / "state.json"))
        name, G, in_channels = GENERATORS[state.get("method", "pix2pix")](cfg, data, reverse)
        load_into(G, read_state_dict(ckpt / f"{name}.safetensors"), str(ckpt / f"{name}.safetensors"))
    G.in_channels = in_channels
    G.crop_size = data.crop_size  # the training crop: the default size of translate_images / export_onnx
    return G.eval(), cfg


def load_style_encoder(path: str | Path) -> nn.Module:
    """SPADE's style encoder E of a run trained with translate.style_encoder: true (export or checkpoint)."""
    from .semantic import build_style_encoder

    export = is_export(path)
    if export:
        state, where = export_info(path), Path(path)
    else:
        where, state = _state(path)
    cfg, data = configs_from_state(state, str(where / (EXPORT_FILE if export else "state.json")))
    if state.get("method") != "spade" or not cfg.style_encoder:
        raise DistillError(f"{where}: --style needs a SPADE run trained with translate.style_encoder: true")
    if export:
        E = load_exported(path, "E")
    else:
        E = build_style_encoder(cfg, data)
        load_into(E, read_state_dict(where / "E.safetensors"), str(where / "E.safetensors"))
    E.crop_size = data.crop_size
    return E.eval()


@torch.no_grad()
def style_code(E: nn.Module, image: str | Path) -> torch.Tensor:
    """The mean of q(z | photo) of one style image (resized to the training crop) -> (1, z_dim)."""
    from PIL import Image

    with Image.open(image) as im:
        x = _resize(_pil_to_tensor(im, 3)[None], E.crop_size)
    return E(x.float() / 127.5 - 1)[0]


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
                     size: Optional[int] = None, eval_mode: bool = True, z: Optional[torch.Tensor] = None,
                     seed: int = 0) -> list[Path]:
    """Translate one image (OUTPUT: a file or folder) or a folder (OUTPUT: a folder), resized to
    `size` (default: the training crop size) in batches. SPADE: the inputs are label maps; `z`
    (1, z_dim) a style code, else drawn from N(0, I) with `seed`. -> written paths"""
    from PIL import Image
    from tqdm.auto import tqdm

    inp, out = Path(inp), Path(out)
    files = _collect(inp)
    size = size or G.crop_size
    div = getattr(G, "divisor", 1)
    if size % div:
        raise DistillError(f"--size {size} must be a multiple of {div} for {cfg.netG}")
    if getattr(G, "z_dim", None) and size != G.crop_size:
        raise DistillError(f"--size {size}: a SPADE generator with a style encoder makes {G.crop_size} px images only")
    labels = getattr(G, "labels", None)
    reader = LabelReader(labels, size) if labels is not None else ImageReader(G.in_channels, size)
    single_file_out = inp.is_file() and out.suffix.lower() in IMG_EXTS
    if not single_file_out:
        out.mkdir(parents=True, exist_ok=True)
    written = []
    gen = torch.Generator().manual_seed(seed)
    for i in tqdm(range(0, len(files), batch), desc="translate", disable=len(files) <= batch):
        chunk = files[i:i + batch]
        xs = []
        for f in chunk:
            with Image.open(f) as im:
                xs.append(reader.image(im, str(f)))
        x = one_hot(torch.stack(xs), labels.num_classes) if labels is not None else torch.stack(xs).float() / 127.5 - 1
        if getattr(G, "z_dim", None):
            zb = z.expand(len(x), -1) if z is not None else torch.randn(len(x), G.z_dim, generator=gen)
            y = G.eval()(x, zb)
        else:
            y = run_generator(G, x, eval_mode)
        u8 = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for f, arr in zip(chunk, u8):
            dst = out if single_file_out else out / (f.stem + ".png")
            Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(dst)
            written.append(dst)
    return written


def export_onnx(G: nn.Module, cfg: TranslateConfig, path: str | Path, size: Optional[int] = None,
                check: bool = True) -> dict:
    """Export G (eval mode, dynamic batch; SPADE's spectral norms folded into G's weights, in place) to
    ONNX; with onnxruntime installed, compare its output to PyTorch's on random inputs. -> {"path", "max_abs_diff" or None}"""
    from .spade import fold_spectral_norm

    size = size or G.crop_size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    z_dim = getattr(G, "z_dim", None)

    def inputs(n: int, seed: int) -> tuple:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, G.in_channels, size, size, generator=g) * 2 - 1
        return (x, torch.randn(n, z_dim, generator=g)) if z_dim else (x,)

    xt = inputs(3, 1)
    with torch.no_grad():
        ours = G.eval()(*xt).numpy()  # before folding SPADE's spectral norms (the parity check covers it)
    fold_spectral_norm(G)
    names = ["input", "z"] if z_dim else ["input"]
    torch.onnx.export(G, inputs(2, 0), str(path), input_names=names, output_names=["output"], opset_version=17,
                      dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}}, dynamo=False)
    result = {"path": str(path), "max_abs_diff": None}
    if check:
        try:
            import onnxruntime as ort
        except ImportError:
            return result
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        theirs = sess.run(None, {n: t.numpy() for n, t in zip(names, xt)})[0]
        result["max_abs_diff"] = float(np.abs(ours - theirs).max())
        if result["max_abs_diff"] > 1e-3:
            raise DistillError(f"{path}: ONNX output differs from PyTorch by {result['max_abs_diff']:.2e}")
    return result
