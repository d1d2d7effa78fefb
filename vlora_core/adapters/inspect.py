"""Adapters already on disk (PEFT's format, whatever trained them): what one covers, read from its files.

``read_adapter(DIR)`` reads the files (``vlora_core.peft.files``, through PEFT's own rules) and places every
adapted module by the installed plugins' patterns: component, role, layer, leaf, the same logical identity
(``Placement``) a plan's targets have. No base model is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..architecture import ArchitectureSpec
from ..boundary import read_json
from ..diagnostics import Location, short_path
from ..errors import AdapterError, ModelLoadError, VloraError
from ..patterns import layer_ranges
from ..peft.files import AdaptedModule, adapted_modules, read_config, read_tensors
from ..peft.rules import dead_entry_warnings
from ..plugins import Registry
from ..report import grid
from ..vocabulary import ADAPTED, SAVED, group_order


@dataclass(frozen=True)
class Adapter:
    """An adapter read from its files, its modules placed by the best-fitting installed architecture."""

    path: str
    weights_file: str
    config: dict[str, Any]
    tensors: dict[str, tuple[int, ...]]
    modules: tuple[AdaptedModule, ...]
    architecture: str | None  # the architecture that places the most modules (None: none places any)
    plugin: str | None
    spec: ArchitectureSpec | None = field(default=None, compare=False, repr=False)  # that architecture

    @property
    def total_params(self) -> int:
        return sum(m.params for m in self.modules)

    @property
    def unplaced(self) -> list[str]:
        """Adapted (LoRA) modules that no component of the architecture holds."""
        return [m.name for m in self.modules if m.component is None and m.kind == ADAPTED]

    @property
    def paths(self) -> dict[str, list[str]]:
        """Per component, where its adapted modules sit (layer index as ``*``): the layout the names are of."""
        out: dict[str, list[str]] = {}
        for m in self.modules:
            if m.component and m.path and m.path not in out.setdefault(m.component, []):
                out[m.component].append(m.path)
        return out

    @property
    def layout(self) -> str | None:
        """The transformers versions whose module names these are, for the layouts several families share
        (``VISION_TOWER_LAYOUTS``: LLaVA, PaliGemma, Gemma-3, ...); None where that data does not say."""
        from ..layouts import VISION_TOWER_LAYOUTS

        paths = self.paths
        fits = [layout for layout in VISION_TOWER_LAYOUTS
                if paths and all(set(ps) <= {"vision": {layout.vision_layers + ".*"},
                                             "projector": {layout.projector},
                                             "language": {layout.language_layers + ".*"}}.get(c, set())
                                 for c, ps in paths.items())]
        return " or ".join(f"transformers {layout.versions}" for layout in fits) or None

    @property
    def warnings(self) -> list[str]:
        """What the config says that PEFT would not do (a regular expression inside a target_modules list)."""
        return dead_entry_warnings(self.config.get("target_modules"), "adapter_config.json's target_modules")

    @property
    def target_parameters(self) -> list[str]:
        return list(self.config.get("target_parameters") or [])

    def summary(self) -> list[dict[str, Any]]:
        """One row per component x role (adapters) and per component (modules saved in full)."""
        groups: dict[tuple[str, str], list[AdaptedModule]] = {}
        for m in self.modules:
            role = m.role or ("saved in full" if m.kind == SAVED else "other")
            component = m.component or ("(outside)" if m.kind == SAVED else "(unplaced)")
            groups.setdefault((component, role), []).append(m)
        rows = []
        for (component, role), ms in sorted(groups.items(), key=lambda kv: (group_order(*kv[0]), kv[0])):
            layers = layer_ranges([m.layer for m in ms if m.layer is not None]) if any(
                m.layer is not None for m in ms) else "-"
            rows.append({"component": component, "role": role, "modules": len(ms), "layers": layers,
                         "leaves": sorted({m.leaf or m.name for m in ms}),
                         "r": sorted({m.r for m in ms if m.r is not None}),
                         "lora_alpha": sorted({m.lora_alpha for m in ms if m.lora_alpha is not None}),
                         "params": sum(m.params for m in ms)})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "weights_file": self.weights_file,
            "architecture": self.architecture,
            "plugin": self.plugin,
            "peft_type": self.config.get("peft_type"),
            "base_model_name_or_path": self.config.get("base_model_name_or_path"),
            "r": self.config.get("r"),
            "lora_alpha": self.config.get("lora_alpha"),
            "target_parameters": self.target_parameters,
            "modules_to_save": [m.name for m in self.modules if m.kind == SAVED],
            "total_params": self.total_params,
            "summary": self.summary(),
            "modules": [m.to_dict() for m in self.modules],
            "unplaced": self.unplaced,
            "paths": self.paths,
            "layout": self.layout,
            "warnings": self.warnings,
        }

    def table(self) -> str:
        """The human view: per component x role, then totals and what no plugin places."""
        head = [f"{self.path} · {self.weights_file} · "
                + (f"{self.architecture} (plugin {self.plugin})" if self.architecture else "no installed plugin "
                   "places its modules"),
                f"adapter_config.json: r={self.config.get('r')}, lora_alpha={self.config.get('lora_alpha')}"
                + (f", base model {self.config['base_model_name_or_path']}"
                   if self.config.get("base_model_name_or_path") else ""), ""]
        rows = [("component", "role", "modules", "layers", "r", "alpha", "params")]
        for row in self.summary():
            rows.append((row["component"], row["role"], str(row["modules"]), row["layers"],
                         ",".join(map(str, row["r"])) or "-", ",".join(f"{a:g}" for a in row["lora_alpha"]) or "-",
                         f"{row['params']:,}"))
        lines = grid(rows, right={2, 6}, rules={0})
        tail = ["", f"total: {len(self.modules)} modules, {self.total_params:,} parameters", *self.warnings]
        if self.paths:
            tail.append("module names: " + "; ".join(f"{c} {', '.join(ps)}" for c, ps in self.paths.items())
                        + (f" (the names of {self.layout})" if self.layout else ""))
        if self.target_parameters:
            tail.append("target_parameters: " + ", ".join(self.target_parameters))
        if self.unplaced:
            tail.append(f"not in any component of {self.architecture or 'an installed plugin'}: "
                        + ", ".join(self.unplaced[:5]) + (f" and {len(self.unplaced) - 5} more"
                                                          if len(self.unplaced) > 5 else ""))
        return "\n".join(head + lines + tail) + "\n"


def read_adapter(path: str | Path, registry: Registry) -> Adapter:
    """Read the adapter in folder ``path`` (files only) and place its modules."""
    folder = Path(path)
    where = Location(file=short_path(str(folder)))
    if not folder.is_dir():
        raise AdapterError(f"{short_path(str(folder))} is not a folder", where=where,
                           hint="give the folder save_pretrained wrote (it holds adapter_config.json)")
    config = read_config(folder)
    tensors, weights_file = read_tensors(folder)
    modules = adapted_modules(config, tensors, folder)
    arch, plugin = _best_architecture([m.name for m in modules], registry, _model_types(config, registry))
    if arch is not None:
        modules = [placed(m, arch) for m in modules]
    modules.sort(key=_module_order)
    return Adapter(path=short_path(str(folder)), weights_file=weights_file, config=config, tensors=tensors,
                   modules=tuple(modules), architecture=arch.name if arch else None, plugin=plugin, spec=arch)


def in_order_of(adapter: Adapter, tree: Any) -> Adapter:
    """``adapter`` with its nested parameter targets named by ``tree``'s own parameter order (PEFT nests several
    parameters of one module in the order the module registers them; the files alone cannot say it)."""
    if not any(".base_layer" in m.owner for m in adapter.modules):
        return adapter
    order = {name: i for i, (name, _) in enumerate(tree.params)}
    modules = adapted_modules(adapter.config, adapter.tensors, Path(adapter.path), tree_order=order)
    if adapter.spec is not None:
        modules = [placed(m, adapter.spec) for m in modules]
    modules.sort(key=_module_order)
    return replace(adapter, modules=tuple(modules))


def _module_order(m: AdaptedModule) -> tuple[Any, ...]:
    return (group_order(m.component or "~", m.role or "~"), m.stack or "", -1 if m.layer is None else m.layer, m.name)


def _model_type_of(config: dict[str, Any], registry: Registry) -> str | None:
    """The model_type of the base model class PEFT recorded (``auto_mapping.base_model_class``), if known: from
    the bundled references' configs (their ``architectures``), which needs no import of transformers (and so of
    torch), else from transformers' auto mappings."""
    cls = (config.get("auto_mapping") or {}).get("base_model_class") if isinstance(config.get("auto_mapping"),
                                                                                      dict) else None
    if not isinstance(cls, str):
        return None
    for _, arch, reference in registry.references():
        try:
            data = read_json(reference.config_path, "config.json", ModelLoadError)
        except VloraError:
            continue
        if cls in (data.get("architectures") or ()) and data.get("model_type") in arch.model_types:
            return data["model_type"]
    from transformers.models.auto import modeling_auto

    for table in ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES",
                  "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_MAPPING_NAMES"):
        for model_type, names in getattr(modeling_auto, table, {}).items():
            if cls in ((names,) if isinstance(names, str) else tuple(names)):
                return model_type
    return None


