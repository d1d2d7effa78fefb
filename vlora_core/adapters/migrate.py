"""An adapter on disk rewritten for another layout of its model family: every module mapped through its logical
identity (``Placement.key``), refused by name where one cannot be mapped, and expert weights whose layout
transformers transposed between versions rewritten as the same update in the new layout; the adapter's folder
is never touched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..architecture import ArchitectureSpec
from ..boundary import check_output
from ..diagnostics import Location, short_path
from ..errors import AdapterError, UsageError
from ..peft.files import AdaptedModule, adapter_files, load_tensors, write_adapter
from ..peft.rules import PREFIX, exact_regex, target_matches, value_patterns, wrapped_owner
from ..vocabulary import ADAPTED, SAVED, TargetKey
from .inspect import Adapter, in_order_of


def _identity(arch: ArchitectureSpec | None, name: str) -> TargetKey | None:
    """A module's logical identity under an architecture; None if unplaced."""
    where = arch.place(name) if arch is not None else None
    return None if where is None else where.key


FITS, TRANSPOSED, MISFIT = "fits", "transposed", "misfit"


def param_layout(module: AdaptedModule, shape: tuple[int, ...] | None) -> str:
    """How an adapted parameter's LoRA weights fit the parameter of ``shape`` (PEFT reads a (experts, d1, d2)
    weight as d2 -> d1: lora_A is (r * experts, d2), lora_B (d1, r * experts)): ``fits``; ``transposed`` (the
    adapter was saved where the weight is (experts, d2, d1): Qwen3-VL-MoE's fused experts under transformers
    4.57 against 5.x); or ``misfit``."""
    if shape is None or len(shape) not in (2, 3):
        return MISFIT
    experts, d1, d2 = (1, *shape) if len(shape) == 2 else shape
    if experts != module.experts:
        return MISFIT
    if (module.out_features, module.in_features) == (d1, d2):
        return FITS
    if (module.out_features, module.in_features) == (d2, d1):
        return TRANSPOSED
    return MISFIT


def transpose_lora(a: Any, b: Any, experts: int) -> tuple[Any, Any]:
    """LoRA weights of a (experts, d1, d2) parameter -> those of the same update to its (experts, d2, d1) layout:
    each expert's delta B_e A_e becomes its transpose A_e^T B_e^T (exact: no weight is rounded or dropped).
    PEFT stacks A expert-major ((experts, r, in) rows) and B rank-major ((out, r, experts) columns)."""
    r = a.shape[0] // experts
    a3, b3 = a.reshape(experts, r, a.shape[1]), b.reshape(b.shape[0], r, experts)
    return (b3.permute(2, 1, 0).reshape(experts * r, b.shape[0]).contiguous(),
            a3.permute(2, 1, 0).reshape(a.shape[1], r * experts).contiguous())


def migration_map(adapter: Adapter, tree: Any) -> dict[str, str]:
    """Old module name -> the name of the same module in ``tree``, through the logical identity (component,
    stack, layer, leaf); modules outside every component (lm_head) by their last name part and size. Refuses,
    naming them, the modules it cannot map (it never drops one)."""
    arch = adapter.spec
    names = [e.name for e in tree.entries if e.name] + [p for p, _ in tree.params]  # parameters: target_parameters
    present = set(names)
    by_identity: dict[TargetKey, list[str]] = {}
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
        if key is None or (m.kind == SAVED and len(found) != 1):
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
    sources: dict[str, list[str]] = {}
    for old, new in mapping.items():
        sources.setdefault(new, []).append(old)
    collisions = {new: olds for new, olds in sources.items() if len(olds) > 1}
    if collisions:
        new, olds = next(iter(sorted(collisions.items())))
        raise AdapterError(
            f"{len(collisions)} modules of {tree.source} would receive two of the adapter's modules, e.g. {new} "
            f"from both {' and '.join(olds)} (the same layer under two transformers layouts); one would be lost",
            where=Location(file=adapter.path),
            hint="nothing was written; keep one layout's modules in the adapter (they are the same weights trained "
            "twice), then migrate",
        )
    return mapping


def migrate_adapter(adapter: Adapter, tree: Any, out: str | Path) -> Path:
    """Write ``adapter`` for the layout of ``tree`` into the new folder ``out`` (atomically: a temporary
    folder beside it, renamed at the end): tensor keys and adapter_config.json (target_modules, rank and
    alpha patterns, modules_to_save, target_parameters) rewritten through each module's logical identity.
    The adapter's own folder is never touched."""
    adapter = in_order_of(adapter, tree)
    out = check_output(out, inputs=adapter_files(adapter.path), what="the migrated adapter", folder=True)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{short_path(str(out))} exists and is not an empty folder", hint="migrate into a new folder")
    mapping = migration_map(adapter, tree)
    source = Path(adapter.path)
    tensors = load_tensors(source / adapter.weights_file)
    # the name each module's tensors are saved under, old -> new (a parameter's: its module's)
    prefixes = {(m.owner or m.name): (mapping[m.name].rpartition(".")[0] + m.owner[len(wrapped_owner(m.owner)[0]):]
                                      if m.owner else mapping[m.name]) for m in adapter.modules}
    # parameters whose weights are laid out for another transformers version: their LoRA weights, transposed
    for m in adapter.modules:
        if m.owner and param_layout(m, tree.param_shape(mapping[m.name])) == TRANSPOSED:
            a_key, b_key = f"{PREFIX}{m.owner}.lora_A.weight", f"{PREFIX}{m.owner}.lora_B.weight"
            tensors[a_key], tensors[b_key] = transpose_lora(tensors[a_key], tensors[b_key], m.experts)
    renamed = {}
    for key, value in tensors.items():
        inner = key.removeprefix(PREFIX)
        module = next((m for m in sorted(prefixes, key=len, reverse=True)
                       if inner == m or inner.startswith(m + ".")), None)
        if module is None:
            raise AdapterError(f"internal error: tensor {key} belongs to no adapted module", where=Location(
                file=adapter.path), hint="please report this with `vlora adapter inspect --json` output")
        renamed[PREFIX + prefixes[module] + inner[len(module):]] = value
    config = dict(adapter.config)
    lora = [m for m in adapter.modules if m.kind == ADAPTED]
    new_names = [mapping[m.name] for m in lora if not m.owner]
    names = [e.name for e in tree.entries if e.kind is not None]
    # a suffix list that still fits stays
    if not (isinstance(config.get("target_modules"), list)
            and set(target_matches(config["target_modules"], names)) == set(new_names)):
        config["target_modules"] = exact_regex(new_names) if new_names else config.get("target_modules")
    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    config["rank_pattern"] = value_patterns({mapping[m.name]: m.r for m in lora if m.r != r})
    config["alpha_pattern"] = value_patterns({mapping[m.name]: m.lora_alpha for m in lora if m.lora_alpha != alpha})
    if config.get("modules_to_save"):
        config["modules_to_save"] = [mapping[m.name] for m in adapter.modules if m.kind == SAVED]
    if config.get("target_parameters"):
        config["target_parameters"] = [_remap_param(p, mapping) for p in config["target_parameters"]]
    return write_adapter(out, config, renamed)


def _remap_param(param: str, mapping: dict[str, str]) -> str:
    module, _, leaf = param.rpartition(".")
    return f"{mapping[module]}.{leaf}" if module in mapping else param


__all__ = ["FITS", "MISFIT", "TRANSPOSED", "migrate_adapter", "migration_map", "param_layout", "transpose_lora"]
