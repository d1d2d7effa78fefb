"""The serving facts are derived, not hand-copied: every fact names the file of the engine it was read from, and
when the engines' wheels are at hand (VLORA_ENGINE_WHEELS=a folder holding vllm-*.whl / sglang-*.whl, fetched with
`pip download --no-deps vllm==0.33.0 sglang==0.5.23`) the committed tables are exactly what the derivation writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlora_core.serving import RELEASES, engine_table

ROOT = Path(__file__).resolve().parents[1]
WHEELS = Path(os.environ["VLORA_ENGINE_WHEELS"]) if os.environ.get("VLORA_ENGINE_WHEELS") else None


@pytest.mark.parametrize("engine", sorted(RELEASES))
def test_every_fact_names_the_engine_file_it_was_read_from(engine):
    for release in RELEASES[engine]:
        table = engine_table(engine, release.versions)
        assert table.source.startswith(f"{engine}-{release.versions}-") and table.source.endswith(".whl")
        prefix = {"vllm": "vllm/", "sglang": "sglang/"}[engine]
        assert table.facts and all(f["read_from"].startswith(prefix) for f in table.facts.values())
        assert table.models and all(m["read_from"].startswith(prefix) for m in table.models.values())


@pytest.mark.skipif(WHEELS is None, reason="VLORA_ENGINE_WHEELS is not set (the engines' wheels are not at hand)")
def test_the_committed_tables_are_what_the_wheels_give():
    wheels = sorted(WHEELS.glob("vllm-*.whl")) + sorted(WHEELS.glob("sglang-*.whl"))
    assert wheels, f"no vllm or sglang wheel in {WHEELS}"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "derive_serving.py"), "--check", *map(str, wheels)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
