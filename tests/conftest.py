"""Core test fixtures. The architecture under test is declared in tinyvlm.py and registered in-test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from tinyvlm import FakePlugin, TinyVLM

from vlora_core import Registry


@pytest.fixture
def model() -> TinyVLM:
    torch.manual_seed(0)
    return TinyVLM()


@pytest.fixture
def registry() -> Registry:
    return Registry.from_plugins(FakePlugin(), names=["fake"])
