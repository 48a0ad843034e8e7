"""`distill classifier train`: an evaluation classifier for any data source, loaded back by
`eval.features: classifier:<path>`."""

import json

import pytest
import torch

from distill.cli import main as cli
from distill.errors import DistillError
from distill.eval.classifier import load_classifier
from distill.eval.fid import feature_extractor

from .image_fixtures import write_class_folder, write_split_folder


def test_train_on_rgb_split_folder_and_reload(tmp_path, capsys):
    data = write_split_folder(tmp_path / "scenes", per_class=6)
    out = tmp_path / "cls" / "scenes.safetensors"
    code = cli(["classifier", "train", "--data", str(data), "--channels", "3", "--resolution", "16",
                "--out", str(out), "--steps", "20", "--batch-size", "8", "--quiet"])
    assert code == 0, capsys.readouterr().err
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["classes"] == ["buildings", "forest", "sea"] and card["channels"] == 3
    assert card["resolution"] == 16 and card["steps"] == 20 and card["eval_split"] == "test"
    assert card["test_size"] == 18 and 0 <= card["test_accuracy"] <= 1
    assert "test accuracy" in out.with_suffix(".md").read_text()
    from huggingface_hub import ModelCard  # the .md is a Hub card: the test accuracy as its model-index

    meta = ModelCard.load(out.with_suffix(".md")).data
    assert (meta.library_name, meta.pipeline_tag) == ("pytorch", "image-classification")
    assert [(r.metric_value, r.dataset_split) for r in meta.eval_results] == [(round(card["test_accuracy"], 4), "test")]
    clf = load_classifier(str(out))  # channels, classes and input size from the file
    assert clf.config["in_channels"] == 3 and clf.config["num_classes"] == 3 and clf.config["input_size"] == 16
    feats = feature_extractor(f"classifier:{out}")
    assert feats(torch.zeros(5, 3, 32, 32)).shape == (5, 128)
    with pytest.raises(DistillError, match="expects 3-channel images, got 1"):
        feats(torch.zeros(2, 1, 16, 16))


def test_train_on_digits(tmp_path, capsys):
    out = tmp_path / "digits.safetensors"
    assert cli(["classifier", "train", "--data", "digits", "--resolution", "16", "--out", str(out),
                "--steps", "40", "--quiet"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["num_classes"] == 10 and card["test_accuracy"] > 0.5 and card["channels"] == 1
    assert feature_extractor(f"classifier:{out}")(torch.zeros(3, 1, 16, 16)).shape == (3, 128)


def test_class_folder_without_splits_has_no_test_accuracy(tmp_path, capsys):
    data = write_class_folder(tmp_path / "flat", per_class=3)
    out = tmp_path / "flat.safetensors"
    assert cli(["classifier", "train", "--data", str(data), "--channels", "3", "--resolution", "8",
                "--out", str(out), "--steps", "2", "--quiet"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["test_accuracy"] is None and "no split folders" in card["eval_note"]
    from huggingface_hub import ModelCard

    assert ModelCard.load(out.with_suffix(".md")).data.eval_results is None  # no accuracy claimed
    assert "no test accuracy" in capsys.readouterr().out


def test_refuses_out_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = cli(["classifier", "train", "--data", "digits", "--out", str(tmp_path / "afile" / "c.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a file" in err[0]
    assert not list(tmp_path.glob("*.json"))


def test_load_classifier_without_config_metadata(tmp_path):
    """A file without the config metadata: the architecture is read from the tensor shapes."""
    from safetensors.torch import save_file

    from distill.eval.classifier import ConvClassifier

    m = ConvClassifier(3, 4, 16)
    save_file(m.state_dict(), str(tmp_path / "bare.safetensors"), metadata={"info": json.dumps({"resolution": 16})})
    clf = load_classifier(str(tmp_path / "bare.safetensors"))
    assert clf.config["in_channels"] == 3 and clf.config["num_classes"] == 4 and clf.config["input_size"] == 16
    with pytest.raises(DistillError, match="not found"):
        load_classifier(str(tmp_path / "missing.safetensors"))
