"""(g) Commands that need no weights, warm, against `python -c "import torch"`.

Whole processes, as a user or a CI job runs them; median of N, interleaved so that drift in the machine's speed
hits all alike. The module-tree cache is filled first (one plan per model), so these are the runs a user repeats:

  plan            vlora plan SPEC
  export peft     vlora export SPEC --to peft           (adapter_config.json, written from the plan's data)
  export unsloth  vlora export SPEC --to unsloth
  export swift    vlora export SPEC --to swift
  import unsloth  vlora import NOTEBOOK --from unsloth --model REF
  inspect         vlora adapter inspect ADAPTER        (placed from its files and the plugins' patterns)
  import torch    python -c "import torch"             (the floor any command that loads a model pays)

Each must import neither torch nor transformers (checked) and take less than `import torch` (ratio < 1).

    .venv/bin/python benchmarks/light_commands.py [--repeat 5]
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
SPEC = str(ROOT / "examples" / "qwen2_vl_ocr.yaml")
COMMANDS = {
    "plan": ["plan", SPEC],
    "export peft": ["export", SPEC, "--to", "peft"],
    "export unsloth": ["export", SPEC, "--to", "unsloth"],
    "export swift": ["export", SPEC, "--to", "swift"],
    "import unsloth": ["import", str(ROOT / "tests/data/interop/unsloth/u01_qwen2_vl_7b_vision.py"), "--from",
                       "unsloth", "--model", "Qwen2-VL-7B-Instruct"],
    "inspect": ["adapter", "inspect", str(ROOT / "examples" / "adapters" / "llava-q-v")],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = cache_env()
    for model in ("Qwen2-VL-7B-Instruct", "llava-1.5-7b-hf"):  # fill the cache: the runs below are warm
        timed([sys.executable, "-c", PROBE, "plan", "--model", model], env)
    runs = {name: [sys.executable, "-c", PROBE, *argv] for name, argv in COMMANDS.items()}
    runs["import torch"] = [sys.executable, "-c", "import torch"]
    times: dict[str, list[float]] = {name: [] for name in runs}
    heavy = []
    for _ in range(args.repeat):
        for name, argv in runs.items():
            took, out = timed(argv, env)
            times[name].append(took)
            if name != "import torch" and "IMPORTED []" not in out:
                heavy.append(name)
    floor = statistics.median(times["import torch"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"median of {args.repeat}, interleaved, warm cache")
    print(f"{'command':<16} {'seconds':>8} {'/ import torch':>15}  imports torch")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<16} {median:>8.2f} {median / floor:>15.2f}  "
              f"{'-' if name == 'import torch' else ('YES' if name in heavy else 'no')}")
    slow = [n for n, v in times.items() if n != "import torch" and statistics.median(v) >= floor]
    if heavy or slow:
        print(f"FAIL: {sorted(set(heavy))} import torch; {slow} are not faster than importing it")
        return 1
    print("ok: every command here is lighter than `import torch`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
