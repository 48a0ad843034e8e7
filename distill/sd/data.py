"""Data for latent students: captions, real latents, and cached synthetic teacher latents.

Everything ends as `LatentSet(latents (N, 4, h, w) float32, captions list[str])`:
  real (ADD)       images + captions, encoded once by the frozen VAE (latent_dist.mean x scaling):
                   - an `imagefolder` with `metadata.jsonl` / `metadata.csv` (`file_name` + a caption
                     column, as datasets' imagefolder), - a Hub dataset with an image and a caption
                     column, - any labelled set of `distill.data.load_images` (digits, .npz, class
                     folders) captioned with `sd.caption_template.format(label=...)`.
  synthetic (LADD) prompts (a text file, a dataset column, or the captions above) sampled by the
                   teacher with classifier-free guidance, cached once as safetensors keyed by
                   (teacher, prompts, steps, guidance, resolution, seed).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.images import IMAGE_EXTENSIONS, _pick_key, _read_image, _resize, _set_channels, load_images, source_kind
from ..errors import DataError

CAPTION_COLUMNS = ["text", "caption", "prompt"]


@dataclass
class LatentSet:
    latents: torch.Tensor  # (N, C, h, w) float32, already multiplied by the VAE scaling factor
    captions: list[str]

    def __len__(self):
        return len(self.captions)

    def batch(self, index: torch.Tensor):
        return self.latents[index], [self.captions[i] for i in index.tolist()]


def read_prompts(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: prompt file not found (sd.prompts)")
    prompts = [l.strip() for l in p.read_text().splitlines() if l.strip() and not l.startswith("#")]
    if not prompts:
        raise DataError(f"{path}: no prompts (one prompt a line)")
    return prompts


def _caption_key(keys, wanted, where):
    key = _pick_key(list(keys), wanted, CAPTION_COLUMNS, where, "caption column")
    if key is None:
        raise DataError(f"{where}: no caption column (looked for {', '.join(CAPTION_COLUMNS)}; columns: "
                        f"{', '.join(keys)}); set sd.caption_column")
    return key


def _metadata(root: Path):
    if (root / "metadata.jsonl").is_file():
        rows = [json.loads(l) for l in (root / "metadata.jsonl").read_text().splitlines() if l.strip()]
        return rows, root / "metadata.jsonl"
    if (root / "metadata.csv").is_file():
        with (root / "metadata.csv").open(newline="") as f:
            return list(csv.DictReader(f)), root / "metadata.csv"
    return None, None


def _folder_with_captions(root: Path, data_cfg, column):
    rows, where = _metadata(root)
    if rows is None:
        return None
    if not rows or "file_name" not in rows[0]:
        raise DataError(f"{where}: needs a 'file_name' column")
    key = _caption_key(list(rows[0]), column, str(where))
    images, captions = [], []
    for r in rows:
        p = root / r["file_name"]
        if p.suffix.lower() not in IMAGE_EXTENSIONS or not p.is_file():
            raise DataError(f"{where}: image '{r['file_name']}' not found")
        im = _set_channels(_read_image(p)[None], 3, str(p))
        images.append(_resize(im, data_cfg.resolution)[0])
        captions.append(str(r[key]))
    return torch.stack(images), captions


def _hub_dataset(data_cfg):
    import datasets

    try:
        return datasets.load_dataset(data_cfg.source, split=data_cfg.split)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else e.__class__.__name__
        raise DataError(f"dataset '{data_cfg.source}' (split '{data_cfg.split}'): {msg}") from None


def _hub_with_captions(data_cfg, column):
    ds = _hub_dataset(data_cfg)
    cols = ds.column_names
    key = _caption_key(cols, column, data_cfg.source)
    ik = data_cfg.image_key or next((c for c in ["image", "img", "jpg", "png"] if c in cols), None)
    if ik is None or ik not in cols:
        raise DataError(f"dataset '{data_cfg.source}': no image column (columns: {', '.join(cols)}); set data.image_key")
    n = len(ds) if data_cfg.limit is None else min(len(ds), data_cfg.limit)
    images = []
    for i in range(n):
        im = ds[i][ik].convert("RGB")
        images.append(_resize(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None], data_cfg.resolution)[0])
    return torch.stack(images), [str(c) for c in ds[key][:n]]


def load_captioned_images(data_cfg, sd_cfg) -> tuple[torch.Tensor, list[str]]:
    """(images (N, 3, R, R) uint8, captions) from `data.source`; see the module docstring."""
    kind = source_kind(data_cfg.source)
    out = None
    if kind == "folder":
        out = _folder_with_captions(Path(data_cfg.source), data_cfg, sd_cfg.caption_column)
    elif kind == "hub":
        out = _hub_with_captions(data_cfg, sd_cfg.caption_column)
    if out is None:
        if sd_cfg.caption_column:
            raise DataError(f"{data_cfg.source}: sd.caption_column='{sd_cfg.caption_column}' but the source has no "
                            f"caption metadata (metadata.jsonl/metadata.csv)")
        s = load_images(dataclasses.replace(data_cfg, channels=3))
        if s.labels is None:
            raise DataError(f"{data_cfg.source}: no captions and no labels to fill sd.caption_template; add "
                            f"metadata.jsonl with file_name + text, or use sd.input=synthetic with sd.prompts")
        out = s.images, [sd_cfg.caption_template.format(label=int(y)) for y in s.labels]
    x, caps = out
    if data_cfg.limit is not None:
        x, caps = x[: data_cfg.limit], caps[: data_cfg.limit]
    return x, caps


def prompt_list(data_cfg, sd_cfg) -> list[str]:
    """Prompts for synthetic data: sd.prompts file, else a Hub dataset's caption column, else the
    captions of `data.source`."""
    if sd_cfg.prompts:
        return read_prompts(sd_cfg.prompts)
    if source_kind(data_cfg.source) == "hub":
        ds = _hub_dataset(data_cfg)
        return [str(c) for c in ds[_caption_key(ds.column_names, sd_cfg.caption_column, data_cfg.source)]]
    return load_captioned_images(data_cfg, sd_cfg)[1]


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """uint8 (N, 3, R, R) -> latents (N, C, R/f, R/f) = (latent_dist.mean - shift_factor) x scaling_factor
    (float32; the shift is 0 for the SD 1.x/SDXL VAEs, as diffusers' pipelines decode z / sf + shift)."""
    sf, dev, dt = vae.config.scaling_factor, vae.device, vae.dtype
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    out = []
    for chunk in images.split(batch):
        x = chunk.to(dev, dt).div(127.5).sub(1)
        out.append(((vae.encode(x).latent_dist.mean - shift) * sf).float().cpu())
    return torch.cat(out)


def _cache_key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@torch.no_grad()
def synthetic_latents(pipe, prompts: list[str], count: int, steps: int, guidance: float, resolution: int,
                      seed: int, cache_dir: Path, teacher_id: str, batch: int = 8, grid=None) -> LatentSet:
    """Teacher samples (LADD's synthetic data) as latents, generated once and cached; `grid` maps the
    pipeline's output_type="latent" result to (B, C, h, w) (Flux returns packed latents)."""
    from safetensors.torch import load_file, save_file

    caps = [prompts[i % len(prompts)] for i in range(count)]
    key = _cache_key(teacher_id, caps, steps, guidance, resolution, seed)
    f = Path(cache_dir) / f"synthetic-{key}.safetensors"
    if f.is_file():
        return LatentSet(load_file(str(f))["latents"], caps)
    lat = []
    for i in range(0, count, batch):
        g = torch.Generator().manual_seed(seed + i)
        out = pipe(caps[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, height=resolution,
                   width=resolution, generator=g, output_type="latent").images
        lat.append((grid(out) if grid is not None else out).float().cpu())
    latents = torch.cat(lat)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    save_file({"latents": latents.contiguous()}, str(tmp), metadata={"prompts": json.dumps(caps)})
    tmp.replace(f)
    return LatentSet(latents, caps)
