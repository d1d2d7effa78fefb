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

# (reference, batch, seq, gradient checkpointing, quantization, images per sequence, image size)
CASES = [("Qwen2-VL-2B-Instruct", 1, 2048, False, None, 0, None),
         ("Qwen2-VL-2B-Instruct", 2, 4096, True, None, 0, None),
         ("Qwen2-VL-2B-Instruct", 1, 2048, True, "4bit", 0, None),  # a 4-bit base (QLoRA's recipe)
         ("Qwen2-VL-2B-Instruct", 1, 4096, False, None, 1, (1344, 1344)),  # a large image: 2304 tokens
         ("Qwen2-VL-7B-Instruct", 1, 4096, True, None, 0, None)]


def real_peak(ref: str, batch: int, seq: int, checkpointing: bool, quant, images: int, size, registry) -> int:
    import tempfile

    from transformers import BitsAndBytesConfig

    from vlora_core.memory.inputs import step_inputs

    tree = tree_for(ref, registry)
    config = _config(tree, "sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class(config)._from_config(config, dtype=torch.bfloat16)
    if quant:  # saved with random weights and loaded back quantized, as from_pretrained quantizes a checkpoint
        folder = tempfile.mkdtemp()
        model.save_pretrained(folder)
        del model
        torch.cuda.empty_cache()
        model = model_class(config).from_pretrained(folder, dtype=torch.bfloat16, device_map="cuda",
                                                    quantization_config=BitsAndBytesConfig(
                                                        load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                        bnb_4bit_use_double_quant=True,
                                                        bnb_4bit_compute_dtype=torch.bfloat16))
    peft_model = apply(model, VisionLoRASpec(), gradient_checkpointing=checkpointing).train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    inputs = step_inputs(config, tree.model_type, batch=batch, seq=seq, images=images, image_size=size).tensors
    inputs = {k: v.to("cuda", torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        peft_model(**inputs).loss.backward()
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
    print("| reference | batch x seq | checkpointing | base | images | predicted (GiB) | real max_memory_allocated "
          "(GiB) | ratio | prediction s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ref, batch, seq, checkpointing, quant, images, size in CASES:
        started = time.perf_counter()
        predicted = simulate_step(VisionLoRASpec(), tree_for(ref, registry), batch=batch, seq=seq,
                                  gradient_checkpointing=checkpointing, device="cuda", registry=registry,
                                  quant=quant, images=images, image_size=size).peak
        seconds = time.perf_counter() - started
        real = real_peak(ref, batch, seq, checkpointing, quant, images, size, registry)
        shown = f"{images} of {size[1]}x{size[0]}" if images else "none"
        print(f"| {ref} | {batch} x {seq} | {'on' if checkpointing else 'off'} | {quant or 'bf16'} | {shown} | "
              f"{predicted / 2**30:.2f} | {real / 2**30:.2f} | {predicted / real:.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
