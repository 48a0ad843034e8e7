"""Threads chosen, not inherited: `train.num_threads` / `--threads` (auto or a count), the auto rule, the line at
start."""

import pytest
import torch

from distill.config import load_recipe, recipe_from_dict
from distill.engine.threads import SMALL_NETWORK_WORK, auto_threads, choose_threads, network_work
from distill.errors import DistillError, RecipeError

from .conftest import tiny_recipe_dict

BIG = 10 * SMALL_NETWORK_WORK


def test_auto_rule():
    assert auto_threads(BIG, 1, cores=2, busy=0, total=2)[0] == 2
    assert auto_threads(BIG, 1, cores=2, busy=1, total=2)[0] == 1  # one core taken by another job
    assert auto_threads(BIG, 1, cores=2, busy=5, total=2)[0] == 1  # never below one
    assert auto_threads(BIG, 2, cores=2, busy=0, total=2)[0] == 1  # two processes share the node
    assert auto_threads(BIG, 4, cores=16, busy=0, total=16)[0] == 4
    assert auto_threads(BIG, 1, cores=2, busy=30, total=64)[0] == 2  # pinned to 2 of a busy-ish 64-core machine
    n, why = auto_threads(SMALL_NETWORK_WORK / 2, 1, cores=8, busy=0, total=8)
    assert n == 1 and "small network" in why
    assert auto_threads(None, 1, cores=8, busy=0, total=8)[0] == 8  # size unknown: the cores decide


def test_settings_and_bad_values():
    assert choose_threads(3) == (3, "train.num_threads=3")
    for bad in (0, -1, "many", 1.5, True):
        with pytest.raises(DistillError, match="train.num_threads: expects 'auto' or an integer >= 1"):
            choose_threads(bad)
    assert load_recipe("recipes/digits.yaml").train.num_threads == "auto"
    assert load_recipe("recipes/digits.yaml", ["train.num_threads=2"]).train.num_threads == 2
    with pytest.raises(RecipeError, match="num_threads"):
        load_recipe("recipes/digits.yaml", ["train.num_threads=all"])


def test_network_work_is_parameters_times_pixels():
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    n = sum(p.numel() for p in unet.parameters())
    assert network_work([unet, torch.nn.Linear(3, 3)]) == n * 64 and network_work([torch.nn.Linear(3, 3)]) is None


def test_run_applies_and_says_the_threads(tmp_path, capsys):
    from distill.diffusion.train import train_teacher

    before = torch.get_num_threads()
    try:
        train_teacher(recipe_from_dict(tiny_recipe_dict(tmp_path, max_steps=2)))
        lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("threads: ")]
        # the tiny network is small: one thread, whatever the machine
        assert lines == [lines[0]] and lines[0].startswith("threads: 1 (auto: ") and torch.get_num_threads() == 1
        r = tiny_recipe_dict(tmp_path / "b", max_steps=2)
        r["train"]["num_threads"] = 2
        train_teacher(recipe_from_dict(r))
        assert "threads: 2 (train.num_threads=2)" in capsys.readouterr().out and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_threads_option_is_checked(capsys):
    from distill.cli import main as cli

    assert cli(["sample", "x", "--threads", "0"]) == 2
    assert "--threads: must be >= 1" in capsys.readouterr().err


def test_running_now_reads_procs_running_minus_the_reader(tmp_path, monkeypatch):
    from distill.engine import threads

    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 3\nprocs_blocked 0\n")
    assert threads.running_now(samples=3, interval=0, stat=str(stat)) == 2
    stat.write_text("cpu  1 2 3\n")
    assert threads.running_now(samples=1, interval=0, stat=str(stat)) is None
    assert threads.running_now(samples=1, interval=0, stat=str(tmp_path / "absent")) is None
    # a load average still high from a job that just ended counts only the threads running now
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.2, 1.0, 1.0))
    monkeypatch.setattr(threads, "running_now", lambda: 0)
    assert threads.busy_cores() == 0
    monkeypatch.setattr(threads, "running_now", lambda: 3)
    assert threads.busy_cores() == 1  # never more than the load average says
    monkeypatch.setattr(threads, "running_now", lambda: None)
    assert threads.busy_cores() == 1
