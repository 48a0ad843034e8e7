"""Which folder is which, checked before anything loads or any server starts.

  pipeline    a DistillPipeline folder (model_index.json naming DistillPipeline; safetensors weights)
  gan         an exported GAN generator folder of any kind (config.json + safetensors)
  translator  a pix2pix / CycleGAN / SPADE run folder (its export: translator.json; or checkpoints/) or a checkpoint
              folder (state.json)

A run folder holds its export itself (a pipeline for `task: distill` / `teacher`, a generator for
`task: gan`); a run folder of the earlier layout stands for its `pipeline/` or `generator/`. Only local
folders are accepted (no Hub ids: nothing is downloaded), and pipelines of other classes (Stable
Diffusion and the other latent, text-prompted pipelines) are refused: the page serves class-conditional
pixel pipelines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DistillError

PIPELINE_CLASS = "DistillPipeline"


@dataclass(frozen=True)
class Folder:
    kind: str  # "pipeline" | "gan" | "translator"
    path: Path


def _pipeline(p: Path, what: str) -> Folder:
    try:
        index = json.loads((p / "model_index.json").read_text())
    except (OSError, ValueError) as e:
        raise DistillError(f"{what} {p / 'model_index.json'}: unreadable ({str(e).splitlines()[0]})") from None
    cls = index.get("_class_name") if isinstance(index, dict) else None
    if cls != PIPELINE_CLASS:
        raise DistillError(f"{what} {p}: a {cls} pipeline; distill demo serves class-conditional pixel pipelines "
                           f"({PIPELINE_CLASS}), not latent or text-prompted ones")
    if not any((p / "unet").glob("*.safetensors")):
        raise DistillError(f"{what} {p / 'unet'}: no .safetensors weights (only safetensors are loaded)")
    return Folder("pipeline", p)


def _is_gan(p: Path) -> bool:
    from ..gan.architectures import is_generator_folder

    return is_generator_folder(p)


def classify(path, what: str) -> Folder:
    """The folder `path` (argument `what`, for the message) as a Folder; a one-line DistillError otherwise."""
    from ..engine.checkpoint import checkpoint_dirs

    p = Path(path)
    if not p.exists():
        raise DistillError(f"{what} {p}: not found")
    if not p.is_dir():
        raise DistillError(f"{what} {p}: not a folder")
    from ..diffusion.pipelines import exported_pipeline
    from ..gan.architectures import exported_generator

    if (exported_pipeline(p) / "model_index.json").is_file():  # a pipeline or a distillation / teacher run folder
        return _pipeline(exported_pipeline(p), what)
    if _is_gan(p):  # a generator or a `task: gan` run folder
        return Folder("gan", exported_generator(p))
    from ..translate.export import is_export

    if is_export(p) or (p / "state.json").is_file() or checkpoint_dirs(p):
        return Folder("translator", p)
    raise DistillError(f"{what} {p}: not a pipeline folder (no model_index.json), a GAN generator folder, "
                       "a run folder or a translator checkpoint")


def expect(path, what: str, kinds: tuple[str, ...]) -> Folder:
    """`classify`, then the kind must be one of `kinds`."""
    folder = classify(path, what)
    if folder.kind not in kinds:
        raise DistillError(f"{what} {path}: a {folder.kind} folder, expected a {' or '.join(kinds)} folder")
    return folder
