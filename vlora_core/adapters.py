"""Adapters already on disk (PEFT's format, whatever trained them): what one covers, read from its files.

``read_adapter(DIR)`` reads ``adapter_config.json`` and the tensor names and shapes of the weights
(``adapter_model.safetensors``; a ``.bin`` only through ``torch.load(weights_only=True)``), checks that the
two agree, and places every adapted module by the installed plugins' patterns: component, role, layer,
leaf, the same logical identity a plan's targets have. No base model is needed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec
from .diagnostics import Location, os_error_hint, short_path
from .errors import AdapterError, UsageError
from .patterns import layer_ranges, names_regex
from .plugins import Registry
from .report import grid
from .resolve import resolve
from .vocabulary import group_order

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
BIN_FILE = "adapter_model.bin"
MAX_ADAPTER_CONFIG_BYTES = 8 * 1024 * 1024
_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
                   r"(?:\.(?P<adapter>[^.]+))?(?:\.weight)?$")


@dataclass(frozen=True)
class AdaptedModule:
    """One module an adapter changes: a LoRA pair (``kind`` "lora") or a module saved in full ("full")."""

    name: str  # the module's name in the base model, as the adapter saved it
    kind: str
    params: int
    r: int | None = None
    lora_alpha: float | None = None
    in_features: int = 0
    out_features: int = 0
    component: str | None = None  # where the installed plugins' patterns place it (None: nowhere)
    role: str | None = None
    layer: int | None = None
    stack: str | None = None
    leaf: str = ""
    owner: str = ""  # for an adapted parameter (target_parameters): the module its tensors are saved under
    experts: int = 1  # experts adapted at once (a 3-D expert weight)
    path: str = ""  # the module holding it, with the layer index as '*' (which layout the names are of)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "params", "r", "lora_alpha", "in_features",
                                              "out_features", "experts", "component", "role", "layer", "stack",
                                              "leaf", "path")}


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
        return [m.name for m in self.modules if m.component is None and m.kind == "lora"]

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
        from .layouts import VISION_TOWER_LAYOUTS

        paths = self.paths
        fits = [layout for layout in VISION_TOWER_LAYOUTS
                if paths and all(set(ps) <= {"vision": {layout.vision_layers + ".*"},
                                             "projector": {layout.projector},
                                             "language": {layout.language_layers + ".*"}}.get(c, set())
                                 for c, ps in paths.items())]
        return " or ".join(f"transformers {layout.versions}" for layout in fits) or None

    @property
    def target_parameters(self) -> list[str]:
        return list(self.config.get("target_parameters") or [])

    def summary(self) -> list[dict[str, Any]]:
        """One row per component x role (adapters) and per component (modules saved in full)."""
        groups: dict[tuple[str, str], list[AdaptedModule]] = {}
        for m in self.modules:
            role = m.role or ("saved in full" if m.kind == "full" else "other")
            component = m.component or ("(outside)" if m.kind == "full" else "(unplaced)")
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
            "modules_to_save": [m.name for m in self.modules if m.kind == "full"],
            "total_params": self.total_params,
            "summary": self.summary(),
            "modules": [m.to_dict() for m in self.modules],
            "unplaced": self.unplaced,
            "paths": self.paths,
            "layout": self.layout,
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
        tail = ["", f"total: {len(self.modules)} modules, {self.total_params:,} parameters"]
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
    config = _read_config(folder)
    tensors, weights_file = _read_tensors(folder)
    modules = _modules(config, tensors, folder)
    arch, plugin = _best_architecture([m.name for m in modules], registry, _model_type_of(config))
    if arch is not None:
        modules = [placed(m, arch) for m in modules]
    modules.sort(key=lambda m: (group_order(m.component or "~", m.role or "~"), m.stack or "",
                                -1 if m.layer is None else m.layer, m.name))
    return Adapter(path=short_path(str(folder)), weights_file=weights_file, config=config, tensors=tensors,
                   modules=tuple(modules), architecture=arch.name if arch else None, plugin=plugin, spec=arch)


def _read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_FILE
    where = Location(file=short_path(str(file)))
    if not file.is_file():
        raise AdapterError(f"{short_path(str(folder))} is not a PEFT adapter: it has no {CONFIG_FILE}",
                           where=Location(file=short_path(str(folder))),
                           hint="give the folder save_pretrained wrote; a merged model is no adapter")
    try:
        if file.stat().st_size > MAX_ADAPTER_CONFIG_BYTES:
            raise AdapterError(f"{CONFIG_FILE} is {file.stat().st_size:,} bytes, more than an adapter config",
                               where=where)
        config = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AdapterError(f"cannot read {CONFIG_FILE}: {exc.strerror or exc}", where=where,
                           hint=os_error_hint(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{CONFIG_FILE} is not valid JSON: {exc}", where=where) from None
    if not isinstance(config, dict):
        raise AdapterError(f"{CONFIG_FILE} holds a {type(config).__name__}, not a JSON object", where=where)
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"this is a {config.get('peft_type')} adapter; vlora reads LoRA adapters", where=where)
    return config


def _read_tensors(folder: Path) -> tuple[dict[str, tuple[int, ...]], str]:
    safetensors_file, bin_file = folder / SAFETENSORS_FILE, folder / BIN_FILE
    if safetensors_file.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(safetensors_file), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, SAFETENSORS_FILE
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise AdapterError(f"{SAFETENSORS_FILE} is damaged or truncated ({type(exc).__name__}: "
                               f"{str(exc)[:200]})", where=Location(file=short_path(str(safetensors_file))),
                               hint="save the adapter again, or copy the file again in full") from None
    if bin_file.is_file():
        import torch

        try:
            state = torch.load(bin_file, map_location="meta", weights_only=True)
        except Exception as exc:
            raise AdapterError(f"{BIN_FILE} cannot be read safely ({type(exc).__name__}: {str(exc)[:200]})",
                               where=Location(file=short_path(str(bin_file))),
                               hint="vlora loads .bin files with weights_only=True only; convert the adapter to "
                               "safetensors") from None
        if not isinstance(state, dict):
            raise AdapterError(f"{BIN_FILE} holds no state dict", where=Location(file=short_path(str(bin_file))))
        return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, BIN_FILE
    raise AdapterError(f"{short_path(str(folder))} has {CONFIG_FILE} but no weights ({SAFETENSORS_FILE} or {BIN_FILE})",
                       where=Location(file=short_path(str(folder))), hint="copy the adapter's weights file too")


def _pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: the first key that matches the end of the name."""
    for key, value in (patterns or {}).items():
        try:
            if re.fullmatch(rf"(?:.*\.)?(?:{key})", name):
                return value
        except re.error:
            continue
    return default


