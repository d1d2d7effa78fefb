"""How long `vlora plan` takes, Python imports excluded, beside the cheapest PEFT route to the same counts.

For every bundled reference config, in one process and one run, median of N repetitions each:

  plan     load the spec, build the module tree on the meta device, resolve, render table and JSON
           (what `vlora plan` does after its imports)
  build    instantiate the model on the meta device only (the floor: plan includes it)
  peft     build on meta + get_peft_model(low_cpu_mem_usage=True) with the plan's LoraConfig + count
           trainable parameters per component (the cheapest PEFT-based way to learn the same numbers)

and checks that PEFT's per-component counts equal the plan's. Target: plan/peft <= 0.25 for the largest
model. Also times the whole CLI once per model, imports
included, for reference. Target: plan under 0.5 s for Qwen2-VL-7B-Instruct.

    .venv/bin/python benchmarks/plan_speed.py [--repeat 5]
"""

from __future__ import annotations

import os

# the uncached path: building the module tree is part of what is measured (benchmarks/cache_speed.py times
# the cache)
os.environ["VLORA_NO_CACHE"] = "1"

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from peft import get_peft_model

from vlora_core import default_registry, load_spec, resolve
from vlora_core.modeltree import build_meta_model, config_from_file

SPEC = "task: ocr\nfinetune_projector: lora\nr: 16\n"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    spec_path = Path(tempfile.mkdtemp()) / "bench.yaml"
    spec_path.write_text(SPEC)
    refs = default_registry().references()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    header = f"{'model':<36} {'plan s':>8} {'build s':>8} {'peft s':>8} {'plan/peft':>9} {'cli s':>7}  counts"
    print(header)
    print("-" * len(header))
    for _, _, ref in refs:
        def plan_once(name=ref.name):
            plan = resolve(load_spec(spec_path), name)
            plan.table()
            plan.to_json()
            return plan

        plan = plan_once()  # warm-up (imports of model classes)
        config = config_from_file(ref.config_path)
        t_plan = median_time(plan_once, args.repeat)
        t_build = median_time(lambda config=config: build_meta_model(config), args.repeat)
        counts = {}

        component_of = {t.name: t.component for t in plan.targets}
        component_of |= {t.name.rpartition(".")[0]: t.component for t in plan.parameter_targets}  # PEFT's names

        def peft_once(config=config, plan=plan, counts=counts, component_of=component_of):
            model = build_meta_model(config)
            peft_model = get_peft_model(model, plan.to_lora_config(), low_cpu_mem_usage=True)
            counts.clear()
            for name, p in peft_model.named_parameters():
                if p.requires_grad:
                    # several parameter targets of one module (an experts block) nest PEFT wrappers: base_layer
                    module = name.removeprefix("base_model.model.").split(".lora_")[0].replace(".base_layer", "")
                    key = component_of.get(module, "other")
                    counts[key] = counts.get(key, 0) + p.numel()

        t_peft = median_time(peft_once, args.repeat)
        want = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in set(component_of.values())}
        same = "equal" if counts == want else f"DIFFER {counts} vs {want}"
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "vlora"), "plan", str(spec_path), "--model", ref.name],
                       check=True, capture_output=True)
        t_cli = time.perf_counter() - start
        print(f"{ref.name:<36} {t_plan:8.3f} {t_build:8.3f} {t_peft:8.3f} {t_plan / t_peft:9.2f} {t_cli:7.2f}  {same}")


if __name__ == "__main__":
    main()
