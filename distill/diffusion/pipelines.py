"""`DistillPipeline`: a diffusers pipeline for the pixel-space teachers and their students.

Saved with `save_pretrained` (unet + scheduler, safetensors) and loaded with
`DistillPipeline.from_pretrained(path)`, or `DiffusionPipeline.from_pretrained(path)` once
`distill` is imported (it registers the class with diffusers, so no remote code is executed).
Swap the scheduler as in any diffusers pipeline:
`pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)`, or, checked against the model's
schedule family (a DDPM sampler on a flow-matching model is an error), with
`distill.diffusion.sampling.make_scheduler(name, pipe.scheduler.config)`.
The denoiser network sits under `unet` whatever its class (UNet2DModel, DiTTransformer2DModel); labels
reach it through its conditioning adapter (distill.diffusion.denoiser.LabelCond.of).
`class_names` (optional, in model_index.json): label id -> the data's class name, where the data names its
classes (image folders, Hub datasets with ClassLabel names); pipelines saved without it load with None.
A run exports its pipeline into the run folder itself (model_index.json beside checkpoints/, samples/,
report.md), as diffusers' training scripts do; `exported_pipeline` also finds the `pipeline/` subfolder
of run folders written before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor

from .sampling import null_label, sample


class DistillPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet"

    def __init__(self, unet, scheduler, class_names: Optional[list[str]] = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(class_names=list(class_names) if class_names else None)

    def class_name(self, label: int) -> str:
        """The data's name of class `label`, or the label itself where the pipeline stores no names."""
        names = self.config.get("class_names") or []
        return str(names[label]) if 0 <= label < len(names) else str(label)

    @property
    def num_classes(self) -> Optional[int]:
        return null_label(self.unet)

    @torch.no_grad()
    def __call__(
        self,
        class_labels: Optional[Union[int, list[int], torch.Tensor]] = None,
        batch_size: Optional[int] = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        generator: Optional[torch.Generator] = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ):
        param = next(self.unet.parameters())  # cheaper than _execution_device (walks every module)
        device = param.device
        if class_labels is not None:
            class_labels = torch.as_tensor(class_labels, device=device).long().reshape(-1)
            batch_size = class_labels.shape[0]
        elif self.num_classes is not None:  # unlabelled call of a conditional model: random classes
            batch_size = batch_size or 1
            class_labels = torch.randint(0, self.num_classes, (batch_size,), generator=generator).to(device)
        batch_size = batch_size or 1
        cfg = self.unet.config
        shape = (batch_size, cfg.in_channels, cfg.sample_size, cfg.sample_size)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=param.dtype)
        x = sample(self.unet, self.scheduler, noise, class_labels, num_inference_steps, guidance_scale, generator)
        images = (x / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            out = images
        else:
            out = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                out = self.numpy_to_pil(out)
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)


def exported_pipeline(folder: Union[str, Path]) -> Union[str, Path]:
    """The pipeline a folder stands for: `folder` itself (a pipeline folder, a run folder, a Hub id), or its
    `pipeline/` when only that holds a model_index.json (a run folder of the earlier layout)."""
    p = Path(folder)
    if not (p / "model_index.json").is_file() and (p / "pipeline" / "model_index.json").is_file():
        return str(p / "pipeline") if isinstance(folder, str) else p / "pipeline"
    return folder


def register_with_diffusers() -> None:
    """Make `DiffusionPipeline.from_pretrained` resolve `_class_name: DistillPipeline`."""
    import diffusers

    if getattr(diffusers, "DistillPipeline", None) is not DistillPipeline:
        setattr(diffusers, "DistillPipeline", DistillPipeline)
