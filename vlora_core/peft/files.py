"""Adapter files as PEFT writes them (``adapter_config.json`` beside ``adapter_model.safetensors``, or a
``.bin`` read only with ``weights_only=True``): the config, the tensor names and shapes, and the modules they
adapt or save in full, read through PEFT's own naming and matching rules (``rules``). No placement here: the
``adapters`` room places the modules by the installed plugins.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..boundary import decode, load_json, read_head, read_json, shown, write_folder
from ..diagnostics import Location, short_path
from ..errors import AdapterError
from ..placement import Placement
from ..vocabulary import ADAPTED, SAVED
from .rules import LORA_TENSOR, PREFIX, pattern_values, saved_entry, saved_matches, wrapped_owner

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter_model.safetensors"
BIN_FILE = "adapter_model.bin"
MAX_ADAPTER_CONFIG_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AdaptedModule:
    """One module an adapter changes: a LoRA pair (``kind`` ADAPTED) or a module saved in full ("full")."""

    name: str  # the module's name in the base model, as the adapter saved it
    kind: str
    params: int
    r: int | None = None
    lora_alpha: float | None = None
    in_features: int = 0
    out_features: int = 0
    owner: str = ""  # for an adapted parameter (target_parameters): the module its tensors are saved under
    experts: int = 1  # experts adapted at once (a 3-D expert weight)
    placement: Placement | None = None  # where the installed plugins' patterns place it (None: nowhere)

    @property
    def component(self) -> str | None:
        return self.placement.component if self.placement else None

    @property
    def role(self) -> str | None:
        """Its role (an adapter's module only: a module saved in full has none)."""
        return self.placement.role if self.placement and self.kind == ADAPTED else None

    @property
    def layer(self) -> int | None:
        return self.placement.layer if self.placement else None

    @property
    def stack(self) -> str | None:
        return self.placement.stack if self.placement else None

    @property
    def leaf(self) -> str:
        return self.placement.leaf if self.placement else ""

    @property
    def path(self) -> str:
        """The module holding it, with the layer index as '*' (which layout the names are of)."""
        return self.placement.path if self.placement else ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("name", "kind", "params", "r", "lora_alpha", "in_features",
                                              "out_features", "experts", "component", "role", "layer", "stack",
                                              "leaf", "path")}



def read_config(folder: Path) -> dict[str, Any]:
    file = folder / CONFIG_FILE
    where = Location(file=short_path(str(file)))
    if not (file.exists() or file.is_symlink()):
        raise AdapterError(f"{short_path(str(folder))} is not a PEFT adapter: it has no {CONFIG_FILE}",
                           where=Location(file=short_path(str(folder))),
                           hint="give the folder save_pretrained wrote; a merged model is no adapter")
    config = read_json(file, "adapter config", AdapterError)
    if not isinstance(config, dict):
        raise AdapterError(f"{CONFIG_FILE} holds a {type(config).__name__}, not a JSON object", where=where)
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"this is a {shown(config.get('peft_type'), 60)} adapter; vlora reads LoRA adapters",
                           where=where)
    _check_types(config, where)
    return config


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# each key of adapter_config.json that vlora reads, and what PEFT writes there
_KEY_TYPES: dict[str, tuple[str, Any]] = {
    "r": ("a positive whole number", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
    "lora_alpha": ("a number", _is_number),
    "lora_dropout": ("a number", _is_number),
    "target_modules": ("a regular expression or a list of names", lambda v: v is None or isinstance(v, str)
                       or _names(v)),
    "target_parameters": ("a list of names", lambda v: v is None or _names(v)),
    "modules_to_save": ("a list of names", lambda v: v is None or _names(v)),
    "rank_pattern": ("a mapping of patterns to whole numbers", lambda v: v is None or (isinstance(v, dict) and all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v.values()))),
    "alpha_pattern": ("a mapping of patterns to numbers", lambda v: v is None or (isinstance(v, dict) and all(
        _is_number(n) for n in v.values()))),
    "base_model_name_or_path": ("a name", lambda v: v is None or isinstance(v, str)),
    "bias": ("none, all or lora_only", lambda v: v is None or v in ("none", "all", "lora_only")),
    "use_dora": ("true or false", lambda v: v is None or isinstance(v, bool)),
    "use_rslora": ("true or false", lambda v: v is None or isinstance(v, bool)),
    "auto_mapping": ("a mapping", lambda v: v is None or isinstance(v, dict)),
}


def _check_types(config: dict[str, Any], where: Location) -> None:
    """Every key vlora reads holds what PEFT writes there; anything else is a damaged adapter naming the key."""
    for key, (expected, ok) in _KEY_TYPES.items():
        if key in config and not ok(config[key]):
            raise AdapterError(f"{CONFIG_FILE}: {key} must be {expected}, got {shown(config[key], 80)}",
                               where=Location(file=where.file, field=key),
                               hint="the config is damaged or was not written by PEFT: save the adapter again")


MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit for a header


def _safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes of a safetensors file, read from its header alone (8 bytes of length, then
    JSON), each entry checked and the data it points at checked to lie inside the file."""
    where = Location(file=short_path(str(file)))
    length = int.from_bytes(read_head(file, 8, "weights file", AdapterError), "little")
    if length > MAX_HEADER_BYTES:
        raise AdapterError(f"{SAFETENSORS_FILE} is damaged or truncated: its header claims {length:,} bytes",
                           where=where, hint="save the adapter again, or copy the file again in full")
    head = read_head(file, 8 + length, "weights file", AdapterError)[8:]
    header = load_json(decode(head, file, "weights file", AdapterError), file, "weights file", AdapterError)
    if not isinstance(header, dict):
        raise AdapterError(f"{SAFETENSORS_FILE} is damaged or truncated: its header is no mapping", where=where)
    size = file.stat().st_size - 8 - length
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1]):
            raise AdapterError(f"{SAFETENSORS_FILE} is damaged or truncated: the header's entry for tensor "
                               f"{shown(name, 120)} lacks a shape or data offsets", where=where,
                               hint="save the adapter again, or copy the file again in full")
        if offsets[1] > size:
            raise AdapterError(f"{SAFETENSORS_FILE} is damaged or truncated: tensor {shown(name, 120)} ends at byte "
                               f"{offsets[1]:,} of {size:,}", where=where,
                               hint="save the adapter again, or copy the file again in full")
        shapes[name] = tuple(shape)
    return shapes


def read_tensors(folder: Path) -> tuple[dict[str, tuple[int, ...]], str]:
    safetensors_file, bin_file = folder / SAFETENSORS_FILE, folder / BIN_FILE
    if safetensors_file.exists() or safetensors_file.is_symlink():
        return _safetensors_shapes(safetensors_file), SAFETENSORS_FILE
    if bin_file.is_file():
        import torch

        read_head(bin_file, 1, "weights file", AdapterError)  # a regular file, not a pipe or a device
        try:
            state = torch.load(bin_file, map_location="meta", weights_only=True)
        except Exception as exc:  # torch's message advises weights_only=False, which vlora never does
            raise AdapterError(f"{BIN_FILE} cannot be read safely ({type(exc).__name__}: "
                               f"{shown(str(exc).split('.')[0], 160)})",
                               where=Location(file=short_path(str(bin_file))),
                               hint="vlora loads .bin files with weights_only=True only; convert the adapter to "
                               "safetensors") from None
        if not isinstance(state, dict):
            raise AdapterError(f"{BIN_FILE} holds no state dict", where=Location(file=short_path(str(bin_file))))
        return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}, BIN_FILE
    raise AdapterError(f"{short_path(str(folder))} has {CONFIG_FILE} but no weights ({SAFETENSORS_FILE} or {BIN_FILE})",
                       where=Location(file=short_path(str(folder))), hint="copy the adapter's weights file too")


# transformers registers a fused-experts module's weights in this order (every family with them, 4.57 to 5.24);
# PEFT wraps a module's targeted parameters in registration order, so the first is the innermost (base_layer)
REGISTRATION_ORDER = ("gate_up_proj", "down_proj")


def registration_order(names: list[str], tree_order: dict[str, int] | None = None) -> list[str]:
    """``names`` (the target_parameters of one module) in the order the module registers them: the model's own
    order where a module tree gives it, else transformers' known order for fused experts, else as listed."""
    def key(item: tuple[int, str]) -> tuple[int, int]:
        index, name = item
        if tree_order is not None and name in tree_order:
            return (tree_order[name], index)
        leaf = name.rpartition(".")[2]
        return (REGISTRATION_ORDER.index(leaf) if leaf in REGISTRATION_ORDER else len(REGISTRATION_ORDER), index)

    return [name for _, name in sorted(enumerate(names), key=key)]


