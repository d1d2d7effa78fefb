"""(b) `vlora_core.apply(model, spec)` against bare `get_peft_model` with an equivalent hand-written LoraConfig.

Both make the same modules trainable (the script checks the counts are equal); the difference is vlora's
resolve and checks. Tiny models on the CPU (real weights), and full-size reference configs on the meta
device (PEFT's low_cpu_mem_usage, as apply does). Median of N runs, each on a freshly built model (the
build is not timed). Target: overhead ratio apply / bare <= 1.05.

    .venv/bin/python benchmarks/apply_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform

import torch
from _common import HAND_WRITTEN, side_by_side, tiny, trainable
from peft import LoraConfig, get_peft_model

from vlora_core import apply, default_registry
from vlora_core.modeltree import build_meta_model, config_from_file

SPEC = {"r": 16, "lora_alpha": 16, "include_unused_layers": True}  # hand-written regexes train every layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = default_registry()
    cases = [(f"tiny {f} (CPU)", f, lambda f=f: tiny(f), False) for f in ("qwen2_vl", "llava", "paligemma")]
    for name, family in (("Qwen2-VL-7B-Instruct", "qwen2_vl"), ("llava-1.5-7b-hf", "llava"),
                         ("paligemma2-10b-pt-224", "paligemma")):
        config = config_from_file(registry.require_reference(name)[2].config_path)
        cases.append((f"{name} (meta)", family, lambda c=config: build_meta_model(c), True))

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    header = f"{'model':<34} {'apply s':>8} {'bare s':>8} {'ratio':>6}  trainable"
    print(header)
    print("-" * len(header))
    for label, family, build, meta in cases:
        config = LoraConfig(r=16, lora_alpha=16, target_modules=HAND_WRITTEN[family])
        counts = {}

        def run_apply(model, counts=counts):
            counts["apply"] = trainable(apply(model, SPEC))

        def run_bare(model, config=config, meta=meta, counts=counts):
            counts["bare"] = trainable(get_peft_model(model, config, low_cpu_mem_usage=meta))

        run_apply(build())  # warm-up
        run_bare(build())
        t_apply, t_bare = side_by_side([run_apply, run_bare], args.repeat, setup=build)
        same = "equal" if counts["apply"] == counts["bare"] else f"DIFFER {counts['apply']} vs {counts['bare']}"
        print(f"{label:<34} {t_apply:8.3f} {t_bare:8.3f} {t_apply / t_bare:6.2f}  {same} ({counts['apply']:,})")


if __name__ == "__main__":
    main()