def _modules(config: dict[str, Any], tensors: dict[str, tuple[int, ...]], folder: Path) -> list[AdaptedModule]:
    where = Location(file=short_path(str(folder / CONFIG_FILE)))
    parts: dict[str, dict[str, tuple[int, ...]]] = {}
    rest: dict[str, tuple[int, ...]] = {}
    for key, shape in tensors.items():
        match = _LORA.match(key.removeprefix(_PREFIX))
        if match:
            parts.setdefault(match.group("module"), {})[match.group("part")] = shape
        else:
            rest[key.removeprefix(_PREFIX)] = shape
    out = []
    r_default, alpha_default = config.get("r", 8), config.get("lora_alpha", 8)
    # an adapted parameter (PEFT's target_parameters) is saved under the module that holds it; several on one
    # module nest (module.base_layer...): the outermost wrapper is the last one listed
    params_of: dict[str, list[str]] = {}
    for param in config.get("target_parameters") or []:
        if isinstance(param, str):
            params_of.setdefault(param.rpartition(".")[0], []).append(param)
    for raw, got in parts.items():
        owner = re.sub(r"(?:\.base_layer)+$", "", raw)
        depth = raw[len(owner):].count(".base_layer")
        listed = params_of.get(owner, [])
        name = listed[-1 - depth] if depth < len(listed) else raw
        a, b = got.get("lora_A") or got.get("lora_embedding_A"), got.get("lora_B") or got.get("lora_embedding_B")
        if a is None or b is None:
            raise AdapterError(f"the weights hold {'lora_A' if a else 'lora_B'} of {name} without its "
                               f"{'lora_B' if a else 'lora_A'}", where=Location(file=short_path(str(folder))),
                               hint="the weights file is incomplete: save the adapter again")
        embedding = "lora_embedding_A" in got
        r = a[1] if embedding else a[0]
        expected = _pattern_value(config.get("rank_pattern"), name, r_default)
        experts = 1
        if name != raw and isinstance(expected, int) and expected and r % expected == 0:
            experts, r = r // expected, expected  # a stack of expert weights: one rank-r adapter per expert
        if r != expected:
            raise AdapterError(f"adapter_config.json disagrees with the weights: {name} has rank {r} in the weights, "
                               f"the config says {expected}", where=where,
                               hint="the config belongs to another adapter; keep each config with its weights")
        in_f = a[0] if embedding else math.prod(a[1:])  # a convolution's A is (r, in, *kernel)
        out_f = b[1] if embedding else b[0]
        params = sum(math.prod(s) for s in got.values())
        out.append(AdaptedModule(name=name, kind="lora", params=params, r=r,
                                 lora_alpha=float(_pattern_value(config.get("alpha_pattern"), name, alpha_default)),
                                 in_features=in_f, out_features=out_f, owner=raw if name != raw else "",
                                 experts=experts))
    saved = list(config.get("modules_to_save") or [])
    full: dict[str, int] = {}
    for key, shape in rest.items():
        parts = key.split(".")[:-1]
        # the saved module (PEFT matches modules_to_save by the end of the name) that holds this tensor
        module = next((p for p in (".".join(parts[:cut]) for cut in range(len(parts), 0, -1))
                       if any(p.endswith(s) for s in saved)), None)
        if module is None:
            raise AdapterError(f"the weights hold {key}, which is neither a LoRA weight nor part of a module the "
                               "config saves in full (modules_to_save)", where=where,
                               hint="the config belongs to another adapter; keep each config with its weights")
        full[module] = full.get(module, 0) + math.prod(shape)
    missing = [entry for entry in saved if not any(m.endswith(entry) for m in full)]
    if missing and not parts and not full:
        raise AdapterError("the weights file holds no tensor vlora recognises", where=where)
    if missing:
        raise AdapterError(f"adapter_config.json saves {', '.join(missing)} in full (modules_to_save), and the "
                           "weights hold none of it", where=where,
                           hint="the weights file is incomplete or belongs to another adapter")
    out += [AdaptedModule(name=n, kind="full", params=p) for n, p in full.items()]
    if not out:
        raise AdapterError("the weights file holds no tensor", where=Location(file=short_path(str(folder))))
    return out


