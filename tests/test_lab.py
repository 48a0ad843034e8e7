import json

import pytest
import torch

from distill import cli
from distill.errors import DistillError


@pytest.fixture(autouse=True)
def _only_our_commands(monkeypatch):
    # build_parser imports every registered command; keep the ones these tests exercise
    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("lab", "doctor")})


def cli_main(argv):
    return cli.main(argv)
from distill.diagnostics.lab.toy import DATASETS, count_modes, get_dataset
from distill.diagnostics.lab.train import LabConfig, resolve, train_lab


@pytest.mark.parametrize("name,k,dim", [("ring", 8, 2), ("grid", 25, 2), ("gmm1d", 2, 1)])
def test_datasets_and_counter_on_real_samples(name, k, dim):
    ds = get_dataset(name)
    assert ds.centers.shape == (k, dim)
    x = ds.sample(2500, torch.Generator().manual_seed(0))
    assert x.shape == (2500, dim)
    stats = count_modes(x, ds)
    assert stats.modes == k and stats.n_modes == k
    assert stats.hq_fraction > 0.97  # 3 std hold ~99 % of a Gaussian


def test_mode_counter_on_planted_samples():
    ds = get_dataset("ring")
    c = ds.centers
    near = torch.cat([c[0].repeat(1000, 1), c[3].repeat(600, 1) + torch.tensor([2.5 * ds.std, 0.0]),  # inside 3 std
                      c[5].repeat(10, 1)])  # too few (< 20) to count
    far = torch.zeros(890, 2)  # the centre of the ring: no mode
    stats = count_modes(torch.cat([near, far]), ds)
    assert stats.modes == 2
    assert stats.counts[0] == 1000 and stats.counts[3] == 600 and stats.counts[5] == 10
    assert stats.hq_fraction == pytest.approx(1610 / 2500)
    assert count_modes(torch.cat([near, far]), ds, min_count=5).modes == 3
    # just outside 3 std does not count
    assert count_modes(c[1].repeat(100, 1) + torch.tensor([3.1 * ds.std, 0.0]), ds).modes == 0


def test_bad_names_raise_one_line_errors():
    with pytest.raises(DistillError, match="unknown loss"):
        resolve(LabConfig(loss="bogus"))
    with pytest.raises(DistillError, match="unknown regulariser"):
        resolve(LabConfig(reg=["bogus"]))
    with pytest.raises(DistillError, match="unknown toy dataset"):
        resolve(LabConfig(dataset="moons"))
    assert resolve(LabConfig(loss="wgan-gp", reg=["sn"])) == ("wgan", ["sn", "gp"])
    assert resolve(LabConfig(loss="r3gan")) == ("rpgan", ["r1", "r2"])
    assert resolve(LabConfig(loss="progan")) == ("wgan", ["gp", "drift"])
    assert resolve(LabConfig(loss="biggan")) == ("hinge", ["sn", "ortho"])
    assert cli_main(["lab", "--loss", "bogus", "--out", "/nonexistent/never"]) == 2


@pytest.mark.parametrize("loss,reg", [("saturating", ["mbdisc"]), ("wgan-clip", []), ("lsgan", ["r1", "sn"]),
                                      ("hinge", ["mbstd", "gp"]), ("r3gan", []), ("rpgan", ["r2"]), ("progan", []),
                                      ("biggan", [])])
def test_every_loss_and_regulariser_runs(loss, reg):
    torch.set_num_threads(1)
    res = train_lab(LabConfig(loss=loss, reg=reg, steps=20, eval_every=10, progress=False, batch_size=32,
                              eval_samples=200))
    assert [r["step"] for r in res.rows] == [0, 10, 20]
    assert all(torch.isfinite(torch.tensor(r["loss_d"])) for r in res.rows[1:])
    for name in ("r1", "r2"):
        if name in reg or loss == "r3gan":
            assert res.rows[-1][name] >= 0
    implied = {"progan": ("gp", "drift"), "biggan": ("ortho",)}.get(loss, ())
    assert all(res.rows[-1][name] > 0 for name in implied)  # the penalty was computed and logged
    if loss.startswith(("r3gan", "rpgan")):  # pairwise accuracy: the same for real and fake
        assert all(r["d_acc_real"] == r["d_acc_fake"] for r in res.rows[1:])


def test_lab_end_to_end(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "lab-x"
    rc = cli_main(["lab", "--dataset", "ring", "--loss", "ns", "--reg", "r1", "--steps", "300", "--seed", "0",
                   "--d-lr-mult", "1", "--eval-every", "100", "--out", str(out)])
    assert rc == 0
    for f in ("metrics.jsonl", "recipe.yaml", "samples.png", "modes.png", "losses.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 100, 200, 300]
    for key in ("loss_d", "loss_g", "d_acc_real", "d_acc_fake", "grad_norm_g", "grad_norm_d", "r1", "modes",
                "modes_total", "hq_fraction", "lr", "lr_d", "time"):
        assert key in rows[-1], key
    assert rows[-1]["modes_total"] == 8
    assert "modes captured" in capsys.readouterr().out
    assert cli_main(["doctor", str(out)]) == 0  # the doctor reads lab runs


def test_r2_penalises_gradients_at_generated_samples():
    """R2 of the lab's D at its fake batch equals the hand-computed ||grad_x D||^2 of a linear D."""
    from distill.diagnostics.lab.train import REGULARIZERS

    cfg = LabConfig(r1_gamma=2.0)
    assert REGULARIZERS["r2"].weight(cfg) == 1.0  # gamma / 2, gamma defaulting to r1_gamma
    assert REGULARIZERS["r2"].weight(LabConfig(r1_gamma=2.0, r2_gamma=0.5)) == 0.25
    w = torch.tensor([3.0, -4.0])
    fake = torch.randn(6, 2, requires_grad=True)
    pen = REGULARIZERS["r2"].penalty(cfg, None, None, None, fake, fake @ w)
    torch.testing.assert_close(pen, torch.full((6,), 25.0))


def test_lab_1d_plots(tmp_path):
    torch.set_num_threads(1)
    res = train_lab(LabConfig(dataset="gmm1d", steps=40, eval_every=20, batch_size=32, eval_samples=200,
                              progress=False, out=str(tmp_path / "g")))
    assert (tmp_path / "g" / "samples.png").is_file()
    assert res.rows[-1]["modes_total"] == 2
