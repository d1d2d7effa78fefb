"""One real FSDP2 training step on CPU (gloo), measured: run under torchrun, rank 0 prints as JSON the bytes its
shards of the weights hold, the peak of live tensor storage during its step (the tracker in real mode) and the
peak glibc's allocator held during another such step (mallinfo2), for test_memory_step's check of
``simulate_step(world_size=N)``.

    torchrun --nproc_per_node 2 tests/integration/fsdp_step_peak.py FAMILY BATCH SEQ [--checkpointing]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from families import tiny
from test_memory_step import _LIBC, AllocatorPeak

from vlora_core import VisionLoRASpec, apply
from vlora_core.memory.fsdp import local, units
from vlora_core.memory.tracker import LiveStorage


def main() -> None:
    family, batch, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    checkpointing = "--checkpointing" in sys.argv
    dist.init_process_group("gloo")
    from torch.distributed.fsdp import fully_shard

    model = tiny(family)
    peft_model = apply(model, VisionLoRASpec(finetune_vision_layers=True), gradient_checkpointing=checkpointing)
    peft_model.train()
    for module in units(peft_model.get_base_model()):
        fully_shard(module)
    fully_shard(peft_model)
    torch.manual_seed(dist.get_rank())
    ids = torch.randint(3, 50, (batch, seq))
    peft_model(input_ids=ids, labels=ids).loss.backward()  # the first step makes what lasts (gradients)
    peft_model.zero_grad(set_to_none=True)
    params = [(local(p), p.requires_grad) for p in peft_model.parameters()]
    tracker = LiveStorage()
    tracker.existing([*(p for p, _ in params), *(local(b) for b in peft_model.buffers()), ids])
    with tracker:
        peft_model(input_ids=ids, labels=ids).loss.backward()
    peft_model.zero_grad(set_to_none=True)
    allocator = None
    if _LIBC is not None:  # and glibc's own count, sharing nothing with the tracker
        with AllocatorPeak() as measured:
            peft_model(input_ids=ids, labels=ids).loss.backward()
        allocator = measured.peak
    if dist.get_rank() == 0:
        print(json.dumps({"weights": sum(p.numel() * p.element_size() for p, grad in params if not grad),
                          "adapters": sum(p.numel() * p.element_size() for p, grad in params if grad),
                          "step_peak": tracker.peak, "allocator_peak": allocator}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
