"""Fixtures for the Gemma-4 plugin tests; the tiny models are in gemma4_tiny.py. Gemma-4 exists in
transformers 5 only: under an older transformers these tests are skipped, with that reason."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

if importlib.util.find_spec("transformers.models.gemma4") is None:
    collect_ignore_glob = ["test_*.py"]