_NUMBERS = re.compile(r"(?<=\.)\d+(?=\.|$)")


def _model_types(config: dict[str, Any], registry: Registry) -> set[str]:
    """The model_types the adapter says its base model has: from the base model class PEFT recorded, and from
    ``base_model_name_or_path`` where that is a bundled reference (a Hub id like Qwen/Qwen2-VL-7B-Instruct)."""
    types = {t for t in [_model_type_of(config, registry)] if t}
    base = config.get("base_model_name_or_path")
    if isinstance(base, str) and base:
        try:
            found = registry.find_reference(base)
        except VloraError:
            found = None
        if found is not None:
            types.update(found[1].model_types)
    return types


def _best_architecture(names: list[str], registry: Registry, model_types: set[str]
                       ) -> tuple[ArchitectureSpec | None, str | None]:
    """The architecture whose patterns place the most modules; among equals, one that claims the base model
    class's model_type (several families share module names, so the names alone may not tell)."""
    # names that differ only in their numbers (the layers of one stack) are placed alike: score one of each, so
    # that an adapter of 50,000 modules costs a few hundred placements per architecture, not 50,000
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(_NUMBERS.sub("0", n), []).append(n)

    def score(arch: ArchitectureSpec) -> tuple[int, int]:  # (placed with a role, placed at all)
        places = [(arch.place(members[0]), len(members)) for members in groups.values()]
        return sum(k for p, k in places if p and p.role), sum(k for p, k in places if p)

    scored = [(score(arch), info, arch) for info, arch in registry.architectures()]
    top = max((s for s, _, _ in scored), default=(0, 0))
    if top == (0, 0):
        return None, None
    best = [(info, arch) for s, info, arch in scored if s == top]
    claiming = [(info, arch) for info, arch in best if model_types & set(arch.model_types)]
    info, arch = (claiming or best)[0]
    return arch, info.distribution


def placed(m: AdaptedModule, arch: ArchitectureSpec) -> AdaptedModule:
    """``m`` placed under ``arch``: its component, role, layer, stack, leaf and path (as is where it places nowhere)."""
    where = arch.place(m.name)
    return m if where is None else replace(m, placement=where)


__all__ = ["AdaptedModule", "Adapter", "read_adapter"]


__all__ = ["Adapter", "placed", "read_adapter"]
