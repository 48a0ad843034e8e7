"""The weights shipped in distill/assets: every teacher, GAN and evaluation classifier loads from
safetensors, draws images of its own size, and carries a model card whose best FID is the one in
its eval JSON (the card is written from the JSON; a hand edit or a stale copy would break this)."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from distill.config import load_recipe
from distill.diffusion.teachers import load_teacher, resolve_teacher_path
from distill.eval.classifier import ASSETS, load_classifier
from distill.gan.architectures import load_generator

TEACHERS = sorted(p.name for p in (ASSETS / "teachers").iterdir() if p.is_dir())
GANS = sorted(p.name for p in (ASSETS / "gans").iterdir() if p.is_dir())
CLASSIFIERS = sorted(p.stem.removeprefix("classifier-") for p in ASSETS.glob("classifier-*.safetensors"))


def test_assets_are_listed():
    assert {"digits", "mnist", "cifar10"} <= set(TEACHERS) and "mnist" in GANS
    assert {"digits", "mnist", "cifar10"} <= set(CLASSIFIERS)


def no_pickles(folder: Path) -> None:
    """Weights ship as safetensors only: nothing a loader would unpickle."""
    bad = [p for p in folder.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert not bad, bad


def best_fid(rows: list[dict]) -> float:
    return min(float(r["fid"]) for r in rows)


def card_best(card: str) -> float:
    """The FID of the card's "Best: ..." line."""
    m = re.search(r"Best: .*FID ([0-9]+(?:\.[0-9]+)?)", card)
    assert m, "model card without a Best: line"
    return float(m.group(1))


@pytest.mark.parametrize("name", TEACHERS)
def test_shipped_teacher(name):
    folder = Path(resolve_teacher_path(f"shipped:{name}"))
    no_pickles(folder)
    recipe = load_recipe(folder / "recipe.yaml")  # the recipe that trained it parses and validates
    assert recipe.task == "teacher"
    pipe = load_teacher(str(folder))
    cfg = pipe.unet.config
    g = torch.Generator().manual_seed(0)
    x = pipe(class_labels=[0, 1], num_inference_steps=2, generator=g, output_type="pt").images
    assert x.shape == (2, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    assert torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1 and x.std() > 0.01
    rows = json.loads((folder / "eval" / "eval-teacher.json").read_text())
    assert rows and all(r["num_samples"] == rows[0]["num_samples"] for r in rows)
    assert card_best((folder / "README.md").read_text()) == pytest.approx(best_fid(rows), abs=1e-3)


@pytest.mark.parametrize("name", GANS)
def test_shipped_gan(name):
    folder = ASSETS / "gans" / name
    no_pickles(folder)
    assert yaml.safe_load((folder / "recipe.yaml").read_text())["task"] == "gan"
    G = load_generator(folder)
    z = torch.randn(3, G.config.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = G(z, torch.tensor([0, 1, 2]))
        x_trunc = G(z, torch.tensor([0, 1, 2]), truncation=0.0)  # psi 0: every sample is the class centre
    assert x.shape[0] == 3 and torch.isfinite(x).all() and x.std() > 0.01
    assert (x_trunc[0] - x_trunc[1]).abs().max() > 1e-3  # classes differ at the centre
    rows = json.loads((folder / "eval" / "eval-gan.json").read_text())
    fids = {float(r["truncation"]): float(r["fid"]) for r in rows}
    card = (folder / "README.md").read_text()
    for psi, fid in fids.items():  # the card's table row for each psi holds its FID
        assert re.search(rf"\| {psi:g} \| {fid:.4g} \|", card), (psi, fid)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_shipped_classifier(name):
    model = load_classifier(name)
    c, r = model.config["in_channels"], model.config["input_size"]
    with torch.no_grad():
        logits = model(torch.rand(2, c, r, r) * 2 - 1)
    assert logits.shape == (2, model.config["num_classes"]) and torch.isfinite(logits).all()
