"""Train a tiny Qwen2-VL with FSDP2 (``torch.distributed.fsdp.fully_shard``) on the CPU and check it against
one process.

The plan: LoRA adapters on both towers and the projector trained in full (PEFT's ``modules_to_save``).
Every vision block, every decoder layer, the projector and the whole model are sharded over the ranks
(gloo backend); each rank trains on its own examples, and FSDP averages the gradients, which is what one
process gets from all the examples in one batch.
After the steps, rank 0 gathers the full state dict and checks:

* every planned parameter changed, and every other parameter is bit-identical to before training;
* the adapter it saves (PEFT's ``adapter_model.safetensors``) equals the one a single process trains from
  the same start on the same batches, within float tolerance.

    torchrun --nproc_per_node 2 examples/train_fsdp.py [--steps 3] [--out DIR]

Run without torchrun it trains one process only (the reference). Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from vlora_core import apply

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_tiny import CONFIG, batch  # the same tiny model and batches as the DDP demo

SPEC = {"finetune_projector": "full", "r": 8, "lora_alpha": 16}
TOLERANCE = 1e-4  # Adam normalises each gradient, so float summation order shows at ~1e-5


def fresh():
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**CONFIG))
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


def batches(step: int, ranks: list[int]) -> dict[str, torch.Tensor]:
    """The examples of ``ranks`` at ``step`` as one batch (they have the same length)."""
    parts = [batch(step, r) for r in ranks]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def steps(model, n: int, ranks: list[int]) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(n):
        optimizer.zero_grad()
        model(**batches(step, ranks)).loss.backward()
        optimizer.step()


def shard(peft_model) -> None:
    from torch.distributed.fsdp import fully_shard

    inner = peft_model.base_model.model.model
    for block in inner.visual.blocks:
        fully_shard(block)
    fully_shard(inner.visual.merger)  # the fully trained projector: its own shard unit
    for layer in inner.language_model.layers:
        fully_shard(layer)
    fully_shard(peft_model)


def full_state(peft_model, sharded: bool) -> dict[str, torch.Tensor]:
    if not sharded:
        return {k: v.detach().clone() for k, v in peft_model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(peft_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def base_key(key: str) -> str:
    return key.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", "")


def check(plan, state: dict[str, torch.Tensor], before: dict[str, torch.Tensor],
          initial: dict[str, torch.Tensor]) -> list[str]:
    """Planned parameters changed, every other one is bit-identical."""
    problems = []
    planned = [k for k in state if ".lora_" in k or ".modules_to_save." in k]
    for k in planned:
        if torch.equal(state[k], initial[k]):
            problems.append(f"planned {k} did not change")
    for k, v in state.items():
        if k in planned:
            continue
        if not torch.equal(v, before[base_key(k)]):
            problems.append(f"frozen {base_key(k)} changed")
    saved = sum(state[k].numel() for k in planned)
    if saved != plan.trainable_params:
        problems.append(f"{saved:,} trained values, the plan says {plan.trainable_params:,}")
    return problems


def train(steps_n: int, out: Path, world: int, examples: int) -> tuple[object, list[str]]:
    model, before = fresh()
    peft_model = apply(model, SPEC)
    initial = {k: v.detach().clone() for k, v in peft_model.state_dict().items()}
    sharded = 0
    if world > 1:
        shard(peft_model)
        from torch.distributed.tensor import DTensor

        sharded = sum(isinstance(p, DTensor) and p.to_local().numel() < p.numel()
                      for p in peft_model.parameters() if p.requires_grad)
    # sharded: each rank its own examples (FSDP averages the gradients); one process: all of them at once
    steps(peft_model, steps_n, [int(os.environ.get("RANK", "0"))] if world > 1 else list(range(examples)))
    state = full_state(peft_model, sharded=world > 1)
    problems = []
    if int(os.environ.get("RANK", "0")) == 0:
        problems = check(peft_model.vlora_plan, state, before, initial)
        trainable = sum(p.requires_grad for p in peft_model.parameters())
        if world > 1:
            print(f"sharded: {sharded} of the {trainable} trainable tensors are split over the ranks")
            if not sharded:
                problems.append("no trainable tensor is sharded")
        peft_model.save_pretrained(out, state_dict=state)
    return peft_model.vlora_plan, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
    parser.add_argument("--out", type=Path, help="where to save the adapters (default: a temporary folder)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*returned a view tensor")  # the loss is used as it is
    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    out = args.out or Path(tempfile.mkdtemp())
    if world > 1:
        dist.init_process_group("gloo")
    plan, problems = train(args.steps, out / ("fsdp" if world > 1 else "single"), world, world)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return
    if world > 1:  # the reference: one process, the same start, the same batches
        _, ref_problems = train(args.steps, out / "single", 1, world)
        problems += [f"single process: {p}" for p in ref_problems]
        sharded = load_file(out / "fsdp" / "adapter_model.safetensors")
        single = load_file(out / "single" / "adapter_model.safetensors")
        if sharded.keys() != single.keys():
            problems.append(f"the saved adapters differ in keys: {sorted(sharded.keys() ^ single.keys())[:3]}")
        worst = max((float((sharded[k] - single[k]).abs().max()) for k in sharded.keys() & single.keys()),
                    default=0.0)
        print(f"FSDP2 on {world} processes (gloo): {len(plan.targets)} LoRA targets, "
              f"{len(plan.full_modules)} module trained in full, {plan.trainable_params:,} trainable parameters")
        print(f"saved adapter: {len(sharded)} tensors; largest difference from one process: {worst:.2e} "
              f"(tolerance {TOLERANCE:g})")
        if worst > TOLERANCE:
            problems.append(f"the sharded adapter differs from the single-process one by {worst:.2e}")
    if problems:
        raise SystemExit("; ".join(problems[:5]))
    print("ok: every planned parameter changed, every other one is bit-identical"
          + (", the sharded run saved the single-process adapter" if world > 1 else ""))


if __name__ == "__main__":
    main()
