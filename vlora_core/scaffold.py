"""``vlora scaffold``: an inferred architecture written out as a complete third-party plugin distribution.

``scaffold(ref, out)`` infers the architecture of REF (a bundled name, a directory or ``config.json``, a
Hub id) and writes, under ``out``:

* ``pyproject.toml``: the distribution ``vlora-<model_type>`` with its ``vlora.plugins`` entry point and the
  core range it was made with;
* ``vlora_<model_type>/__init__.py``: the ``ArchitectureSpec`` as data (prefix regexes from the real module
  paths, roles, variants, frozen leaves), the bundled reference, and the unused-layers rule where the
  config has ``vision_feature_layer``;
* ``vlora_<model_type>/configs/<name>.json``: REF's config;
* ``tests/test_<model_type>.py``: the conformance kit on the bundled config (built on the meta device) and
  a check that the plugin's plan equals the inferred one.

``pip install DIR && pytest DIR`` then passes as written; review the patterns, adjust names, add tiny-model
tests with a forward pass, and the plugin is ready.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec, Component
from .boundary import check_output, one_line, shown, write_folder
from .errors import ModelLoadError, UsageError
from .infer import infer_architecture
from .modeltree import config_from_ref, tree_from_config
from .plugins import Registry
from .versions import CORE_DISTRIBUTION, core_version


def package_name(model_type: str) -> str:
    return "vlora_" + re.sub(r"\W", "_", model_type).lower()


def _component_source(comp: Component) -> str:
    readable = '"' not in comp.prefix and not comp.prefix.endswith("\\")
    fields = [f"name={comp.name!r}", f'prefix=r"{comp.prefix}"' if readable else f"prefix={comp.prefix!r}"]
    roles = ",\n".join(f"                {role!r}: {tuple(leaves)!r}" for role, leaves in comp.roles.items())
    fields.append("roles={\n" + roles + ",\n            }")
    for name in ("variants", "frozen", "follows"):
        value = getattr(comp, name)
        if value:
            fields.append(f"{name}={dict(value)!r}")
    if comp.optional:
        fields.append(f"optional={tuple(comp.optional)!r}")
    if not comp.required:
        fields.append("required=False")
    body = ",\n            ".join(fields)
    return f"        Component(\n            {body},\n        ),"


def plugin_source(arch: ArchitectureSpec, model_type: str, reference: str, hub_id: str, config: dict[str, Any],
                  unplaced: dict[str, list[str]]) -> str:
    # the Linears inference could not place are declared frozen, so that nothing is silently targeted and the
    # conformance kit's partition check passes: review them
    review = "not placed by structural inference: review"
    components = "\n".join(_component_source(c.model_copy(update={"frozen": {
        **c.frozen, **{leaf: review for leaf in unplaced.get(c.name, [])}}})) for c in arch.components)
    unused = ""
    imports = "ArchitectureSpec, Component, ReferenceModel, hookimpl"
    if "vision_feature_layer" in config:
        imports = "ArchitectureSpec, Component, ReferenceModel, hookimpl, unused_after_feature_layer"
        unused = '''

@hookimpl
def vlora_unused_layers(architecture, config, layer_counts):
    """Vision layers after ``vision_feature_layer`` never reach the language model."""
    return unused_after_feature_layer(config, layer_counts)
'''
    name = arch.name.removeprefix("inferred_")
    return f'''"""vlora plugin for {model_type}, scaffolded by `vlora scaffold` from the structure of {reference}.

