"""The plugins this repository ships (the built-in ones inside vlora-core, and the tutorial plugin), for tests
whose expected output is a page generated from them (docs/memory.md, docs/coverage.md): a third-party plugin
installed beside them must not make those pages look stale."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from vlora_core import Registry
from vlora_core.hookspecs import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_distributions() -> set[str]:
    files = [ROOT / "pyproject.toml", ROOT / "examples" / "tutorial_plugin" / "pyproject.toml"]
    return {_norm(tomllib.loads(f.read_text())["project"]["name"]) for f in files}


def project_registry() -> Registry:
    """The installed plugins of this repository only (every other entry point disabled)."""
    ours = project_distributions()
    others = sorted({ep.dist.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
                     if ep.dist is not None and _norm(ep.dist.name) not in ours})
    return Registry.discover(disabled=others)
