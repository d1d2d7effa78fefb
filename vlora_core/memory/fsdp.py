"""FSDP2 in a simulated step: the model is sharded by torch's own ``fully_shard`` over a fake process group of
``world_size`` ranks (torch's ``fake`` backend: collectives that move nothing), so the step runs FSDP2's real
schedule on fake tensors: each rank holds its shard of every weight, all-gathers a unit's weights before its
forward and backward and frees them after, and reduce-scatters the gradients. What one rank holds is what one
device holds.

The units are the ones accelerate's transformer-based wrap policy picks (every module of a class in the
model's ``_no_split_modules``: its decoder layers and vision blocks), then the whole model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fake_group(world_size: int) -> Iterator[Any]:
    """A fake process group of ``world_size`` ranks (this process is rank 0) and its device mesh."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from ..errors import UsageError

    if dist.is_initialized():
        raise UsageError("--world-size simulates FSDP2 in a process of its own; this one already has a process "
                         "group", hint="call simulate_step(world_size=...) outside torch.distributed")
    dist.init_process_group(backend="fake", rank=0, world_size=world_size, store=FakeStore())
    try:
        yield init_device_mesh("cpu", (world_size,))
    finally:
        dist.destroy_process_group()


def units(model: Any) -> list[Any]:
    """The modules FSDP2 shards one by one: every module of a class in ``_no_split_modules``, innermost first."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names][::-1]


def shard(peft_model: Any, mesh: Any, mode: Any) -> int:
    """``fully_shard`` each unit, then the whole model (its fake parameters sharded under ``mode``); the units."""
    from torch.distributed.fsdp import fully_shard

    found = units(peft_model.get_base_model())
    with mode:
        for module in found:
            fully_shard(module, mesh=mesh)
        fully_shard(peft_model, mesh=mesh)
    return len(found)


def local(tensor: Any) -> Any:
    """A rank's own part of a sharded tensor (the tensor itself when it is not sharded)."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


__all__ = ["fake_group", "local", "shard", "units"]