Review every pattern below against the model (and the transformers versions you support), then adjust.
"""

from pathlib import Path

from vlora_core import {imports}

CONFIGS = Path(__file__).parent / "configs"

ARCHITECTURE = ArchitectureSpec(
    name={name!r},
    title={model_type!r},
    model_types=({model_type!r},),
    components=(
{components}
    ),
    references=(
        ReferenceModel(name={reference!r}, hub_id={hub_id!r}, config_path=CONFIGS / {reference + ".json"!r}),
    ),
)


@hookimpl
def vlora_architectures():
    return [ARCHITECTURE]
{unused}'''


def test_source(package: str, distribution: str, reference: str) -> str:
    return f'''"""Tests of the scaffolded plugin: the conformance kit on the bundled config (built on the meta device,
no weights), and the plugin's plan equal to the one vlora infers from the model's structure."""

from vlora_core import resolve
from vlora_core.testing import check_plugin, reference_model


def test_conformance():
    report = check_plugin({distribution!r}, reference_model({reference!r}))
    assert report.plugin.distribution == {distribution!r}


def test_the_plugin_plans_what_inference_reads():
    for spec in ({{"finetune_projector": "lora"}}, {{"finetune_projector": "full", "task": "vqa"}}, {{}}):
        by_plugin = resolve(spec, {reference!r})
        by_structure = resolve(spec, {reference!r}, infer=True)
        assert by_plugin.inferred is None and by_plugin.plugin == {distribution!r}
        assert [t.to_dict() for t in by_plugin.targets] == [t.to_dict() for t in by_structure.targets]
        assert [m.name for m in by_plugin.full_modules] == [m.name for m in by_structure.full_modules]
'''


def scaffold(ref: str, out: str | Path, registry: Registry, *, name: str | None = None,
             hub_id: str | None = None) -> list[Path]:
    """Write the plugin distribution for REF's family under ``out``; returns the files written."""
    out = check_output(out, what="the plugin folder", folder=True)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty", hint="scaffold into a new directory")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_][\w.-]*", name):
        raise UsageError(f"--name {shown(name, 80)} is not a plain name (letters, digits, '.', '_', '-')",
                         hint="the name becomes a file in the plugin's configs/ folder; e.g. --name MyModel-7B")
    if hub_id is not None:
        one_line(hub_id, "--hub-id")
    config, label = config_from_ref(ref, registry)
    tree = tree_from_config(config, source=label)
    inference = infer_architecture(tree)
    model_type = one_line(tree.model_type or "unknown", "the config's model_type", error=ModelLoadError)
    if '"' in model_type or "\\" in model_type:
        raise ModelLoadError(f"the config's model_type {shown(model_type, 80)} holds a quote or backslash",
                             hint="a model_type is a plain name like llava")
    package = package_name(model_type)
    distribution = "vlora-" + package.removeprefix("vlora_").replace("_", "-")
    reference = name or re.sub(r"[^\w.-]", "-", Path(label).stem if label.endswith(".json") else Path(label).name)
    hub = hub_id or (ref if re.fullmatch(r"[\w.-]+/[\w.-]+", ref) and not Path(ref).exists() else reference)
    config_dict = config.to_dict()
    files = {
        "pyproject.toml": f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "0.1.0"
description = "vlora architecture plugin: {model_type} (scaffolded)"
requires-python = ">=3.11"
dependencies = ["{_core_range()}"]

[project.entry-points."vlora.plugins"]
{package.removeprefix("vlora_")} = "{package}"

[tool.setuptools]
packages = ["{package}"]

[tool.setuptools.package-data]
{package} = ["configs/*.json"]
''',
        f"{package}/__init__.py": plugin_source(inference.architecture, model_type, reference, hub, config_dict,
                                                     inference.unplaced),
        f"{package}/configs/{reference}.json": json.dumps(config_dict, indent=2, sort_keys=True) + "\n",
        f"tests/test_{package.removeprefix('vlora_')}.py": test_source(package, distribution, reference),
    }
    write_folder(out, {path: text.encode("utf-8") for path, text in files.items()}, what="the plugin folder")
    return [out / path for path in files]


def _core_range() -> str:
    version = core_version()
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):  # run from a source tree: any core
        return CORE_DISTRIBUTION
    major, minor = int(parts[0]), int(parts[1])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"{CORE_DISTRIBUTION}>={major}.{minor},<{upper}"


__all__ = ["package_name", "scaffold"]
