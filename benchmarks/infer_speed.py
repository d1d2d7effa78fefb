"""How long structural inference takes beside the plugin path, on every bundled reference config.

For each model, in one process, median of N repetitions, interleaved:

  plugin   build the module tree on the meta device + resolve with the installed plugin
  infer    the same with resolve(..., infer=True): the architecture read from the structure

and checks that both plans have the same targets. Target: infer/plugin <= 2.0 on the largest model.

    .venv/bin/python benchmarks/infer_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time
import warnings

import torch

from vlora_core import default_registry, module_tree, resolve

SPEC = {"task": "ocr", "finetune_projector": "lora"}


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    registry = default_registry()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    header = f"{'model':<36} {'params':>8} {'plugin s':>9} {'infer s':>8} {'infer/plugin':>12}  targets"
    print(header)
    print("-" * len(header))
    for _, _, ref in sorted(registry.references(), key=lambda item: item[2].name.lower()):
        resolve(SPEC, ref.name)  # warm-up: imports of the model classes
        plugin_times, infer_times = [], []
        for _ in range(args.repeat):
            for infer, times in ((False, plugin_times), (True, infer_times)):
                gc.collect()  # the meta models of the previous run, not this one's cost
                start = time.perf_counter()
                plan = resolve(SPEC, module_tree(ref.name, registry), infer=infer)
                times.append(time.perf_counter() - start)
                if infer:
                    inferred = plan
                else:
                    by_plugin = plan
        same = "equal" if [t.name for t in inferred.targets] == [t.name for t in by_plugin.targets] else "DIFFER"
        p, i = statistics.median(plugin_times), statistics.median(infer_times)
        print(f"{ref.name:<36} {by_plugin.total_params / 1e9:7.1f}B {p:9.3f} {i:8.3f} {i / p:12.2f}  {same}")


if __name__ == "__main__":
    main()
