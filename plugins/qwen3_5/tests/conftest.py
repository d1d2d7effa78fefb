"""Fixtures for the Qwen3.5 plugin tests; the tiny models are in qwen35_tiny.py. Qwen3.5 exists in
transformers 5 only: under an older transformers these tests are skipped, with that reason."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

if importlib.util.find_spec("transformers.models.qwen3_5") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(params=["qwen3_5", "qwen3_5_moe"])
def family(request) -> str:
    return request.param
