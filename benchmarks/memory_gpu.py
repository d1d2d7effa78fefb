"""Predicted peak of a training step against a real one on a GPU: for configurations built from bundled references
(random weights, bf16), `vlora plan --memory`'s prediction (simulated with CUDA's kernels: the fake tensors sit on
the GPU device) beside `torch.cuda.max_memory_allocated()` over a real step (forward, backward, AdamW step; the
optimizer state made by a first step). Prints the table of ratios. One call, a few minutes, on a machine with a
GPU; on one without, it says so and exits 0.

    python benchmarks/memory_gpu.py
"""

from __future__ import annotations

import gc
import time

import torch

from vlora_core import VisionLoRASpec, apply
from vlora_core.cache import tree_for
from vlora_core.memory import simulate_step
from vlora_core.memory.step import _config
from vlora_core.modeltree import model_class
from vlora_core.plugins import default_registry

# (reference, batch, seq, gradient checkpointing)
CASES = [("Qwen2-VL-2B-Instruct", 1, 2048, False), ("Qwen2-VL-2B-Instruct", 2, 4096, True),
         ("Qwen2-VL-7B-Instruct", 1, 4096, True)]


def real_peak(ref: str, batch: int, seq: int, checkpointing: bool, registry) -> int:
    tree = tree_for(ref, registry)
    config = _config(tree, "sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class(config)._from_config(config, dtype=torch.bfloat16)
    peft_model = apply(model, VisionLoRASpec(), gradient_checkpointing=checkpointing).train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    vocab = config.get_text_config().vocab_size
    ids = torch.randint(0, min(vocab, 1000), (batch, seq), device="cuda")
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        peft_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del peft_model, model, optimizer
    gc.collect()
    torch.cuda.empty_cache()
    return peak


def main() -> None:
    if not torch.cuda.is_available():
        print("memory_gpu.py needs a GPU: no CUDA device here")
        return
    registry = default_registry()
    print("| reference | batch x seq | checkpointing | predicted (GiB) | real max_memory_allocated (GiB) | ratio | "
          "prediction s |")
    print("|---|---|---|---|---|---|---|")
    for ref, batch, seq, checkpointing in CASES:
        started = time.perf_counter()
        predicted = simulate_step(VisionLoRASpec(), tree_for(ref, registry), batch=batch, seq=seq,
                                  gradient_checkpointing=checkpointing, device="cuda", registry=registry).peak
        seconds = time.perf_counter() - started
        real = real_peak(ref, batch, seq, checkpointing, registry)
        print(f"| {ref} | {batch} x {seq} | {'on' if checkpointing else 'off'} | {predicted / 2**30:.2f} | "
              f"{real / 2**30:.2f} | {predicted / real:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
