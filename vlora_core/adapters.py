"""Adapters already on disk (PEFT's format, whatever trained them): what one covers, read from its files.

``read_adapter(DIR)`` reads ``adapter_config.json`` and the tensor names and shapes of the weights
(``adapter_model.safetensors``; a ``.bin`` only through ``torch.load(weights_only=True)``), checks that the
two agree, and places every adapted module by the installed plugins' patterns: component, role, layer,
leaf, the same logical identity a plan's targets have. No base model is needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec
from .diagnostics import Location, os_error_hint, short_path
from .errors import AdapterError
from .patterns import layer_ranges
from .plugins import Registry
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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "params", "r", "lora_alpha", "in_features",
                                              "out_features", "component", "role", "layer", "stack", "leaf")}


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

    @property
    def total_params(self) -> int:
        return sum(m.params for m in self.modules)

    @property
    def unplaced(self) -> list[str]:
        """Adapted (LoRA) modules that no component of the architecture holds."""
        return [m.name for m in self.modules if m.component is None and m.kind == "lora"]

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
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {2, 6}
        lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                                   strict=True)))
                 .rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        tail = ["", f"total: {len(self.modules)} modules, {self.total_params:,} parameters"]
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
        modules = [_placed(m, arch) for m in modules]
    modules.sort(key=lambda m: (group_order(m.component or "~", m.role or "~"), m.stack or "",
                                -1 if m.layer is None else m.layer, m.name))
    return Adapter(path=short_path(str(folder)), weights_file=weights_file, config=config, tensors=tensors,
                   modules=tuple(modules), architecture=arch.name if arch else None, plugin=plugin)


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
    for name, got in parts.items():
        a, b = got.get("lora_A") or got.get("lora_embedding_A"), got.get("lora_B") or got.get("lora_embedding_B")
        if a is None or b is None:
            raise AdapterError(f"the weights hold {'lora_A' if a else 'lora_B'} of {name} without its "
                               f"{'lora_B' if a else 'lora_A'}", where=Location(file=short_path(str(folder))),
                               hint="the weights file is incomplete: save the adapter again")
        embedding = "lora_embedding_A" in got
        r = a[1] if embedding else a[0]
        expected = _pattern_value(config.get("rank_pattern"), name, r_default)
        if r != expected:
            raise AdapterError(f"adapter_config.json disagrees with the weights: {name} has rank {r} in the weights, "
                               f"the config says {expected}", where=where,
                               hint="the config belongs to another adapter; keep each config with its weights")
        in_f = a[0] if embedding else (a[1] * (_prod(a[2:]) if len(a) > 2 else 1))
        out_f = b[1] if embedding else b[0]
        params = sum(_prod(s) for s in got.values())
        out.append(AdaptedModule(name=name, kind="lora", params=params, r=r,
                                 lora_alpha=float(_pattern_value(config.get("alpha_pattern"), name, alpha_default)),
                                 in_features=in_f, out_features=out_f))
    saved = list(config.get("modules_to_save") or [])
    full: dict[str, int] = {}
    for key, shape in rest.items():
        module = key.rpartition(".")[0]
        owner = next((s for s in saved if module.endswith(s)), None)
        if owner is None:
            raise AdapterError(f"the weights hold {key}, which is neither a LoRA weight nor part of a module the "
                               "config saves in full (modules_to_save)", where=where,
                               hint="the config belongs to another adapter; keep each config with its weights")
        full[module] = full.get(module, 0) + _prod(shape)
    missing = [s for s in saved if not any(m.endswith(s) for m in full)]
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


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _place(arch: ArchitectureSpec, name: str) -> tuple[str, str | None, int | None, str | None, str] | None:
    """(component, role, layer, stack, leaf) of a module name under an architecture's patterns."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        prefix, leaf = ".".join(parts[:cut]), ".".join(parts[cut:])
        for comp in arch.components:
            match = comp.pattern.fullmatch(prefix)
            if match is None:
                continue
            groups = match.groupdict()
            layer = int(groups["layer"]) if groups.get("layer") is not None else None
            role = next((r for r, leaves in comp.roles.items() if leaf in leaves), None)
            return comp.name, role, layer, groups.get("stack"), leaf
    return None


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
    scored = [(sum(1 for n in names if _place(arch, n) is not None), info, arch)
              for info, arch in registry.architectures()]
    top = max((s for s, _, _ in scored), default=0)
    if top == 0:
        return None, None
    best = [(info, arch) for s, info, arch in scored if s == top]
    claiming = [(info, arch) for info, arch in best if model_type in arch.model_types]
    info, arch = (claiming or best)[0]
    return arch, info.distribution


def _placed(m: AdaptedModule, arch: ArchitectureSpec) -> AdaptedModule:
    where = _place(arch, m.name)
    if where is None:
        return m
    component, role, layer, stack, leaf = where
    from dataclasses import replace

    return replace(m, component=component, role=role if m.kind == "lora" else None, layer=layer, stack=stack,
                   leaf=leaf)


__all__ = ["AdaptedModule", "Adapter", "read_adapter"]
