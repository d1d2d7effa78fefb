"""Shared by the benchmarks that time whole `vlora` processes: one timed run, and an environment with a fresh
module-tree cache folder (imports no torch itself)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

# run `vlora ARGS` and say which heavy libraries the process imported
PROBE = ("import sys; from vlora_core.cli import main; rc = main(sys.argv[1:]); "
         "print('IMPORTED', sorted(m for m in ('torch', 'transformers') if m in sys.modules)); sys.exit(rc)")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and stdout of one process; a failure ends the benchmark with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return took, proc.stdout


def cache_env() -> dict[str, str]:
    """This environment with the cache on, in a new empty folder."""
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"}
    env["VLORA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vlora-cache-bench-")
    return env