def adapted_modules(config: dict[str, Any], tensors: dict[str, tuple[int, ...]], folder: Path,
                    tree_order: dict[str, int] | None = None) -> list[AdaptedModule]:
    """The modules (and parameters) an adapter changes, from its config and tensor shapes. ``tree_order``: the
    model's parameter names -> their order, which says how PEFT nested several parameters of one module."""
    where = Location(file=short_path(str(folder / CONFIG_FILE)))
    parts: dict[str, dict[str, tuple[int, ...]]] = {}
    rest: dict[str, tuple[int, ...]] = {}
    for key, shape in tensors.items():
        match = LORA_TENSOR.match(key.removeprefix(PREFIX))
        if match:
            parts.setdefault(match.group("module"), {})[match.group("part")] = shape
        else:
            rest[key.removeprefix(PREFIX)] = shape
    out = []
    r_default, alpha_default = config.get("r", 8), config.get("lora_alpha", 8)
    # an adapted parameter (PEFT's target_parameters) is saved under the module that holds it; several on one
    # module nest (module.base_layer...): PEFT wraps them in the module's registration order, so the outermost
    # wrapper is the last registered
    params_of: dict[str, list[str]] = {}
    for param in config.get("target_parameters") or []:
        if isinstance(param, str):
            params_of.setdefault(param.rpartition(".")[0], []).append(param)
    params_of = {owner: registration_order(names, tree_order) for owner, names in params_of.items()}
    named: dict[str, str] = {}  # the name each module's tensors are saved under -> the module (or parameter)
    for raw in parts:
        owner, depth = wrapped_owner(raw)
        listed = params_of.get(owner, [])
        named[raw] = listed[-1 - depth] if depth < len(listed) else raw
    ranks = pattern_values(config.get("rank_pattern"), named.values(), r_default, where=where,
                           error=AdapterError, what=f"{CONFIG_FILE}: rank_pattern")
    alphas = pattern_values(config.get("alpha_pattern"), named.values(), alpha_default, where=where,
                            error=AdapterError, what=f"{CONFIG_FILE}: alpha_pattern")
    for raw, got in parts.items():
        name = named[raw]
        a, b = got.get("lora_A") or got.get("lora_embedding_A"), got.get("lora_B") or got.get("lora_embedding_B")
        if a is None or b is None:
            raise AdapterError(f"the weights hold {'lora_A' if a else 'lora_B'} of {shown(name)} without its "
                               f"{'lora_B' if a else 'lora_A'}", where=Location(file=short_path(str(folder))),
                               hint="the weights file is incomplete: save the adapter again")
        embedding = "lora_embedding_A" in got
        if len(a) < 2 or len(b) < 2:
            raise AdapterError(f"the weights are damaged: {shown(name)} has a lora_A of shape {list(a)} and a lora_B "
                               f"of shape {list(b)}; LoRA weights have at least two dimensions", where=where,
                               hint="save the adapter again, or copy the file again in full")
        r = a[1] if embedding else a[0]
        expected = ranks[name]
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
        out.append(AdaptedModule(name=name, kind=ADAPTED, params=params, r=r,
                                 lora_alpha=float(alphas[name]),
                                 in_features=in_f, out_features=out_f, owner=raw if name != raw else "",
                                 experts=experts))
    saved = list(config.get("modules_to_save") or [])
    full: dict[str, int] = {}
    for key, shape in rest.items():
        parts = key.split(".")[:-1]
        # the saved module (PEFT matches modules_to_save by the end of the name) that holds this tensor
        module = next((p for p in (".".join(parts[:cut]) for cut in range(len(parts), 0, -1))
                       if saved_entry(p, saved) is not None), None)
        if module is None:
            raise AdapterError(f"the weights hold {key}, which is neither a LoRA weight nor part of a module the "
                               "config saves in full (modules_to_save)", where=where,
                               hint="the config belongs to another adapter; keep each config with its weights")
        full[module] = full.get(module, 0) + math.prod(shape)
    missing = [entry for entry in saved if not saved_matches([entry], full)]
    if missing and not parts and not full:
        raise AdapterError("the weights file holds no tensor vlora recognises", where=where)
    if missing:
        raise AdapterError(f"adapter_config.json saves {', '.join(missing)} in full (modules_to_save), and the "
                           "weights hold none of it", where=where,
                           hint="the weights file is incomplete or belongs to another adapter")
    out += [AdaptedModule(name=n, kind=SAVED, params=p) for n, p in full.items()]
    if not out:
        raise AdapterError("the weights file holds no tensor", where=Location(file=short_path(str(folder))))
    return out


def load_tensors(path: Path) -> dict[str, Any]:
    if path.name == SAFETENSORS_FILE:
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)





def adapter_files(folder: str | Path) -> list[Path]:
    """The files of an adapter folder (what a command that reads the adapter must never write onto)."""
    return [Path(folder) / name for name in (CONFIG_FILE, SAFETENSORS_FILE, BIN_FILE)]


def write_adapter(out: Path, config: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """Write an adapter folder atomically through the boundary (``out`` must not exist, or be an empty
    folder)."""
    from safetensors.torch import save_file

    def weights(path: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})

    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    return write_folder(out, {CONFIG_FILE: text.encode("utf-8"), SAFETENSORS_FILE: weights},
                        what="the adapter folder")


__all__ = ["BIN_FILE", "CONFIG_FILE", "MAX_ADAPTER_CONFIG_BYTES", "REGISTRATION_ORDER", "SAFETENSORS_FILE",
           "AdaptedModule", "adapted_modules", "adapter_files", "load_tensors", "read_config", "read_tensors",
           "registration_order", "write_adapter"]
