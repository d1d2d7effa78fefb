"""The simulated peak of a training step, measured two ways on this machine (CPU):

1. accuracy: for tiny models of four families, with and without gradient checkpointing, at two sequence lengths,
   the step simulated on fake tensors against what a real step makes glibc's allocator hold at its peak (mallinfo2
   sampled after every aten op), as a ratio;
2. speed: the seconds a prediction takes for the 7B-11B bundled references (vlora plan --memory), beside the
   predicted peak.

    python benchmarks/memory_step.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from families import tiny  # noqa: E402
from test_memory_step import SPEC, real_step_peak  # noqa: E402

from vlora_core import VisionLoRASpec, tree_from_module  # noqa: E402
from vlora_core.cache import tree_for  # noqa: E402
from vlora_core.memory import simulate_step  # noqa: E402
from vlora_core.plugins import default_registry  # noqa: E402


def accuracy() -> None:
    print("| family | checkpointing | batch x seq | simulated (MB) | real step, allocator peak (MB) | ratio |")
    print("|---|---|---|---|---|---|")
    for family in ("llava", "qwen2_vl", "gemma3", "qwen3_vl"):
        for checkpointing in (False, True):
            for seq in (1024, 2048):
                model = tiny(family)
                simulated = simulate_step(SPEC, tree_from_module(model), batch=4, seq=seq,
                                          gradient_checkpointing=checkpointing, base_dtype="fp32").step_peak
                measured = real_step_peak(model, checkpointing, 4, seq)
                print(f"| {family} | {'on' if checkpointing else 'off'} | 4 x {seq} | {simulated / 1e6:.2f} | "
                      f"{measured / 1e6:.2f} | {simulated / measured:.3f} |")


def speed() -> None:
    registry = default_registry()
    print("\n| reference | batch x seq | checkpointing | predicted peak (GiB) | seconds |")
    print("|---|---|---|---|---|")
    for ref in ("Qwen2-VL-7B-Instruct", "llava-1.5-7b-hf", "Llama-3.2-11B-Vision"):
        tree = tree_for(ref, registry)
        for checkpointing in (False, True):
            started = time.perf_counter()
            result = simulate_step(VisionLoRASpec(), tree, batch=1, seq=2048, gradient_checkpointing=checkpointing,
                                   registry=registry)
            print(f"| {ref} | 1 x 2048 | {'on' if checkpointing else 'off'} | {result.peak / 2**30:.2f} | "
                  f"{time.perf_counter() - started:.1f} |")


if __name__ == "__main__":
    accuracy()
    speed()
