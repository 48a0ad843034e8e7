"""distill: adversarial distillation of diffusion models."""

__version__ = "0.1.0"

from .diffusion.pipelines import DistillPipeline, register_with_diffusers  # noqa: E402

register_with_diffusers()

__all__ = ["DistillPipeline", "__version__"]
