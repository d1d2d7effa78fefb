"""Fixtures for the Qwen2-VL plugin tests; the tiny models are in qwen_tiny.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(params=["qwen2_vl", "qwen2_5_vl"])
def family(request) -> str:
    return request.param