def _model_type_of(config: dict[str, Any]) -> str | None:
    """The model_type of the base model class PEFT recorded (``auto_mapping.base_model_class``), if known."""
    cls = (config.get("auto_mapping") or {}).get("base_model_class") if isinstance(config.get("auto_mapping"),
                                                                                      dict) else None
    if not isinstance(cls, str):
        return None
    from transformers.models.auto import modeling_auto

    for table in ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES",
                  "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_MAPPING_NAMES"):
        for model_type, names in getattr(modeling_auto, table, {}).items():
            if cls in ((names,) if isinstance(names, str) else tuple(names)):
                return model_type
    return None


def _best_architecture(names: list[str], registry: Registry, model_type: str | None
                       ) -> tuple[ArchitectureSpec | None, str | None]:
    """The architecture whose patterns place the most modules; among equals, one that claims the base model
    class's model_type (several families share module names, so the names alone may not tell)."""
    def score(arch: ArchitectureSpec) -> tuple[int, int]:  # (placed with a role, placed at all)
        places = [arch.place(n) for n in names]
        return sum(1 for p in places if p and p[1]), sum(1 for p in places if p)

    scored = [(score(arch), info, arch) for info, arch in registry.architectures()]
    top = max((s for s, _, _ in scored), default=(0, 0))
    if top == (0, 0):
        return None, None
    best = [(info, arch) for s, info, arch in scored if s == top]
    claiming = [(info, arch) for info, arch in best if model_type in arch.model_types]
    info, arch = (claiming or best)[0]
    return arch, info.distribution


def placed(m: AdaptedModule, arch: ArchitectureSpec) -> AdaptedModule:
    """``m`` placed under ``arch``: its component, role, layer, stack, leaf and path (as is where it places nowhere)."""
    where = arch.place(m.name)
    if where is None:
        return m
    component, role, layer, stack, leaf, path = where
    return replace(m, component=component, role=role if m.kind == "lora" else None, layer=layer, stack=stack,
                   leaf=leaf, path=path)


__all__ = ["AdaptedModule", "Adapter", "read_adapter"]


