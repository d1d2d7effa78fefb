"""Every format in the one registry (vlora_core.interop.TOOLS) keeps the typed contract: an exporter with the
Exporter signature whose Export names its tool and the version it targets; an importer with the Importer
signature that reads back what its exporter writes; a version entry per tool; docs/interop.md naming it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from vlora_core import resolve
from vlora_core.interop import TOOLS, Export, Exporter, Imported, Importer, import_config
from vlora_core.interop.versions import VERSIONS, tool_version

ROOT = Path(__file__).resolve().parents[2]


def parameters(function) -> list[tuple[str, str]]:
    return [(p.name, p.kind.name) for p in inspect.signature(function).parameters.values()]


def protocol_parameters(protocol, method: str) -> list[tuple[str, str]]:
    return parameters(getattr(protocol, method))[1:]  # without self


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_registered_format_keeps_the_contract(name, tmp_path):
    tool = TOOLS[name]
    assert tool.name == name and isinstance(tool.exporter, Exporter)
    assert parameters(tool.exporter.export) == protocol_parameters(Exporter, "export")
    plan = resolve({"finetune_vision_layers": False}, "Qwen2-VL-2B-Instruct")
    export = tool.exporter.export(plan, None if name != "llamafactory" else _tree(), tool_version(name))
    assert isinstance(export, Export) and export.tool == name and export.version == tool_version(name)
    if name != "peft":  # adapter_config.json is JSON: no header
        assert tool_version(name).describe() in export.text  # the file says which versions it targets
    assert name in VERSIONS
    if tool.importer is None:
        return
    assert isinstance(tool.importer, Importer)
    assert parameters(tool.importer.read) == protocol_parameters(Importer, "read")
    assert parameters(tool.importer.import_config) == protocol_parameters(Importer, "import_config")
    suffix = {"unsloth": ".py", "swift": ".sh"}.get(name, ".yaml")
    path = tmp_path / f"exported{suffix}"
    path.write_text(export.text)
    back = import_config(path, name, "Qwen2-VL-2B-Instruct")
    assert isinstance(back, Imported) and {t.name for t in back.plan.targets} == {t.name for t in plan.targets}


def _tree():
    from vlora_core import default_registry
    from vlora_core.cache import tree_for

    return tree_for("Qwen2-VL-2B-Instruct", default_registry())


def test_docs_name_the_versions_each_format_targets():
    text = (ROOT / "docs" / "interop.md").read_text()
    for known in VERSIONS.values():
        for version in known:
            assert version.describe() in text, f"docs/interop.md lacks {version.describe()!r}"
