from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
MNIST_NPZ = SHARED / "mnist" / "mnist_full.npz"


@pytest.fixture(autouse=True, scope="session")
def _accelerate_fp32():
    """Recipes that leave `train.mixed_precision` unset follow accelerate's setting: the suite gives them
    accelerate's own default (fp32, as `accelerate launch` without a flag does) whatever the shell or the
    CPU says, so their numbers do not depend on the machine; tests of the choice set the variable themselves."""
    # session scope: module-scoped fixtures (a tiny teacher trained once per module) see it too
    mp = pytest.MonkeyPatch()
    mp.setenv("ACCELERATE_MIXED_PRECISION", "no")
    yield
    mp.undo()



@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision among it): each test starts and ends without one, so
    a test that trained in bf16 cannot make the next test's fp32 Accelerator fail to build."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def tiny_recipe_dict(tmp_path, **train):
    """A teacher recipe small enough to train in seconds on CPU."""
    return {
        "task": "teacher",
        "name": "tiny",
        "output_dir": str(tmp_path / "run"),
        "data": {"source": "digits", "resolution": 8, "limit": 64},
        "teacher": {"block_out_channels": [8, 16], "norm_num_groups": 4},
        "train": {"max_steps": 6, "batch_size": 16, "learning_rate": 2e-3, "lr_warmup_steps": 2,
                  "log_every": 1, "sample_every": 1000, "checkpoint_every": 3, **train},
        "eval": {"num_samples": 0},
    }


@pytest.fixture
def mnist_npz():
    if not MNIST_NPZ.is_file():
        pytest.skip("../shared/data/mnist not present")
    return MNIST_NPZ