# --- would it load? -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdapterCheck:
    """Whether an adapter loads completely into a model: what PEFT would leave out or get wrong."""

    adapter: Adapter
    model: str
    unmatched: tuple[AdaptedModule, ...]  # modules of the adapter the model does not have: their weights are lost
    untrained: tuple[str, ...]  # modules the config targets in this model with no weights in the adapter
    mismatched: tuple[tuple[AdaptedModule, str], ...]  # present, but the shapes do not fit: (module, why)
    migratable: bool = False  # every unmatched module has a counterpart here (vlora adapter migrate)

    @property
    def ok(self) -> bool:
        return not (self.unmatched or self.untrained or self.mismatched)

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter.path, "model": self.model, "ok": self.ok, "migratable": self.migratable,
                "unmatched": [m.name for m in self.unmatched], "untrained": list(self.untrained),
                "mismatched": [{"name": m.name, "problem": why} for m, why in self.mismatched]}

    def report(self) -> str:
        lines = [f"{self.adapter.path} on {self.model}: "
                 + ("every tensor of the adapter loads, and every targeted module gets its weights" if self.ok
                    else "the adapter would NOT load completely")]
        if self.unmatched:
            lines.append(f"{len(self.unmatched)} adapted modules are not in this model (their weights would be "
                         "dropped):")
            lines += _grouped(self.unmatched)
        if self.untrained:
            lines.append(f"{len(self.untrained)} modules this model would give an adapter get no weights from the "
                         "file (they would stay untrained):")
            placed = [AdaptedModule(name=n, kind="lora", params=0, component=_component_of(self.adapter.spec, n))
                      for n in self.untrained]
            lines += _grouped(tuple(placed))
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} modules do not fit their weights:")
            lines += [f"  {m.name}: {why}" for m, why in self.mismatched[:8]]
        if self.migratable:
            lines.append(f"every one of the {len(self.unmatched)} has a counterpart in this model (the names are of "
                         "another layout): `vlora adapter migrate DIR --model REF -o OUT` rewrites the adapter for it")
        return "\n".join(lines) + "\n"


def _component_of(arch: ArchitectureSpec | None, name: str) -> str | None:
    where = arch.place(name) if arch is not None else None
    return where[0] if where else None


def _grouped(modules: tuple[AdaptedModule, ...]) -> list[str]:
    groups: dict[str, list[AdaptedModule]] = {}
    for m in modules:
        groups.setdefault(m.component or ("(outside)" if m.kind == "full" else "(unplaced)"), []).append(m)
    out = []
    for component, ms in groups.items():
        example = ", ".join(m.name for m in ms[:2]) + (", ..." if len(ms) > 2 else "")
        out.append(f"  {component}: {len(ms)} ({example})")
    return out


def _config_targets(config: dict[str, Any], names: list[str]) -> set[str]:
    """The module names PEFT's target_modules (a regex, or a list of names / suffixes) picks among ``names``."""
    targets = config.get("target_modules")
    if isinstance(targets, str):
        try:
            rx = re.compile(targets)
        except re.error:
            return set()
        return {n for n in names if rx.fullmatch(n)}
    if isinstance(targets, list):
        wanted = [t for t in targets if isinstance(t, str)]
        return {n for n in names if any(n == t or n.endswith("." + t) for t in wanted)}
    return set()


def check_adapter(adapter: Adapter, tree: Any) -> AdapterCheck:
    """Check ``adapter`` against a module tree (``module_tree(model_or_ref, registry)``) as PEFT would load it."""
    entries = {e.name: e for e in tree.entries}
    unmatched, mismatched = [], []
    for m in adapter.modules:
        entry = entries.get(m.name)
        if m.owner:  # an adapted parameter
            if tree.param_shape(m.name) is None:
                unmatched.append(m)
            continue
        if entry is None:
            unmatched.append(m)
        elif m.kind == "lora" and (entry.in_features, entry.out_features) != (m.in_features, m.out_features) \
                and entry.kind is not None:
            mismatched.append((m, f"the adapter is {m.in_features} -> {m.out_features}, the module "
                                  f"{entry.in_features} -> {entry.out_features}"))
        elif m.kind == "full" and tree.subtree_params(m.name) not in (m.params, 0):
            mismatched.append((m, f"the adapter saves {m.params:,} values, the module has "
                                  f"{tree.subtree_params(m.name):,}"))
    wrappable = [e.name for e in tree.entries if e.kind is not None]
    have = {m.name for m in adapter.modules}
    untrained = [n for n in wrappable if n in _config_targets(adapter.config, wrappable) - have]  # model order
    migratable = False
    if unmatched:
        try:
            mapping = migration_map(adapter, tree)
            migratable = all(mapping[m.name] != m.name for m in unmatched)
        except AdapterError:
            migratable = False
    return AdapterCheck(adapter=adapter, model=tree.source, unmatched=tuple(unmatched), untrained=tuple(untrained),
                        mismatched=tuple(mismatched), migratable=migratable)




