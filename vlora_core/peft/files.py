"""Adapter files as PEFT writes them (``adapter_config.json`` beside ``adapter_model.safetensors``, or a
``.bin`` read only with ``weights_only=True``): the config, the tensor names and shapes, and the modules they
adapt or save in full, read through PEFT's own naming and matching rules (``rules``). No placement here: the
``adapters`` room places the modules by the installed plugins.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnostics import Location, os_error_hint, short_path
from ..errors import AdapterError
from ..placement import Placement
from ..vocabulary import ADAPTED, SAVED
from .rules import LORA_TENSOR, PREFIX, pattern_value, saved_entry, saved_matches, wrapped_owner

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


def read_tensors(folder: Path) -> tuple[dict[str, tuple[int, ...]], str]:
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


def _pattern(config: dict[str, Any], key: str, name: str, default: Any, where: Location) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup for one module, a key that is no regex named."""
    try:
        return pattern_value(config.get(key), name, default)
    except re.error as exc:
        raise AdapterError(f"{CONFIG_FILE}: a {key} key is not a valid regular expression ({exc})", where=where,
                           hint="PEFT cannot load this adapter either: fix the key") from None


def adapted_modules(config: dict[str, Any], tensors: dict[str, tuple[int, ...]], folder: Path) -> list[AdaptedModule]:
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
    # module nest (module.base_layer...): the outermost wrapper is the last one listed
    params_of: dict[str, list[str]] = {}
    for param in config.get("target_parameters") or []:
        if isinstance(param, str):
            params_of.setdefault(param.rpartition(".")[0], []).append(param)
    for raw, got in parts.items():
        owner, depth = wrapped_owner(raw)
        listed = params_of.get(owner, [])
        name = listed[-1 - depth] if depth < len(listed) else raw
        a, b = got.get("lora_A") or got.get("lora_embedding_A"), got.get("lora_B") or got.get("lora_embedding_B")
        if a is None or b is None:
            raise AdapterError(f"the weights hold {'lora_A' if a else 'lora_B'} of {name} without its "
                               f"{'lora_B' if a else 'lora_A'}", where=Location(file=short_path(str(folder))),
                               hint="the weights file is incomplete: save the adapter again")
        embedding = "lora_embedding_A" in got
        r = a[1] if embedding else a[0]
        expected = _pattern(config, "rank_pattern", name, r_default, where)
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
                                 lora_alpha=float(_pattern(config, "alpha_pattern", name, alpha_default, where)),
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





def write_adapter(out: Path, config: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """Write an adapter folder atomically: a temporary folder beside ``out``, renamed at the end (``out`` must
    not exist, or be an empty folder)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        from safetensors.torch import save_file

        (work / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(work / SAFETENSORS_FILE),
                  metadata={"format": "pt"})
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


__all__ = ["BIN_FILE", "CONFIG_FILE", "MAX_ADAPTER_CONFIG_BYTES", "SAFETENSORS_FILE", "AdaptedModule",
           "adapted_modules", "load_tensors", "read_config", "read_tensors", "write_adapter"]
