"""Task registry: `recipe.task` -> the function that runs it, as "module:function" strings so
only the chosen trainer is imported. Each takes (recipe) and returns the run folder."""

from __future__ import annotations

import importlib

from .errors import RecipeError

TASKS = {
    "teacher": "distill.diffusion.train:train_teacher",
    "distill": "distill.distillation.loop:run_distill",
    "sd-distill": "distill.sd.loop:run_sd_distill",
    "pix2pix": "distill.translate.train:train_pix2pix",
    "cyclegan": "distill.translate.train:train_cyclegan",
}


def run_task(recipe):
    if recipe.task not in TASKS:
        raise RecipeError(f"recipe key 'task': unknown task '{recipe.task}' (choose from {', '.join(TASKS)})")
    module, fn = TASKS[recipe.task].split(":")
    return getattr(importlib.import_module(module), fn)(recipe)
