"""The pixel space of the distillation loop: a class-conditional UNet2DModel or DiT teacher (DDPM schedule or flow
matching) exported as a DistillPipeline, images with labels, the identity codec, and the coverage check as the
monitor. The student is exported with `student_scheduler`: an LCMScheduler at the student timesteps, or for a flow
teacher a FlowMatchEulerDiscreteScheduler with stochastic_sampling (x0, then fresh noise to the next sigma).

A space is everything the one loop (distill.distillation.loop) needs to know about where the
student works; the latent space of Stable Diffusion teachers is distill.sd.space.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from pathlib import Path

import torch

from ..data import load_images
from ..diffusion.denoiser import Denoiser
from ..diffusion.pipelines import DistillPipeline
from ..diffusion.sampling import noise_scheduler_from, student_scheduler
from ..diffusion.teachers import load_teacher, resolve_teacher_path
from ..diffusion.guided import GuidanceUNet2DModel
from ..diffusion.trajectory import TrajectoryScheduler, TrajectoryUNet2DModel
from ..discriminator import build_backbone
from ..engine.randomness import shard
from ..engine.messages import get_logger
from ..errors import DistillError, RecipeError
from .recipe import sampler_grid_steps
from .space import DistillationSpace

logger = get_logger(__name__)


class PixelSpace(DistillationSpace):
    tag = "distill"  # names the random stream of every draw
    label = "distill"

    def __init__(self, recipe):
        self.recipe = recipe

    def check_launch(self, accelerator) -> None:
        if self.recipe.discriminator.backbone == "fake_score" and accelerator.num_processes > 1:
            raise RecipeError("discriminator.backbone=fake_score runs in one process only (the fake score network would sit "
                              "in two DDP wrappers): use discriminator.backbone=teacher for multi-process runs")

    def load(self, engine) -> None:
        """Teacher (frozen Denoiser) and data; the data's resolution and channels are the teacher's."""
        r = self.recipe
        self.pipe = load_teacher(resolve_teacher_path(r.distill.teacher))
        net = self.pipe.unet.requires_grad_(False).eval()
        self.noise_scheduler = noise_scheduler_from(self.pipe.scheduler.config)
        self.teacher = Denoiser.from_scheduler(net, self.noise_scheduler)
        cfg = net.config
        for key, want in (("resolution", cfg.sample_size), ("channels", cfg.in_channels)):
            got = getattr(r.data, key)
            if got is not None and got != want:
                raise RecipeError(f"data.{key}={got} disagrees with the teacher's {want} ({r.distill.teacher}): "
                                  f"drop the key or choose another teacher")
        data_cfg = dataclasses.replace(r.data, resolution=cfg.sample_size, channels=cfg.in_channels)
        self.data = load_images(data_cfg)
        self.num_classes = self.teacher.cond.null_label
        if self.num_classes is None and self.data.labels is not None:  # e.g. a DDPMPipeline teacher, labelled data
            warnings.warn(f"{r.distill.teacher}: the teacher is unconditional; the labels of {data_cfg.source} are "
                          "not used and the student is unconditional", stacklevel=2)
            self.data = dataclasses.replace(self.data, labels=None, num_classes=None)
        if self.num_classes is not None and self.data.labels is None:
            raise DistillError(f"{data_cfg.source}: the teacher is class-conditional but the data has no labels")
        self.data.check_labels(self.num_classes)  # labels beyond the teacher's classes: one-line error
        net.to(engine.device)

    def student_timesteps(self, ts):
        """The student's timesteps as the loop uses them, checked against the teacher's schedule."""
        return self.teacher.student_timesteps(ts)

    @property
    def trajectory(self) -> bool:
        """A trajectory student (consistency.kind ctm): the network takes its target time."""
        r = self.recipe
        return r.distill.lambda_consistency > 0 and r.consistency.kind == "ctm"

    def make_student(self):
        """(student network initialised from the teacher, its trainable parameters); a trajectory student is the
        teacher's UNet with a zero-initialised jump embedding (TrajectoryUNet2DModel.from_unet), a w-conditioned one
        with a zero-initialised guidance embedding (GuidanceUNet2DModel.from_unet)."""
        net = copy.deepcopy(self.teacher.net)
        told, key = ((TrajectoryUNet2DModel, "consistency.kind=ctm") if self.trajectory else
                     (GuidanceUNet2DModel, "consistency.guidance_range") if self.recipe.consistency.guidance_range else
                     (None, None))
        if told is not None:  # a student told more than its timestep: the teacher's UNet plus a zero embedding
            if type(net).__name__ != "UNet2DModel":
                raise RecipeError(f"{key}: {told.__name__} students are built on UNet2DModel teachers, "
                                  f"not {type(net).__name__}")
            net = told.from_unet(net)
        net = net.requires_grad_(True).train()
        return net, list(net.parameters())

    def make_fake_score(self):
        """DMD2's fake score network: the teacher's architecture and weights (no random draws)."""
        return copy.deepcopy(self.teacher.net).requires_grad_(True).train()

    def student_weights(self, net):
        return net

    def backbone(self, fake_score):
        dc = self.recipe.discriminator
        return build_backbone(dc.backbone, self.teacher.net, self.teacher, dc.backbone_layers or None,
                              dc.backbone_pretrained, dc.backbone_img_size, fake_score=fake_score)

    @property
    def head_classes(self):
        return self.num_classes

    head_cond_dim = None

    def batch(self, idx):
        """(x0 (n, C, H, W), labels (n,) or None) of the global batch."""
        return self.data.batch(idx)

    def shard_cond(self, y, rank: int, P: int, device):
        return shard(y, rank, P).to(device) if y is not None else None

    @staticmethod
    def cat_cond(a, b):
        return torch.cat([a, b]) if a is not None else None

    def discriminate(self, disc, x, cond, t_d, noise, u, **kw):
        return disc(x, cond, t_d, noise, u, **kw)

    def teacher_mode(self):
        return contextlib.nullcontext()

    def regression_pair(self, fake, target):
        return fake, target

    def monitor(self, student_net, step: int, run_dir: Path):
        """The coverage check of the EMA student (class accuracy, coverage, within-class diversity)."""
        r = self.recipe
        if not r.distill.coverage_classifier:
            return None
        from .monitor import coverage_check

        cov = coverage_check(student_net, self.noise_scheduler, r.distill, self.data,
                             run_dir / "samples" / f"step-{step:07d}.png", r.train.seed)
        if cov.get("collapse_warning"):
            warnings.warn(f"step {step}: possible mode collapse: {cov['collapse_warning']}", stacklevel=1)
        return cov

    def gather_student(self, accelerator, raw_student, prepared):
        return raw_student

    def export(self, student_net, folder: Path) -> None:
        r = self.recipe
        if self.trajectory:  # gamma-sampling on the solver grid, from its top down (1, 2, 4, 8 ... steps)
            grid = self.teacher.solver_grid(r.consistency.solver_steps)[1:].flip(0).tolist()
            sched = TrajectoryScheduler(schedule=dict(self.noise_scheduler.config), timesteps=grid,
                                        gamma=r.consistency.gamma)
        else:
            sched = student_scheduler(self.noise_scheduler.config, r.distill.student_timesteps, sampler_grid_steps(r))
        names = (self.data.class_names or self.pipe.config.get("class_names")) if self.num_classes else None
        DistillPipeline(unet=student_net, scheduler=sched, class_names=names).save_pretrained(str(folder))

    def report(self, run_dir: Path) -> None:
        """Evaluation, latency and report.md (eval.num_samples > 0)."""
        if self.recipe.eval.num_samples <= 0:
            return
        from .report import write_distill_report

        logger.info(f"report: {write_distill_report(self.recipe, run_dir)}")
