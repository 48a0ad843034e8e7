"""distill: adversarial distillation of diffusion models."""

__version__ = "0.1.0"

from .diffusion.pipelines import DistillPipeline, register_with_diffusers  # noqa: E402
from .diffusion.guided import GuidanceUNet2DModel  # noqa: E402  (loadable by diffusers)
from .diffusion.trajectory import TrajectoryScheduler, TrajectoryUNet2DModel  # noqa: E402  (loadable by diffusers)

register_with_diffusers()

__all__ = ["DistillPipeline", "GuidanceUNet2DModel", "TrajectoryScheduler", "TrajectoryUNet2DModel", "__version__"]
