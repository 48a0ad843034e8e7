"""A run folder is its export, as diffusers' training scripts leave `output_dir`: model_index.json (a GAN's
config.json) beside checkpoints/, samples/, report.md. Run folders of the earlier layout, with the export in
`pipeline/` or `generator/`, still load wherever the toolkit reads runs."""

import shutil
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline

import distill  # noqa: F401
from distill.bench.compare import is_pipeline, resolve
from distill.cli import main as cli
from distill.config import recipe_from_dict
from distill.demo.folders import Folder, classify
from distill.diffusion.pipelines import exported_pipeline
from distill.diffusion.teachers import load_teacher
from distill.diffusion.train import train_teacher
from distill.gan.architectures import exported_generator, is_generator_folder, load_generator
from distill.gan.train import train_gan

from .conftest import tiny_recipe_dict
from .test_gan_train import tiny_gan

PIPELINE_FILES = ["model_index.json", "unet", "scheduler", "README.md"]
GENERATOR_FILES = ["config.json", "diffusion_pytorch_model.safetensors", "README.md"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> Path:
    return train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path_factory.mktemp("teacher"), max_steps=2,
                                                           checkpoint_every=2)))


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory) -> Path:
    return train_gan(recipe_from_dict(tiny_gan(tmp_path_factory.mktemp("gan"), max_steps=2, checkpoint_every=2,
                                               sample_every=2)))


def earlier_layout(run: Path, dest: Path, sub: str, names: list[str]) -> Path:
    """A copy of `run` as the toolkit wrote it before: the export's files `names` in `dest/sub/`."""
    shutil.copytree(run, dest)
    (dest / sub).mkdir()
    for name in names:
        shutil.move(str(dest / name), str(dest / sub / name))
    return dest


def test_teacher_run_folder_is_its_pipeline(teacher_run):
    for f in [*PIPELINE_FILES, "recipe.yaml", "metrics.jsonl", "checkpoints/checkpoint-2", "samples"]:
        assert (teacher_run / f).exists(), f
    pipe = DiffusionPipeline.from_pretrained(str(teacher_run))  # the run's own files are not components
    assert type(pipe).__name__ == "DistillPipeline" and set(pipe.components) == {"unet", "scheduler"}
    assert exported_pipeline(teacher_run) == teacher_run and exported_pipeline("org/name") == "org/name"
    assert classify(teacher_run, "MODEL") == Folder("pipeline", teacher_run)


def test_earlier_pipeline_run_folder_still_loads(teacher_run, tmp_path, capsys):
    old = earlier_layout(teacher_run, tmp_path / "old", "pipeline", PIPELINE_FILES)
    assert exported_pipeline(old) == old / "pipeline" and exported_pipeline(str(old)) == str(old / "pipeline")
    new, again = load_teacher(str(teacher_run)).unet, load_teacher(str(old)).unet
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), again.state_dict().values()))
    assert classify(old, "MODEL") == Folder("pipeline", old / "pipeline")  # distill demo
    assert resolve(str(old), "--teacher", is_pipeline, "pipeline", "a pipeline").path == old / "pipeline"  # compare
    out = tmp_path / "grid.png"
    assert cli(["sample", str(old), "--steps", "2", "--classes", "1", "2", "--per-class", "1", "--out", str(out)]) == 0
    assert out.is_file(), capsys.readouterr().err
    (old / "pipeline" / "model_index.json").unlink()  # neither layout: a one-line error naming the folder
    assert cli(["sample", str(old), "--out", str(out)]) == 2
    assert "not a pipeline folder" in capsys.readouterr().err


def test_gan_run_folder_is_its_generator_and_earlier_ones_load(gan_run, tmp_path, capsys):
    for f in [*GENERATOR_FILES, "recipe.yaml", "checkpoints/checkpoint-2", "samples/step-0000002.png"]:
        assert (gan_run / f).exists(), f
    G = load_generator(gan_run)
    assert type(G).__name__ == "StyleGAN2Generator" and exported_generator(gan_run) == gan_run
    old = earlier_layout(gan_run, tmp_path / "old", "generator", GENERATOR_FILES)
    assert exported_generator(old) == old / "generator" and is_generator_folder(old)
    again = load_generator(old)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), again.state_dict().values()))
    assert classify(old, "MODEL") == Folder("gan", old / "generator")
    out = tmp_path / "grid.png"
    assert cli(["sample", str(old), "--per-class", "1", "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.is_file()
