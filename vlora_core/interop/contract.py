"""The one contract every tool format keeps, checked by a test over the registry (``interop.TOOLS``): an exporter
turns a plan into an ``Export`` headed with the tool version it targets; an importer reads the tool's file into
its keys and turns them into the ``Imported`` spec whose plan is what the tool trains. A new format is one module
that satisfies these protocols and one registry entry (no plugin hook until a plugin needs one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..modeltree import ModuleTree
from ..plan import TargetPlan
from ..plugins import Registry
from .common import Export, Imported
from .versions import ToolVersion


@runtime_checkable
class Exporter(Protocol):
    TITLE: str

    def export(self, plan: TargetPlan, tree: ModuleTree | None, version: ToolVersion | None) -> Export:
        """The plan in the tool's words; what it cannot say in ``Export.lost``."""


@runtime_checkable
class Importer(Protocol):
    MODEL_KEY: str | None  # the key of the tool's file that names the model (None: the file does not)

    def read(self, path: str | Path) -> dict[str, Any]:
        """The tool's keys from its file (a YAML/JSON mapping, a script's arguments, a call's keywords)."""

    def import_config(self, config: dict[str, Any], source: str, tree: ModuleTree, registry: Registry, *,
                      model: str) -> Imported:
        """The spec whose plan on ``tree`` is what the tool trains with ``config``."""


@dataclass(frozen=True)
class Tool:
    """One tool vlora speaks: its name on the command line, how it writes and (where it can) reads its files."""

    name: str
    exporter: Exporter
    importer: Importer | None = None


__all__ = ["Exporter", "Importer", "Tool"]
