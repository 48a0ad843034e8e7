import json
import math

import pytest
import yaml

from distill import cli
from distill.diagnostics.doctor import diagnose, load_run
from distill.errors import DistillError


@pytest.fixture(autouse=True)
def _only_our_commands(monkeypatch):
    # build_parser imports every registered command; keep the ones these tests exercise
    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("lab", "doctor")})


def cli_main(argv):
    return cli.main(argv)

N = 40


def healthy(i: int) -> dict:
    wiggle = 0.05 * math.sin(i * 1.7)
    return {"step": i * 100, "time": i * 1.0, "loss_g": 0.9 + wiggle, "loss_d": 1.2 - wiggle,
            "d_acc_real": 0.65 + wiggle, "d_acc_fake": 0.6 - wiggle, "grad_norm_g": 1.0 + wiggle,
            "grad_norm_d": 2.0, "class_coverage": 0.95 + wiggle / 5, "lr": 1e-4, "lr_d": 1e-4}


def write_run(path, rows, recipe=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if recipe is not None:
        (path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return path


def causes(path):
    return [f.key for f in diagnose(load_run(path))]


def planted(tmp_path, edit, recipe=None):
    rows = []
    for i in range(N):
        r = healthy(i)
        edit(i, r)
        rows.append(r)
    return write_run(tmp_path / "run", rows, recipe)


def test_healthy_run_has_no_findings(tmp_path):
    assert causes(planted(tmp_path, lambda i, r: None)) == []


def test_nonfinite_first(tmp_path):
    def edit(i, r):
        if i >= 30:
            r["loss_g"], r["grad_norm_g"] = "nan", "inf"
    found = diagnose(load_run(planted(tmp_path, edit)))
    assert found[0].key == "nonfinite" and "step 3000" in found[0].evidence


def test_d_too_strong_first(tmp_path):
    def edit(i, r):
        if i >= 10:
            r["d_acc_real"], r["d_acc_fake"] = 0.99, 0.98
    assert causes(planted(tmp_path, edit))[0] == "d_too_strong"


def test_g_loss_exploding_first(tmp_path):
    def edit(i, r):
        r["loss_g"] = 0.9 * 1.15**i
    assert causes(planted(tmp_path, edit))[0] == "g_loss_exploding"


def test_g_loss_flat_first(tmp_path):
    def edit(i, r):
        r["loss_g"] = 0.6931
    assert causes(planted(tmp_path, edit))[0] == "g_loss_flat"


def test_vanishing_generator_gradient_first(tmp_path):
    def edit(i, r):
        r["grad_norm_g"] = 10.0 ** (-i / 5)  # 1 -> 1e-8
    assert causes(planted(tmp_path, edit))[0] == "vanishing_g_grad"


def test_mode_collapse_first(tmp_path):
    def edit(i, r):
        r["class_coverage"] = 0.9 if i < 20 else 0.3
    assert causes(planted(tmp_path, edit))[0] == "mode_collapse"


def test_mode_collapse_from_lab_modes(tmp_path):
    def edit(i, r):
        del r["class_coverage"]
        r["modes"], r["modes_total"] = (8 if i < 20 else 2), 8
    assert causes(planted(tmp_path, edit))[0] == "mode_collapse"


def test_lr_imbalance_first_from_metrics(tmp_path):
    def edit(i, r):
        r["lr_d"] = 5e-4
    assert causes(planted(tmp_path, edit))[0] == "lr_imbalance"


def test_lr_imbalance_first_from_recipe(tmp_path):
    def edit(i, r):
        del r["lr"], r["lr_d"]
    recipe = {"train": {"learning_rate": 1e-4}, "discriminator": {"learning_rate": 1e-3}}
    found = diagnose(load_run(planted(tmp_path, edit, recipe)))
    assert found[0].key == "lr_imbalance" and "10x" in found[0].evidence


def test_too_little_data_first(tmp_path):
    def edit(i, r):
        r["d_acc_real"] = 0.9
    run = planted(tmp_path, edit, {"data": {"limit": 500}, "train": {"batch_size": 64}})
    found = diagnose(load_run(run))
    assert found[0].key == "little_data" and "500" in found[0].evidence


def test_dataset_size_from_metrics_row(tmp_path):
    def edit(i, r):
        r["dataset_size"] = 800
    assert causes(planted(tmp_path, edit))[0] == "little_data"


def test_teacher_run_keys(tmp_path):
    rows = [{"step": i * 50, "time": i, "loss": 0.5 / (1 + i) + 0.01 * math.sin(i), "grad_norm": 0.8, "lr": 1e-3}
            for i in range(N)]
    assert causes(write_run(tmp_path / "ok", rows)) == []
    rows[-1]["loss"] = "nan"
    assert causes(write_run(tmp_path / "bad", rows))[0] == "nonfinite"


def test_cli_text_json_and_errors(tmp_path, capsys):
    def edit(i, r):
        if i >= 10:
            r["d_acc_real"], r["d_acc_fake"] = 0.99, 0.98
    run = planted(tmp_path, edit)
    assert cli_main(["doctor", str(run)]) == 0
    out = capsys.readouterr().out
    assert "1. [" in out and "discriminator too strong" in out and "rerun protocol" in out
    assert cli_main(["doctor", str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0]["key"] == "d_too_strong" and data["rerun_protocol"]

    missing = tmp_path / "nope"
    assert cli_main(["doctor", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and len(err.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistillError, match="metrics.jsonl"):
        load_run(tmp_path / "empty")
    assert cli_main(["doctor", str(tmp_path / "empty")]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err


def test_planted_within_class_collapse(tmp_path):
    """Classes all present, but each drawn as one image: the distillation trap."""
    rows = [healthy(i) for i in range(N)]
    for i, r in enumerate(rows):
        r.update(class_coverage=1.0, diversity_ratio=max(0.1, 0.8 - 0.03 * i))
    assert causes(write_run(tmp_path / "run", rows))[0] == "within_class_collapse"


def test_planted_d_at_chance(tmp_path):
    rows = [healthy(i) for i in range(N)]
    for r in rows:
        r.update(d_acc_real=0.5, d_acc_fake=0.49, loss_d=2.0)
    assert causes(write_run(tmp_path / "run", rows))[0] == "d_at_chance"
    for r in rows:  # the same accuracy with diverse samples is not ranked as a fault
        r["diversity_ratio"] = 0.9
    found = {f.key: f.score for f in diagnose(load_run(write_run(tmp_path / "ok", rows)))}
    assert found.get("d_at_chance", 0) < 0.3


def test_coverage_peaking_at_the_last_row_is_not_a_fall(tmp_path):
    """Modes 6, 5, 8 at the last three evaluations: the best is the end, nothing fell."""
    rows = [healthy(i) for i in range(7)]
    for r, m in zip(rows, [0, 0, 3, 6, 6, 5, 8]):
        del r["class_coverage"]
        r["modes"], r["modes_total"] = m, 8
    assert "mode_collapse" not in causes(write_run(tmp_path / "run", rows))
    rows[-1]["modes"] = 5  # now it did fall from its peak of 6
    rows[3]["modes"] = 8
    assert "mode_collapse" in causes(write_run(tmp_path / "fell", rows))


def test_gan_monitor_fid_rising(tmp_path):
    """The GAN trainer logs the monitor's FID at its sample steps: rows of their own between loss rows."""
    rows = [healthy(i) for i in range(N)]
    fids = [{"step": i * 100, "fid": f, "class_coverage": 1.0, "diversity_ratio": 0.9}
            for i, f in zip(range(5, N, 5), [60.0, 30.0, 20.0, 18.0, 25.0, 35.0, 45.0])]
    assert causes(write_run(tmp_path / "run", rows + fids))[0] == "fid_rising"
    falling = [dict(r, fid=f) for r, f in zip(fids, [60.0, 30.0, 20.0, 18.0, 17.0, 16.5, 16.0])]
    assert "fid_rising" not in causes(write_run(tmp_path / "ok", rows + falling))
