"""Model cards through huggingface_hub.ModelCard: metadata the Hub parses (library_name, pipeline_tag,
base_model, model-index FIDs read from the eval rows), written by teacher training, the distillation report
(tests/test_distill.py::test_run_distill_writes_report) and scripts/ship_teacher.py; `distill bench compare` reads the training time from the metadata."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from distill.cards import hub_id, student_card, teacher_card, training_seconds
from distill.config import recipe_from_dict
from distill.distillation.recipe import method_name
from distill.diffusion.teachers import load_teacher, resolve_teacher_path

from .conftest import tiny_recipe_dict

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "distill" / "assets" / "teachers"
ROWS = [{"steps": s, "scheduler": "ddim", "guidance_scale": g, "num_samples": 200, "features": "classifier:digits",
         "fid": fid, "kid": 1.0, "class_acc": 0.9, "intra_class_dist": 9.0} for s, g, fid in
        [(1, 1.0, 90.5), (4, 1.0, 6.25), (25, 2.0, 3.125)]]


def _meta(folder):
    return ModelCard.load(Path(folder) / "README.md").data


def test_teacher_card_metadata_parses_with_every_fid(tmp_path):
    teacher = load_teacher(resolve_teacher_path("shipped:digits"))
    recipe = recipe_from_dict(tiny_recipe_dict(tmp_path))
    teacher_card(recipe, teacher.unet, ROWS, 600.0, 6, 0.25, "test CPU").save(tmp_path / "README.md")
    data = _meta(tmp_path)
    assert (data.library_name, data.pipeline_tag) == ("diffusers", "unconditional-image-generation")
    assert {"distill", "diffusion", "class-conditional"} <= set(data.tags)
    assert [(r.metric_type, r.metric_value, r.metric_name) for r in data.eval_results] == \
        [("fid", 90.5, "FID, 1 steps"), ("fid", 6.25, "FID, 4 steps"), ("fid", 3.125, "FID, 25 steps at guidance 2")]
    assert data.eval_results[0].metric_config == "classifier:digits features, 200 samples, ddim sampler"
    assert data.to_dict()["distill"]["training_steps"] == 6 and training_seconds(tmp_path) == 600.0
    text = (tmp_path / "README.md").read_text()
    assert "Best: 25 steps at guidance 2, FID 3.125." in text and "wall time 10.0 min" in text


def test_student_card_names_a_hub_teacher_as_base_model(tmp_path):
    teacher = load_teacher(resolve_teacher_path("shipped:digits"))
    from tests.test_distill import distill_recipe_dict

    for spec, base in [("google/ddpm-cifar10-32", "google/ddpm-cifar10-32"), (str(SHIPPED / "digits"), None),
                       ("shipped:digits", None)]:
        recipe = recipe_from_dict(distill_recipe_dict(tmp_path, spec))
        folder = tmp_path / str(abs(hash(spec)))
        folder.mkdir()
        student_card(recipe, teacher.unet, ROWS[:2], ROWS[2], None, "test CPU", 7,
                     method_name(recipe)).save(folder / "README.md")
        data = _meta(folder)
        assert data.base_model == base and data.to_dict()["distill"]["teacher"] == spec
        assert data.to_dict()["distill"]["teacher_best_fid"] == 3.125 and "training_seconds" not in data.to_dict()["distill"]
        assert {"distillation", "few-step"} <= set(data.tags) and len(data.eval_results) == 2
        assert data.to_dict()["distill"]["training_steps"] == 7
        assert data.to_dict()["distill"]["method"] == "score distillation (ADD) + adversarial"
    assert hub_id("digits") is None and hub_id("ylecun/mnist") == "ylecun/mnist" and hub_id("./a/b") is None


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()))
def test_shipped_teacher_cards_carry_their_eval_rows(name):
    folder = SHIPPED / name
    rows = json.loads((folder / "eval" / "eval-teacher.json").read_text())
    data = _meta(folder)
    assert data.library_name == "diffusers" and data.pipeline_tag == "unconditional-image-generation"
    assert [r.metric_value for r in data.eval_results] == [round(r["fid"], 4) for r in rows]
    assert training_seconds(folder) > 60


def test_teacher_run_exports_a_card_and_bench_reads_its_time(tmp_path):
    from distill.bench.compare import train_wall
    from distill.diffusion.train import train_teacher

    run_dir = train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path, max_steps=2)))
    data = _meta(run_dir)
    assert data.library_name == "diffusers" and data.eval_results is None  # eval.num_samples 0: no FID claimed
    secs = training_seconds(run_dir)
    assert secs is not None and secs >= 0
    (run_dir / "metrics.jsonl").unlink()  # the card alone, as a shipped teacher carries it
    (run_dir / "README.md").write_text((run_dir / "README.md").read_text().replace(
        f"training_seconds: {secs}", "training_seconds: 1234.5"))
    assert train_wall([run_dir]) == (1234.5, str(run_dir / "README.md"))
    (tmp_path / "prose").mkdir()
    (tmp_path / "prose" / "README.md").write_text("# a card\n\nwall time 12.0 min\n")  # prose is not read
    assert train_wall([tmp_path / "prose"]) == (None, None)



def test_shipped_classifier_card_carries_its_json():
    from distill.eval.classifier import ASSETS

    info = json.loads((ASSETS / "classifier-cifar10.json").read_text())
    data = ModelCard.load(ASSETS / "classifier-cifar10.md").data
    assert (data.library_name, data.pipeline_tag) == ("pytorch", "image-classification")
    assert [(r.metric_type, r.metric_value, r.dataset_split) for r in data.eval_results] == \
        [("accuracy", round(info["test_accuracy"], 4), info["eval_split"])]
    assert data.to_dict()["distill"]["training_seconds"] == info["wall_seconds"]


def test_method_name_follows_the_weighted_terms(tmp_path):
    from tests.test_distill import distill_recipe_dict

    def name(**distill):
        d = distill_recipe_dict(tmp_path, "shipped:digits")
        kind = distill.pop("kind", "lcm")
        d["distill"] = {**d.get("distill", {}), **distill}
        d["consistency"] = {**d.get("consistency", {}), "kind": kind}
        return method_name(recipe_from_dict(d))

    assert name(lambda_adv=1.0, lambda_distill=2.5, lambda_dmd=0.0) == "score distillation (ADD) + adversarial"
    assert name(lambda_adv=0.1, lambda_distill=0.0, lambda_dmd=1.0) == "distribution matching (DMD2) + adversarial"
    assert name(lambda_adv=0.0, lambda_distill=0.0, lambda_consistency=1.0) == "consistency distillation (LCM)"
    assert name(lambda_adv=0.1, lambda_distill=0.0, lambda_consistency=1.0, kind="ctm") == \
        "trajectory distillation (CTM) + adversarial"


def test_latent_student_card_metadata_parses(tmp_path):
    from distill.cards import latent_student_card
    from distill.config import load_recipe

    timing = {"student, 1 step": 0.25, "student, 4 steps": 0.5}
    for teacher, base in [("stabilityai/sd-turbo", "stabilityai/sd-turbo"), (str(tmp_path / "teacher"), None)]:
        recipe = load_recipe(ROOT / "recipes" / "tiny-sd.yaml", [f"distill.teacher={teacher}"])
        latent_student_card(recipe, "StableDiffusionPipeline", timing, "samples/grid.png", 90.0, 2,
                            "test CPU", method_name(recipe)).save(tmp_path / "README.md")
        data = _meta(tmp_path)
        assert (data.library_name, data.pipeline_tag, data.base_model) == ("diffusers", "text-to-image", base)
        assert {"distillation", "text-to-image", "StableDiffusionPipeline"} <= set(data.tags)
        facts = data.to_dict()["distill"]
        assert facts["lora_rank"] == recipe.sd.lora_rank and facts["training_seconds"] == 90.0
        text = (tmp_path / "README.md").read_text()
        assert "| student, 4 steps | 0.50 |" in text and "load_lora_weights" in text
