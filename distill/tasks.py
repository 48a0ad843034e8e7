"""Task registry: `recipe.task` -> its recipe class and the function that runs it, both as
"module:name" strings, so reading a recipe imports only that task's code. Each run function takes
the recipe and returns the run folder."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .errors import RecipeError


@dataclass(frozen=True)
class Task:
    recipe: str  # "module:RecipeClass"
    run: str  # "module:function"
    about: str


TASKS = {
    "teacher": Task("distill.diffusion.recipe:TeacherRecipe", "distill.diffusion.train:train_teacher",
                    "train a pixel diffusion teacher"),
    "distill": Task("distill.distillation.recipe:DistillRecipe", "distill.distillation.loop:run_distill",
                    "distil a pixel teacher into a 1-4 step student"),
    "sd-distill": Task("distill.sd.config:SDDistillRecipe", "distill.sd.space:run_sd_distill",
                       "distil a Stable Diffusion teacher into a 1-4 step latent student"),
    "pix2pix": Task("distill.translate.config:TranslateRecipe", "distill.translate.train:train_pix2pix",
                    "train a paired image-to-image translator"),
    "cyclegan": Task("distill.translate.config:TranslateRecipe", "distill.translate.train:train_cyclegan",
                     "train an unpaired image-to-image translator"),
    "spade": Task("distill.translate.config:TranslateRecipe", "distill.translate.train:train_spade",
                  "train a label-map-to-photo translator (SPADE / GauGAN)"),
    "gan": Task("distill.gan.recipe:GANRecipe", "distill.gan.train:train_gan",
                "train a class-conditional StyleGAN2-class GAN from scratch"),
}


def _resolve(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def recipe_class(task, where: str = "<recipe>") -> type:
    if task not in TASKS:
        raise RecipeError(f"{where}: key 'task': unknown task '{task}' (choose from {', '.join(TASKS)})")
    return _resolve(TASKS[task].recipe)


def run_task(recipe):
    if recipe.task not in TASKS:
        raise RecipeError(f"recipe key 'task': unknown task '{recipe.task}' (choose from {', '.join(TASKS)})")
    return _resolve(TASKS[recipe.task].run)(recipe)
