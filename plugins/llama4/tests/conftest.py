"""Fixtures for the Llama-4 plugin tests; the tiny models are in llama4_tiny.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
