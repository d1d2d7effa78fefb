"""The example specs of examples/ (each on its own model), for the real-tool checks: every one is exported and
handed to the real tool beside the toggle combinations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlora_core import resolve

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted(p for p in (ROOT / "examples").iterdir()
               if p.suffix in (".yaml", ".toml", ".json") and not p.name.endswith(".lock.json"))
BY_MODEL: dict[str, list[Path]] = {}
for _path in FILES:
    BY_MODEL.setdefault(resolve(str(_path)).model, []).append(_path)


def with_examples(references) -> list[str]:
    """The references a check runs, then the models of example specs it does not list."""
    return [*references, *(m for m in BY_MODEL if m not in references)]


def specs_for(ref: str, specs: dict[str, Any], references) -> list[tuple[str, Any]]:
    """The toggle combinations (on the listed references), then the example specs whose model is ``ref`` (as their
    file paths)."""
    return [*(specs.items() if ref in references else ()),
            *((f"example {p.name}", str(p)) for p in BY_MODEL.get(ref, []))]


def plan_of(spec: Any, ref: str):
    return resolve(spec) if isinstance(spec, str) else resolve(spec, ref)
