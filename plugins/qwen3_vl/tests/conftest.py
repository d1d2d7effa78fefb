"""Fixtures for the Qwen3-VL plugin tests; the tiny models are in qwen3_tiny.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=["qwen3_vl", "qwen3_vl_moe"])
def family(request) -> str:
    return request.param