# --- migrate --------------------------------------------------------------------------------------


def _identity(arch: ArchitectureSpec | None, name: str) -> tuple[Any, ...] | None:
    """A module's logical identity under an architecture: (component, stack, layer, leaf); None if unplaced."""
    where = arch.place(name) if arch is not None else None
    return None if where is None else (where[0], where[3], where[2], where[4])


def migration_map(adapter: Adapter, tree: Any) -> dict[str, str]:
    """Old module name -> the name of the same module in ``tree``, through the logical identity (component,
    stack, layer, leaf); modules outside every component (lm_head) by their last name part and size. Refuses,
    naming them, the modules it cannot map (it never drops one)."""
    arch = adapter.spec
    names = [e.name for e in tree.entries if e.name] + [p for p, _ in tree.params]  # parameters: target_parameters
    present = set(names)
    by_identity: dict[tuple[Any, ...], list[str]] = {}
    for n in names:
        key = _identity(arch, n)
        if key is not None:
            by_identity.setdefault(key, []).append(n)
    mapping, lost = {}, []
    for m in adapter.modules:
        if m.name in present:
            mapping[m.name] = m.name
            continue
        key = _identity(arch, m.name)
        found = by_identity.get(key, []) if key is not None else []
        if key is None or (m.kind == "full" and len(found) != 1):
            last = m.name.rpartition(".")[2]
            found = [n for n in names if n.rpartition(".")[2] == last and tree.subtree_params(n) == m.params]
        if len(found) == 1:
            mapping[m.name] = found[0]
        else:
            lost.append(m.name)
    if lost:
        raise AdapterError(
            f"{len(lost)} adapted modules have no counterpart in {tree.source}: " + ", ".join(lost[:4])
            + (f" and {len(lost) - 4} more" if len(lost) > 4 else ""),
            where=Location(file=adapter.path),
            hint="nothing was written; check that the adapter was trained on this model family (vlora adapter "
            "inspect shows where its modules are)",
        )
    return mapping


def _exact(names: list[str]) -> str:
    return "^(?:" + "|".join(re.escape(n) for n in sorted(names)) + ")$"


def migrate_adapter(adapter: Adapter, tree: Any, out: str | Path) -> Path:
    """Write ``adapter`` for the layout of ``tree`` into the new folder ``out`` (atomically: a temporary
    folder beside it, renamed at the end): tensor keys and adapter_config.json (target_modules, rank and
    alpha patterns, modules_to_save, target_parameters) rewritten through each module's logical identity.
    The adapter's own folder is never touched."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{short_path(str(out))} exists and is not an empty folder", hint="migrate into a new folder")
    mapping = migration_map(adapter, tree)
    source = Path(adapter.path)
    tensors = _load_tensors(source / adapter.weights_file)
    # the name each module's tensors are saved under, old -> new (a parameter's: its module's)
    prefixes = {(m.owner or m.name): (mapping[m.name].rpartition(".")[0] + m.owner[len(
        re.sub(r"(?:\.base_layer)+$", "", m.owner)):] if m.owner else mapping[m.name]) for m in adapter.modules}
    renamed = {}
    for key, value in tensors.items():
        inner = key.removeprefix(_PREFIX)
        module = next((m for m in sorted(prefixes, key=len, reverse=True)
                       if inner == m or inner.startswith(m + ".")), None)
        if module is None:
            raise AdapterError(f"internal error: tensor {key} belongs to no adapted module", where=Location(
                file=adapter.path), hint="please report this with `vlora adapter inspect --json` output")
        renamed[_PREFIX + prefixes[module] + inner[len(module):]] = value
    config = dict(adapter.config)
    lora = [m for m in adapter.modules if m.kind == "lora"]
    new_names = [mapping[m.name] for m in lora if not m.owner]
    names = [e.name for e in tree.entries if e.kind is not None]
    if not (isinstance(config.get("target_modules"), list)
            and _config_targets(config, names) == set(new_names)):  # a suffix list that still fits stays
        config["target_modules"] = _exact(new_names) if new_names else config.get("target_modules")
    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    config["rank_pattern"] = _patterns({mapping[m.name]: m.r for m in lora if m.r != r})
    config["alpha_pattern"] = _patterns({mapping[m.name]: m.lora_alpha for m in lora if m.lora_alpha != alpha})
    if config.get("modules_to_save"):
        config["modules_to_save"] = [mapping[m.name] for m in adapter.modules if m.kind == "full"]
    if config.get("target_parameters"):
        config["target_parameters"] = [_remap_param(p, mapping) for p in config["target_parameters"]]
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        from safetensors.torch import save_file

        (work / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in renamed.items()}, str(work / SAFETENSORS_FILE),
                  metadata={"format": "pt"})
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _patterns(values: dict[str, Any]) -> dict[str, Any]:
    """One exact-name regex per distinct value (PEFT's first matching key wins, and few keys stay fast)."""
    by_value: dict[Any, list[str]] = {}
    for name, value in values.items():
        by_value.setdefault(value, []).append(name)
    return {"(?:" + "|".join(re.escape(n) for n in sorted(ns)) + ")": v for v, ns in by_value.items()}


def _remap_param(param: str, mapping: dict[str, str]) -> str:
    module, _, leaf = param.rpartition(".")
    return f"{mapping[module]}.{leaf}" if module in mapping else param


def _load_tensors(path: Path) -> dict[str, Any]:
    if path.name == SAFETENSORS_FILE:
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)




