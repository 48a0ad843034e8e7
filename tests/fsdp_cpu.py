"""`python -m distill.cli` under FSDP2 on CPU processes (gloo), for tests. Launch with torchrun:

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/fsdp_cpu.py run recipe.yaml [key=value ...]

accelerate (1.15) enables FSDP only on accelerator devices: `accelerate launch --use_fsdp` without a
GPU starts processes that do not form a process group, and `--cpu` gives DDP (MULTI_CPU). This
script switches the accelerator state to FSDP2 (full shard, the UNet blocks of
recipes/accelerate/fsdp.yaml wrapped) right after the trainer makes its accelerator; torch's
`fully_shard` itself runs on CPU tensors with gloo."""

import os
import sys

from accelerate import FullyShardedDataParallelPlugin
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

import distill.engine.accelerator as common
import distill.engine.trainer as trainer
from distill.cli import main

_make = common.make_accelerator


def make_fsdp_accelerator(*args, **kwargs):
    acc = _make(*args, **kwargs)
    state = AcceleratorState()
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    wrap = os.environ.get("FSDP_WRAP", "BasicTransformerBlock,ResnetBlock2D")
    state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, reshard_after_forward=True, state_dict_type="FULL_STATE_DICT",
        **({"auto_wrap_policy": "transformer_based_wrap", "transformer_cls_names_to_wrap": wrap.split(",")} if wrap else {}))
    # both: every AcceleratorState() copies distributed_type from PartialState again
    state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
    return acc


common.make_accelerator = trainer.make_accelerator = make_fsdp_accelerator

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
