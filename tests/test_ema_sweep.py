"""scripts/ema_sweep.py: the EMA replayed from saved checkpoints equals the EMA kept during training."""

import importlib.util
from pathlib import Path

import pytest
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import save_file

from distill.errors import DistillError

_spec = importlib.util.spec_from_file_location("ema_sweep", Path(__file__).parent.parent / "scripts" / "ema_sweep.py")
ema_sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ema_sweep)


def _trajectory(tmp_path, n_steps, every, decay):
    """A fake run: a linear layer's weights drift for n_steps; checkpoints every `every` steps.
    -> (the EMA a trainer would hold at the end, the run folder)"""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    ema = EMAModel(net.parameters(), decay=decay)
    for n in range(1, n_steps + 1):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.1 + 0.05)
        ema.step(net.parameters())
        if n % every == 0:
            d = tmp_path / "checkpoints" / f"checkpoint-{n}"
            d.mkdir(parents=True)
            save_file({k: v.detach().clone() for k, v in net.state_dict().items()}, str(d / "student.safetensors"))
            (d / "state.json").write_text(f'{{"step": {n}}}')  # a complete checkpoint, as save_checkpoint leaves it
    return [s.clone() for s in ema.shadow_params], tmp_path


def _replayed(run, decay, until):
    net = torch.nn.Linear(3, 2)
    ema_sweep.replay_ema(net, ema_sweep.checkpoints(run), decay, until)
    return list(net.parameters())


def test_replay_every_step_is_exact(tmp_path):
    want, run = _trajectory(tmp_path, 60, every=1, decay=0.95)
    for a, b in zip(_replayed(run, 0.95, 60), want):
        torch.testing.assert_close(a, b)


def test_replay_sparse_checkpoints_is_close_not_exact(tmp_path):
    want, run = _trajectory(tmp_path, 200, every=5, decay=0.98)
    got = _replayed(run, 0.98, 200)
    drift = max(float((a.detach() - b).abs().max()) for a, b in zip(got, want))
    assert 0 < drift < 0.5  # weights moved ~10 over the run; the approximation lags by at most 4 steps


def test_replay_needs_the_end_checkpoint(tmp_path):
    _, run = _trajectory(tmp_path, 20, every=10, decay=0.9)
    with pytest.raises(DistillError, match="checkpoint-15"):
        _replayed(run, 0.9, 15)


def test_ema_power_one_is_the_running_mean():
    """train.ema_power = 1: decay_n = 1 - 1/n, the mean of every step's weights (diffusers' use_ema_warmup)."""
    from distill.config import TrainConfig
    from distill.engine.optim import make_ema

    net = torch.nn.Linear(3, 2)
    ema = make_ema(net.parameters(), TrainConfig(ema_decay=0.9999, ema_power=1.0))
    seen = []
    for _ in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        seen.append([p.detach().clone() for p in net.parameters()])
        ema.step(net.parameters())
    for i, s in enumerate(ema.shadow_params):
        torch.testing.assert_close(s, torch.stack([w[i] for w in seen]).mean(0))
    default = make_ema(net.parameters(), TrainConfig(ema_decay=0.999))
    assert default.get_decay(1201) == pytest.approx(1201 / 1210)  # the cap ema_decay 0.999 never reaches in 1200 steps


def test_ema_power_out_of_range_is_a_recipe_error():
    from distill.config import TrainConfig
    from distill.errors import RecipeError
    from distill.engine.optim import make_ema

    with pytest.raises(RecipeError, match="train.ema_power"):
        make_ema(torch.nn.Linear(2, 2).parameters(), TrainConfig(ema_power=1.5))


def test_wsd_schedule_is_constant_then_decays_linearly_to_zero():
    from distill.config import TrainConfig
    from distill.engine.optim import make_lr_scheduler

    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    sched = make_lr_scheduler(opt, TrainConfig(lr_scheduler="wsd", max_steps=100, lr_warmup_steps=10,
                                               lr_decay_fraction=0.25))
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(0.5) and lrs[10:75] == [1.0] * 65  # warm-up, then constant
    assert lrs[75] == pytest.approx(1.0) and lrs[99] == pytest.approx(1 / 25)  # 25 decay steps, linear
    assert all(a > b for a, b in zip(lrs[75:], lrs[76:]))
