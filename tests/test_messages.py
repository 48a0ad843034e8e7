"""Messages through logging (accelerate's logger, main process only), `distill --quiet/--verbose`, and
`train.report_to` choosing accelerate's tracker."""

from __future__ import annotations

import yaml

from distill.cli import main as cli
from distill.config import TRACKERS

from .conftest import tiny_recipe_dict

INFO_LINES = ("threads: ", "projected: ", "train.mixed_precision=auto")


def _recipe(tmp_path, name, **train):
    r = tiny_recipe_dict(tmp_path / name, max_steps=4, mixed_precision="auto", **train)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return path, tmp_path / name / "run"


def _events(run_dir):
    return sorted(p.name for p in (run_dir / "logs").rglob("events.out.tfevents.*")) if (run_dir / "logs").exists() else []


def test_trackers_are_accelerates():
    from accelerate.utils import LoggerType

    assert set(TRACKERS) == {t.value for t in LoggerType} | {"none"}


def test_quiet_silences_the_info_lines_and_report_to_none_writes_no_events(tmp_path, capsys):
    loud, loud_dir = _recipe(tmp_path, "loud")
    assert cli(["run", str(loud)]) == 0
    out = capsys.readouterr()
    said = [l for l in out.out.splitlines() if l.startswith(INFO_LINES)]
    assert {l.split(":")[0].split("=")[0] for l in said} >= {"threads", "projected", "train.mixed_precision"}, out.out
    assert _events(loud_dir), "the default tracker (tensorboard, installed here) writes events under logs/"

    quiet, quiet_dir = _recipe(tmp_path, "quiet", report_to="none")
    assert cli(["--quiet", "run", str(quiet)]) == 0
    out = capsys.readouterr()
    assert not [l for l in (out.out + out.err).splitlines() if l.startswith(INFO_LINES)], out
    assert "it/s" not in out.err and "tiny" not in out.err  # no progress bar either
    assert out.out.strip() == f"run folder: {quiet_dir}"  # the command's own output stays
    assert (quiet_dir / "metrics.jsonl").is_file() and _events(quiet_dir) == []


def test_verbose_adds_debug_lines(tmp_path, capsys):
    path, _ = _recipe(tmp_path, "v", report_to="none")
    assert cli(["--verbose", "run", str(path), "train.max_steps=1"]) == 0
    assert "tracker: none (train.report_to=none)" in capsys.readouterr().out
    assert cli(["--quiet", "--verbose", "run", str(path)]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_bad_report_to_is_one_line_naming_the_key(tmp_path, capsys):
    path, run_dir = _recipe(tmp_path, "bad")
    assert cli(["run", str(path), "train.report_to=tensorbord"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "report_to" in err and "tensorboard" in err, err
    assert not run_dir.exists()


def test_missing_tracker_package_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    path, run_dir = _recipe(tmp_path, "nomlflow", report_to="mlflow")
    assert cli(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "train.report_to=mlflow" in err and "pip install mlflow" in err, err
    assert not (run_dir / "recipe.yaml").exists() and not (run_dir / "logs").exists()


def test_messages_before_the_accelerator_come_from_the_main_process_only(monkeypatch, capsys):
    from accelerate.state import PartialState

    from distill.engine.messages import get_logger

    log = get_logger("distill.test")
    monkeypatch.setattr(PartialState, "_shared_state", {})  # no accelerator yet in this process
    monkeypatch.setenv("RANK", "1")
    log.info("from rank 1")
    log.info("every rank", main_process_only=False)
    monkeypatch.setenv("RANK", "0")
    log.info("from rank 0")
    assert capsys.readouterr().out.splitlines() == ["every rank", "from rank 0"]
