"""(d) `vlora validate` on 20 spec files: without a model (schema only) it must not import torch and should
finish in under 1 s wall; with --model, 20 files resolving against one model build that model once.

    .venv/bin/python benchmarks/validate_speed.py
"""

from __future__ import annotations

import os

# the uncached path: building the module tree is part of what is measured (benchmarks/cache_speed.py times
# the cache)
os.environ["VLORA_NO_CACHE"] = "1"

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = 20
PROBE = """
import sys, time
start = time.perf_counter()
from vlora_core import modeltree
from vlora_core.cli import main
builds = 0
real = modeltree.build_meta_model
def counted(config):
    global builds
    builds += 1
    return real(config)
modeltree.build_meta_model = counted
code = main(sys.argv[1:])
import json
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules,
                  "builds": builds, "seconds": time.perf_counter() - start}))
"""


def run(args: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result, wall


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    for i in range(N):
        (tmp / f"spec{i:02d}.yaml").write_text(f"task: vqa\nr: {8 + i}\nlanguage:\n  layers: {{last: {1 + i % 8}}}\n")
    rows = []
    for label, args in (
        (f"{N} specs, schema only", ["validate", "-q", str(tmp)]),
        ("1 spec, --model", ["validate", "-q", str(tmp / "spec00.yaml"), "--model", "Qwen2-VL-7B-Instruct"]),
        (f"{N} specs, --model", ["validate", "-q", str(tmp), "--model", "Qwen2-VL-7B-Instruct"]),
    ):
        result, wall = run(args)
        assert result["code"] == 0, result
        rows.append((label, wall, result))
    print(f"{'run':<24} {'wall s':>7} {'in-process s':>12} {'torch imported':>14} {'model builds':>12}")
    for label, wall, r in rows:
        print(f"{label:<24} {wall:7.2f} {r['seconds']:12.2f} {r['torch']!s:>14} {r['builds']:>12}")
    one, many = rows[1][2]["seconds"], rows[2][2]["seconds"]
    print(f"{N} specs / 1 spec with --model: {many / one:.2f}x the time; schema-only run imports torch: "
          f"{rows[0][2]['torch']}")
    print(json.dumps({"schema_only_wall_s": round(rows[0][1], 3)}))


if __name__ == "__main__":
    main()
