"""(f) The module-tree cache: a warm `vlora plan` against a cold one and against `import torch` alone.

Whole processes, imports included, as a pre-commit hook or a CI job runs them; median of N, interleaved
(cold, warm, import torch, cold, ...) so that drift in the machine's speed hits all alike:

  cold          vlora plan SPEC --model REF --no-cache   (imports torch and transformers, builds the tree)
  warm          vlora plan SPEC --model REF              (the tree read from the cache filled before)
  import torch  python -c "import torch"                 (the floor every uncached run pays)

for the largest bundled reference (most parameters) and the OCR example's model; checks that warm and cold
print the same plan and that the warm run imports neither torch nor transformers. Targets: warm/cold <= 0.15
on the largest reference; warm / import torch < 1.0.

    .venv/bin/python benchmarks/cache_speed.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

from _process import PROBE, cache_env, timed

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "qwen2_vl_ocr.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = cache_env()
    os.environ.update(env)
    os.environ.pop("VLORA_NO_CACHE", None)

    import torch

    from vlora_core import default_registry, resolve

    sizes = {r.name: resolve({}, r.name).total_params for _, _, r in default_registry().references()}
    largest = max(sizes, key=sizes.__getitem__)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}; median of {args.repeat}, interleaved")
    header = (f"{'model':<36} {'params':>7} {'cold s':>7} {'warm s':>7} {'torch s':>8} {'warm/cold':>9} "
              f"{'warm/torch':>10}  warm imports        output")
    print(header)
    print("-" * len(header))
    for name in (largest, "Qwen2-VL-7B-Instruct"):
        plan = [sys.executable, "-c", PROBE, "plan", str(SPEC), "--model", name]
        timed(plan, env)  # fills the cache (and warms the disk cache for every side)
        times: dict[str, list[float]] = {"cold": [], "warm": [], "torch": []}
        outputs = {}
        for _ in range(args.repeat):
            t, outputs["cold"] = timed([*plan, "--no-cache"], env)
            times["cold"].append(t)
            t, outputs["warm"] = timed(plan, env)
            times["warm"].append(t)
            times["torch"].append(timed([sys.executable, "-c", "import torch"], env)[0])
        cold, warm, floor = (statistics.median(times[k]) for k in ("cold", "warm", "torch"))
        imported = outputs["warm"].rpartition("IMPORTED ")[2].strip()
        same = "same" if outputs["warm"].split("IMPORTED")[0] == outputs["cold"].split("IMPORTED")[0] else "DIFFERS"
        print(f"{name:<36} {sizes[name] / 1e9:>6.1f}B {cold:>7.2f} {warm:>7.2f} {floor:>8.2f} {warm / cold:>9.3f} "
              f"{warm / floor:>10.2f}  {imported:<19} {same}")


if __name__ == "__main__":
    main()