# --- the spec that reproduces an adapter ---------------------------------------------------------------


@dataclass(frozen=True)
class AdapterSpec:
    """The spec (as spec-file data) whose plan reproduces an adapter's targets on a model, and what it cannot
    express (LoRA modules outside every component)."""

    data: dict[str, Any]
    unexpressed: tuple[str, ...]
    plan: Any  # the TargetPlan the spec gives

    def to_yaml(self, source: str) -> str:
        import yaml

        head = [f"# the spec whose plan reproduces the adapter {source} (vlora adapter spec)"]
        if self.unexpressed:
            head.append(f"# it cannot express {len(self.unexpressed)} adapted modules outside every component: "
                        + ", ".join(self.unexpressed[:4]) + (" ..." if len(self.unexpressed) > 4 else ""))
        return "\n".join(head) + "\n" + yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


def _layers_value(layers: list[int], count: int) -> Any:
    """A layer selection in the spec's words: None (all), {first: N}, {last: N} or the list."""
    chosen = sorted(set(layers))
    if chosen == list(range(count)):
        return None
    if chosen == list(range(len(chosen))):
        return {"first": len(chosen)}
    if chosen == list(range(count - len(chosen), count)):
        return {"last": len(chosen)}
    return chosen


def spec_for_adapter(adapter: Adapter, tree: Any, registry: Registry, *, model: str | None = None) -> AdapterSpec:
    """The spec whose plan on ``tree`` has exactly the adapter's targets (through each module's logical
    identity, so an adapter of an older layout works too), with ranks, alphas, layers, the projector mode
    and the modules saved in full; leaves a component's roles do not cover are added with
    ``target_modules_extra`` and planned targets the adapter lacks removed with ``exclude_modules``."""
    if adapter.spec is None:
        raise AdapterError("no installed plugin places the adapter's modules, so no spec can describe them",
                           where=Location(file=adapter.path), hint="install the plugin of the adapter's model family")
    arch = adapter.spec
    mapping = migration_map(adapter, tree)
    lora = {mapping[m.name]: m for m in adapter.modules if m.kind == "lora"}
    saved = [mapping[m.name] for m in adapter.modules if m.kind == "full"]
    where = {n: arch.place(n) for n in lora}
    config = adapter.config
    data: dict[str, Any] = {}
    if model:
        data["model"] = model
    components = {w[0] for w in where.values() if w}
    roles = {w[1] for w in where.values() if w and w[1]}
    names = {c.name for c in arch.components}
    data["finetune_vision_layers"] = "vision" in components
    data["finetune_language_layers"] = "language" in components
    if "audio" in names:
        data["finetune_audio_layers"] = "audio" in components
    data["finetune_attention_modules"] = "attention" in roles
    data["finetune_mlp_modules"] = "mlp" in roles
    if any("cross_attention" in c.roles for c in arch.components):
        data["finetune_cross_attention"] = "cross_attention" in roles
    # the projector trained in full is saved as one module: the projector itself (no leaf inside it)
    projector_full = [n for n in saved if (p := arch.place(n)) is not None and p[0] == "projector" and not p[4]]
    data["finetune_projector"] = "lora" if "projector" in components else "full" if projector_full else "frozen"
    saved = [n for n in saved if n not in projector_full]
    ranks = Counter(m.r for m in lora.values())
    alphas = Counter(m.lora_alpha for m in lora.values())
    # the config's own r and alpha where its modules have them, else the commonest
    r = config.get("r") if config.get("r") in ranks or not ranks else ranks.most_common(1)[0][0]
    alpha = (float(config["lora_alpha"]) if config.get("lora_alpha") in alphas or not alphas
             else alphas.most_common(1)[0][0])
    data["r"], data["lora_alpha"] = r, alpha
    for key in ("lora_dropout", "bias", "use_rslora", "use_dora"):
        if key in config and config[key] is not None:
            data[key] = config[key]
    counts = resolve({}, tree, registry=registry).layer_counts if lora else {}
    for component in sorted(components):
        mods = [(n, m) for n, m in lora.items() if where[n] and where[n][0] == component]
        block: dict[str, Any] = {}
        rs, als = {m.r for _, m in mods}, {m.lora_alpha for _, m in mods}
        if len(rs) == 1 and rs != {r}:
            block["r"] = rs.pop()
        if len(als) == 1 and als != {alpha}:
            block["lora_alpha"] = als.pop()
        layers = [where[n][2] for n, _ in mods if where[n][2] is not None]
        stacks = {where[n][3] for n, _ in mods}
        if layers and stacks == {None} and component in counts:
            value = _layers_value(layers, counts[component])
            if value is not None:
                block["layers"] = value
        if block:
            data[component] = block
    if saved:
        data["modules_to_save"] = [re.escape(n) for n in saved]
    plan = resolve(data, tree, registry=registry)
    left = set(lora) - {t.name for t in plan.targets}
    if left:  # modules on layers the model never uses: the adapter trained them, so the spec includes them
        trial = {**data, "include_unused_layers": True}
        again = resolve(trial, tree, registry=registry)
        if len(set(lora) - {t.name for t in again.targets}) < len(left):
            data, plan = trial, again
    # a layer where the adapter has only a few of the planned modules is better said as extra targets than
    # as a layer with exclusions (an extra target on one layer of a tower whose other layers are selected)
    changed = False
    for component in sorted(components):
        block = data.get(component) if isinstance(data.get(component), dict) else {}
        layers = sorted({t.layer for t in plan.targets if t.component == component and t.layer is not None})
        if not layers or any(t.stack for t in plan.targets if t.component == component):
            continue
        at = {layer: [t.name for t in plan.targets if t.component == component and t.layer == layer]
              for layer in layers}
        partial = [layer for layer in layers if not set(at[layer]) <= set(lora)]
        complete = [layer for layer in layers if layer not in partial]
        have = {layer: [n for n in at[layer] if n in lora] for layer in partial}
        if complete and partial and sum(map(len, have.values())) < sum(
                len(at[layer]) - len(have[layer]) for layer in partial):
            value = _layers_value(complete, counts.get(component, max(layers) + 1))
            data[component] = {**block, "layers": value if value is not None else complete}
            changed = True
    if changed:
        plan = resolve(data, tree, registry=registry)
    planned = {t.name: t for t in plan.targets}
    extras = sorted(set(lora) - set(planned))
    missing = [planned[n] for n in planned if n not in lora]
    inside = [n for n in extras if where.get(n)]
    unexpressed = [n for n in extras if not where.get(n)]
    if inside:
        data["target_modules_extra"] = [re.escape(n) for n in inside]
    if missing:
        data["exclude_modules"] = names_regex((t.path, t.layer, t.leaf) for t in missing)
    if inside or missing:
        plan = resolve(data, tree, registry=registry)
    got = {t.name for t in plan.targets}
    if got != set(lora) - set(unexpressed):
        raise AdapterError("internal error: the spec written for the adapter does not reproduce its targets",
                           where=Location(file=adapter.path), hint="please report this with `vlora adapter inspect "
                           "--json` output")
    return AdapterSpec(data=data, unexpressed=tuple(unexpressed), plan=plan)


__all__ = ["AdaptedModule", "Adapter", "AdapterCheck", "AdapterSpec", "check_adapter", "migrate_adapter",
           "migration_map", "placed", "read_adapter", "spec_for_adapter"]
