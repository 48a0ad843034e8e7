"""docs/recipes.md is generated from the recipe classes and must not drift from them."""

import dataclasses
import importlib.util
import typing
from pathlib import Path

from distill.tasks import TASKS, recipe_class

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("recipe_reference", ROOT / "scripts" / "recipe_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_recipes_md_is_current():
    text = (ROOT / "docs" / "recipes.md").read_text()
    assert _script().render() == text, "docs/recipes.md is stale: run python scripts/recipe_reference.py"


def test_every_key_of_every_task_is_documented():
    text = (ROOT / "docs" / "recipes.md").read_text()
    for task in TASKS:
        cls = recipe_class(task)
        assert f"## task: {task}" in text
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                assert f"### `{f.name}:` ({hints[f.name].__name__})" in text
                for g in dataclasses.fields(hints[f.name]):
                    assert f"| `{g.name}` |" in text, f"{task}: {f.name}.{g.name}"


def test_comments_become_meanings():
    from distill.distillation.recipe import DistillConfig

    comments = _script().field_comments(DistillConfig)
    assert "1-step student" in comments["student_timesteps"]  # the comment line above the field
    assert "ADD regression term" in comments["lambda_distill"]  # the trailing comment
