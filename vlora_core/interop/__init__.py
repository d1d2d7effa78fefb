"""Other tools' configs: a plan said in the words of PEFT, Unsloth, LLaMA-Factory, ms-swift or axolotl, or the
vLLM command that serves it (``export_plan``), and a config of Unsloth, LLaMA-Factory or ms-swift turned into
the spec whose plan is what that tool would train (``import_config``). One module per tool; ``common`` holds
what they share. This room reads plans and module trees and never reaches back into resolve's rules.
"""

from __future__ import annotations

from pathlib import Path

from ..cache import tree_for
from ..errors import UsageError
from ..modeltree import ModuleTree
from ..plan import TargetPlan
from ..plugins import Registry, default_registry
from . import axolotl, llamafactory, peft, swift, unsloth, versions, vllm
from .common import Export, Imported
from .contract import Exporter, Importer, Tool

# the one registry of formats (tests/integration/test_interop_contract.py checks each against the contract)
TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("peft", peft), Tool("unsloth", unsloth, unsloth), Tool("llamafactory", llamafactory, llamafactory),
    Tool("swift", swift, swift), Tool("axolotl", axolotl), Tool("vllm", vllm))}
EXPORTERS: dict[str, Exporter] = {name: tool.exporter for name, tool in TOOLS.items()}
IMPORTERS: dict[str, Importer] = {name: tool.importer for name, tool in TOOLS.items() if tool.importer is not None}


def export_plan(plan: TargetPlan, tool: str, tree: ModuleTree | None = None, *,
                tool_version: str | None = None) -> Export:
    """``plan`` in ``tool``'s format (the nearest config, with what it loses). ``tree``: the plan's module tree
    (LLaMA-Factory's export checks its substring rule on it; built from ``plan.model`` when not given)."""
    if tool not in EXPORTERS:
        raise UsageError(f"unknown tool {tool!r}", hint=f"export to one of: {', '.join(EXPORTERS)}")
    if tree is None and tool in ("llamafactory", "vllm"):
        tree = tree_for(plan.model, default_registry())
    return EXPORTERS[tool].export(plan, tree, version=versions.tool_version(tool, tool_version))


def import_config(path: str | Path, tool: str, model: str | None = None, *, tree: ModuleTree | None = None,
                  registry: Registry | None = None) -> Imported:
    """The spec whose plan on ``model`` is what ``tool`` trains with the config in ``path``. ``model``: any model
    reference (default: the one the file names); ``tree``: its module tree, when already built."""
    if tool not in IMPORTERS:
        raise UsageError(f"unknown tool {tool!r}", hint=f"import from one of: {', '.join(IMPORTERS)}")
    importer = IMPORTERS[tool]
    config = importer.read(path)
    named = config.get(importer.MODEL_KEY) if importer.MODEL_KEY else None
    model = model or (named if isinstance(named, str) and named else None)
    if model is None:
        raise UsageError(f"{path} does not name its model",
                         hint=f"give the model: vlora import {path} --from {tool} --model REF")
    registry = registry or default_registry()
    tree = tree if tree is not None else tree_for(model, registry, label=model)
    return importer.import_config(config, str(path), tree, registry, model=model)


__all__ = ["EXPORTERS", "IMPORTERS", "TOOLS", "Export", "Exporter", "Imported", "Importer", "Tool", "export_plan",
           "import_config"]
