"""(c) PEFT injection time with the LoraConfig vlora emits, against the two other ways to say the same thing.

For full-size reference configs on the meta device, with a different rank per component (vision r=8,
language r=16, projector r=32 as adapters), the same targets are given to `get_peft_model` as:

  vlora      one anchored regex for target_modules, one rank/alpha pattern key per component
  list       target_modules as the list of every full module name (PEFT rewrites lists of 20+ into
             suffix sets), rank_pattern with one key per component
  per-module vlora's regex, but rank_pattern with one exact key per module

The script checks all three train the same parameter count. Target: vlora is never slower than the best
of the others. Median of N interleaved runs, each on a freshly built model.

    .venv/bin/python benchmarks/injection_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import re
import warnings

from _common import side_by_side, trainable
from peft import get_peft_model

from vlora_core import default_registry, resolve
from vlora_core.modeltree import build_meta_model, config_from_file

MODELS = ["Qwen2-VL-7B-Instruct", "llava-1.5-7b-hf", "Llama-3.2-11B-Vision", "gemma-3-27b-it", "Llama-3.2-90B-Vision"]
SPEC = {"r": 16, "lora_alpha": 16, "finetune_projector": "lora", "vision": {"r": 8}, "projector": {"r": 32}}


def configs(plan):
    vlora = plan.to_lora_config()
    as_list = plan.to_lora_config()
    as_list.target_modules = [t.name for t in plan.module_targets]
    per_module = plan.to_lora_config()
    per_module.rank_pattern = {re.escape(t.name): t.r for t in plan.targets}
    per_module.alpha_pattern = {re.escape(t.name): t.lora_alpha for t in plan.targets}
    return {"vlora": vlora, "list": as_list, "per-module": per_module}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", r"The following (rank|alpha)_pattern keys", RuntimeWarning)
    registry = default_registry()
    header = (f"{'model':<24} {'targets':>7} {'vlora s':>8} {'list s':>8} {'per-module s':>12} {'vlora/best':>10}"
              "  counts")
    print(header)
    print("-" * len(header))
    for name in MODELS:
        config = config_from_file(registry.require_reference(name)[2].config_path)
        plan = resolve(SPEC, build_meta_model(config))
        counts: dict[str, int] = {}

        def injector(label, plan=plan, counts=counts):
            def run(model):
                config = configs(plan)[label]  # a fresh config each run: PEFT rewrites lists in place
                counts[label] = trainable(get_peft_model(model, config, low_cpu_mem_usage=True))
            return run

        build = lambda config=config: build_meta_model(config)  # noqa: E731
        labels = ["vlora", "list", "per-module"]
        times = dict(zip(labels, side_by_side([injector(x) for x in labels], args.repeat, setup=build), strict=True))
        same = "equal" if len(set(counts.values())) == 1 and counts["vlora"] == plan.trainable_params else str(counts)
        best = min(times["list"], times["per-module"])
        print(f"{name:<24} {len(plan.targets):>7} {times['vlora']:8.3f} {times['list']:8.3f} "
              f"{times['per-module']:12.3f} {times['vlora'] / best:10.2f}  {same}")


if __name__ == "__main__":
    main()
