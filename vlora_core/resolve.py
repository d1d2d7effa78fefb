"""spec × architecture × module tree → TargetPlan. Every validation rule lives here.

``resolve`` is pure: it reads the spec, the plugin's declared patterns and the module tree, and either
returns a plan or raises exactly one ``ResolutionError`` saying what is wrong, where, and how to fix it.
It never touches a live model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec, Component
from .errors import (
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    PatternMatchError,
    SpecArchitectureMismatch,
    UnsupportedModuleTypeError,
    UsageError,
    UserPatternError,
)
from .modeltree import PARAMETER, ModuleTree, module_tree
from .plan import FullModule, Target, TargetPlan
from .plugins import PluginInfo, Registry, default_registry
from .spec import LayerRange, VisionLoRASpec, load_spec, spec_from_data

_TOWER_TOGGLE = {"vision": "finetune_vision_layers", "language": "finetune_language_layers"}
_WRAPPABLE = "LoRA wraps Linear, Conv1d/2d/3d, Embedding, HF Conv1D and 2-D parameters"


@dataclass(frozen=True)
class _Holder:
    """A module matched by a component's prefix: a layer of a stack, or the whole (layer-less) component."""

    name: str
    component: str
    layer: int | None
    stack: str | None  # the stack's name, for components with several stacks
    path: str  # the name with the layer index written as '*'


@dataclass(frozen=True)
class _Pick:
    """One chosen target before it becomes a ``Target``."""

    holder: _Holder
    role: str
    leaf: str
    kind: str  # "module" or "parameter"


def _as_spec(spec: VisionLoRASpec | dict[str, Any] | str | Path) -> VisionLoRASpec:
    if isinstance(spec, VisionLoRASpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_data(spec)
    if isinstance(spec, str | Path):
        return load_spec(spec)
    raise UsageError(f"cannot read a spec from a {type(spec).__name__}", hint="pass a VisionLoRASpec, dict or path")


def _holders(tree: ModuleTree, comp: Component) -> list[_Holder]:
    pattern = comp.pattern
    out = []
    for entry in tree.entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        if comp.layered:
            start, end = match.span("layer")
            layer = int(match.group("layer"))
            path = entry.name[:start] + "*" + entry.name[end:]
        else:
            layer, path = None, entry.name
        stack = match.group("stack") if comp.stacked else None
        out.append(_Holder(entry.name, comp.name, layer, stack, path))
    return out


def _leaf_name(holder: _Holder, leaf: str) -> str:
    return f"{holder.name}.{leaf}" if leaf else holder.name


def _lookup(tree: ModuleTree, holder: _Holder, leaf: str) -> tuple[str, str] | None:
    """(full name, "module" | "parameter") of a declared leaf under a holder, if the tree has it."""
    name = _leaf_name(holder, leaf)
    if name in tree:
        return name, "module"
    if leaf and tree.param_shape(name) is not None:
        return name, "parameter"
    return None


def _role_enabled(role: str, spec: VisionLoRASpec) -> bool:
    if role == "attention":
        return spec.finetune_attention_modules
    if role == "mlp":
        return spec.finetune_mlp_modules
    if role == "cross_attention":
        if spec.finetune_cross_attention is not None:
            return spec.finetune_cross_attention
        return spec.finetune_attention_modules
    if role == "projection":
        return spec.finetune_projector == "lora"
    return False


def _component_enabled(name: str, spec: VisionLoRASpec) -> bool:
    if name == "projector":
        return spec.finetune_projector != "frozen"
    return bool(getattr(spec, _TOWER_TOGGLE[name]))


def _who(plugin: PluginInfo, arch: ArchitectureSpec) -> str:
    return f"plugin {plugin.distribution} ({arch.name})"


def _ancestor_holder(name: str, by_name: dict[str, _Holder]) -> _Holder | None:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        holder = by_name.get(".".join(parts[:cut]))
        if holder is not None:
            return holder
    return None


def _stack_counts(holders: list[_Holder]) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for h in holders:
        counts[h.stack] = max(counts.get(h.stack, 0), (h.layer or 0) + 1)
    return counts


def _pick_layers(
    selection: list[int] | LayerRange, count: int, what: str, spec: VisionLoRASpec, comp: str
) -> set[int]:
    where = spec.locate(comp, "layers")
    if isinstance(selection, LayerRange):
        n = selection.first if selection.first is not None else selection.last
        assert n is not None
        if n > count:
            raise LayerSelectionError(
                f"{selection.describe()} layers asked, but {what} has {count} layers",
                where=where,
                hint=f"use a number from 1 to {count}, or leave `layers` out to train all {count}",
            )
        return set(selection.indices(count))
    missing = [i for i in selection if i >= count]
    if missing:
        raise LayerSelectionError(
            f"layer {missing[0]} does not exist: {what} has {count} layers (0-{count - 1})",
            where=where,
            hint=f"use indices 0 to {count - 1}, or {{last: N}} for the last N layers",
        )
    return set(selection)


def _select_layers(
    spec: VisionLoRASpec, comp: str, holders: list[_Holder], arch: ArchitectureSpec
) -> dict[str | None, set[int]] | None:
    """Per stack, the layer indices the spec selects for a component (None: all), validated against the tree."""
    selection = getattr(spec, comp).layers
    if selection is None:
        return None
    counts = _stack_counts(holders)
    named = {s: c for s, c in counts.items() if s is not None}
    if isinstance(selection, dict):
        if not named:
            raise LayerSelectionError(
                f"{arch.display_name} {comp} has a single stack of layers; per-stack selection does not apply",
                where=spec.locate(comp, "layers"),
                hint="write the selection directly: layers: [0, 1] or layers: {last: N}",
            )
        unknown = sorted(set(selection) - set(named))
        if unknown:
            stacks = ", ".join(f"{s} ({c} layers)" for s, c in named.items())
            raise LayerSelectionError(
                f"unknown stack {unknown[0]!r}: {arch.display_name} {comp} has stacks {stacks}",
                where=spec.locate(comp, "layers"),
                hint="use one of those names",
            )
        return {
            stack: _pick_layers(sel, named[stack], f"{arch.display_name} {comp} {stack}", spec, comp)
            for stack, sel in selection.items()
        }
    picked = {}
    for stack, count in counts.items():
        what = f"{arch.display_name} {comp}" + (f" {stack}" if stack else "")
        try:
            picked[stack] = _pick_layers(selection, count, what, spec, comp)
        except LayerSelectionError as exc:
            if named:  # several stacks: point at the per-stack form
                exc.hint = (
                    f"{comp} has stacks {', '.join(f'{s} ({c} layers)' for s, c in named.items())}; select per "
                    f"stack, e.g. layers: {{{next(iter(named))}: [0, 1]}}"
                )
                exc.args = (exc.render(),)
            raise
    return picked


def resolve(
    spec: VisionLoRASpec | dict[str, Any] | str | Path,
    model: Any = None,
    *,
    registry: Registry | None = None,
) -> TargetPlan:
    """Resolve a spec against a model into a validated ``TargetPlan``.

    ``model`` is a live ``nn.Module``, a ``PretrainedConfig``, a bundled reference name, a directory or
    ``config.json`` path, or a Hub id (config only). When None, the spec's ``model:`` is used.
    """
    spec = _as_spec(spec)
    registry = registry or default_registry()
    if model is None:
        if spec.model is None:
            raise UsageError(
                "no model to resolve against",
                where=spec.source,
                hint="pass a model (--model REF on the command line) or set `model:` in the spec",
            )
        model = spec.model
    tree = module_tree(model, registry)
    key = spec.architecture or tree.model_type
    if key is None:
        raise UsageError(
            "the model has no config.model_type to detect its architecture from",
            hint="set `architecture:` in the spec (see `vlora plugins` for the names)",
        )
    plugin, arch = registry.lookup(key)
    return _resolve(spec, tree, plugin, arch)


def _check_spec_fits(spec: VisionLoRASpec, arch: ArchitectureSpec, who: str) -> None:
    roles = {role for comp in arch.components for role in comp.roles}
    if spec.finetune_cross_attention is not None and "cross_attention" not in roles:
        raise SpecArchitectureMismatch(
            f"{arch.display_name} has no cross-attention layers",
            where=spec.locate("finetune_cross_attention"),
            hint="remove finetune_cross_attention from the spec",
        )
    for name in ("vision", "projector", "language"):
        if arch.component(name) is None and _component_enabled(name, spec):
            toggle = "finetune_projector" if name == "projector" else _TOWER_TOGGLE[name]
            raise SpecArchitectureMismatch(
                f"{arch.display_name} has no {name} component ({who})",
                where=spec.locate(toggle),
                hint=f"set {toggle} to {'frozen' if name == 'projector' else 'false'}",
            )


def _index_holders(arch: ArchitectureSpec, holders: dict[str, list[_Holder]], who: str) -> dict[str, _Holder]:
    """Holder modules by name; two components claiming one module, or nesting in each other, is an error."""
    by_name: dict[str, _Holder] = {}
    for comp in arch.components:
        for h in holders[comp.name]:
            other = by_name.get(h.name)
            if other is not None:
                raise ComponentOverlapError(
                    f"module {h.name} matches the prefix of both {other.component} and {comp.name}",
                    where=who,
                    hint="the plugin's component prefixes must not overlap; fix the plugin",
                )
            by_name[h.name] = h
    for h in by_name.values():
        parent = h.name.rpartition(".")[0]
        outer = _ancestor_holder(parent, by_name) if parent else None
        if outer is not None and outer.component != h.component:
            raise ComponentOverlapError(
                f"{h.component} module {h.name} lies inside {outer.component} module {outer.name}",
                where=who,
                hint="the plugin's component prefixes must not overlap; fix the plugin",
            )
    return by_name


def _check_patterns(tree: ModuleTree, comp: Component, holders: list[_Holder], who: str) -> None:
    """Every prefix and leaf of an enabled component must match this tree, or the plugin is out of date."""
    stale = "the plugin is out of date for this transformers layout; update it (or pin transformers)"
    if not holders:
        raise PatternMatchError(
            f"{comp.name} prefix {comp.prefix!r} matches no module of this {tree.source} tree "
            f"(transformers {tree.transformers_version})",
            where=who,
            hint=stale,
        )
    for role, leaves in comp.roles.items():
        for leaf in leaves:
            if not any(_lookup(tree, h, leaf) for h in holders):
                paths = ", ".join(sorted({h.path for h in holders}))
                raise PatternMatchError(
                    f"{comp.name} {role} leaf {leaf!r} matches no module or parameter under {paths} "
                    f"(transformers {tree.transformers_version})",
                    where=who,
                    hint=stale,
                )


def _resolve(spec: VisionLoRASpec, tree: ModuleTree, plugin: PluginInfo, arch: ArchitectureSpec) -> TargetPlan:
    who = _who(plugin, arch)
    warnings: list[str] = []
    _check_spec_fits(spec, arch, who)

    holders = {comp.name: _holders(tree, comp) for comp in arch.components}
    by_name = _index_holders(arch, holders, who)
    enabled = [c for c in arch.components if _component_enabled(c.name, spec)]
    for comp in enabled:
        _check_patterns(tree, comp, holders[comp.name], who)

    # -- layers: what the spec selects, minus what the model never uses ------------------------------
    selected: dict[str, dict[str | None, set[int]] | None] = {}
    for comp in arch.components:
        if comp.name == "projector":
            continue
        override = getattr(spec, comp.name)
        if not _component_enabled(comp.name, spec):
            if override.layers is not None:
                warnings.append(
                    f"{comp.name}.layers is set but {_TOWER_TOGGLE[comp.name]} is false: the selection is ignored"
                )
            continue
        selected[comp.name] = _select_layers(spec, comp.name, holders[comp.name], arch)

    unused = _unused_layers(spec, tree, plugin, arch, holders, warnings)

    # -- targets from the plugin's roles -------------------------------------------------------------
    chosen: dict[str, _Pick] = {}
    for comp in enabled:
        layers = selected.get(comp.name)
        skip = unused.get(comp.name, set())
        for role, leaves in comp.roles.items():
            if not _role_enabled(role, spec):
                continue
            for h in holders[comp.name]:
                if not _layer_selected(h, layers, skip):
                    continue
                for leaf in leaves:
                    found = _lookup(tree, h, leaf)
                    if found is not None:
                        chosen[found[0]] = _Pick(h, role, leaf, found[1])

    for comp in enabled:
        if comp.name != "projector" and not any(_role_enabled(role, spec) for role in comp.roles):
            warnings.append(
                f"{_TOWER_TOGGLE[comp.name]} is true, but none of the {comp.name} roles "
                f"({', '.join(comp.roles)}) is switched on: nothing in {comp.name} is adapted"
            )
    for name, pick in chosen.items():
        _check_wrappable(tree, name, pick, who)
    _check_parameter_targets(spec, arch, [n for n, p in chosen.items() if p.kind == "parameter"])

    # -- user patterns -----------------------------------------------------------------------------
    full_names = [h.name for h in holders.get("projector", [])] if spec.finetune_projector == "full" else []
    for i, pattern in enumerate(spec.target_modules_extra):
        _add_extra(tree, pattern, spec.locate("target_modules_extra", i), by_name, chosen, full_names)

    for i, pattern in enumerate(spec.exclude_modules):
        rx = re.compile(pattern)
        dropped = [n for n in chosen if rx.fullmatch(n)]
        if not dropped:
            raise UserPatternError(
                f"pattern {pattern!r} matches none of the {len(chosen)} planned targets",
                where=spec.locate("exclude_modules", i),
                hint="patterns are full-name regular expressions (fullmatch); remove it or fix it",
            )
        for n in dropped:
            del chosen[n]

    if not chosen and not full_names:
        raise EmptySelectionError(
            _why_empty(spec, arch, bool(unused)),
            where=spec.source or "spec",
            hint="turn on at least one component and one role (or finetune_projector)",
        )

    unclassified = _unclassified(tree, arch, holders, by_name, {c.name for c in enabled} - {"projector"})
    if unclassified:
        warnings.append(
            f"{who} gives no role to {', '.join(unclassified)}: they are never targeted "
            "(add them with target_modules_extra if you want them)"
        )

    return _build_plan(spec, tree, plugin, arch, chosen, full_names, holders, warnings)


def _layer_selected(holder: _Holder, layers: dict[str | None, set[int]] | None, skip: set[int]) -> bool:
    if holder.layer is None:
        return True
    if holder.layer in skip:
        return False
    return layers is None or holder.layer in layers.get(holder.stack, set())


def _unused_layers(
    spec: VisionLoRASpec,
    tree: ModuleTree,
    plugin: PluginInfo,
    arch: ArchitectureSpec,
    holders: dict[str, list[_Holder]],
    warnings: list[str],
) -> dict[str, set[int]]:
    """Layers to leave out because the plugin says the model never uses their output (none when the spec
    sets include_unused_layers); each is reported in ``warnings``."""
    counts = {c: len({(h.stack, h.layer) for h in hs}) for c, hs in holders.items() if hs and hs[0].layer is not None}
    unused: dict[str, set[int]] = {}
    found = plugin.unused_layers(arch, tree.config, counts) if plugin.implements("vlora_unused_layers") else []
    for item in found:
        unused.setdefault(item.component, set()).update(item.layers)
        if not (_component_enabled(item.component, spec) and item.layers):
            continue
        layers = ", ".join(str(i) for i in sorted(item.layers))
        if spec.include_unused_layers:
            warnings.append(
                f"{item.component} layers {layers} are adapted although the model never uses their output "
                f"({item.reason}); they will get no gradient"
            )
        else:
            warnings.append(
                f"{item.component} layers {layers} are left out: the model never uses their output "
                f"({item.reason}), so adapters there would get no gradient; set include_unused_layers: true "
                "to add them anyway"
            )
    return {} if spec.include_unused_layers else unused


def _check_wrappable(tree: ModuleTree, name: str, pick: _Pick, who: str) -> None:
    if pick.kind == "parameter":
        shape = tree.param_shape(name)
        if shape is None or len(shape) != 2:
            raise UnsupportedModuleTypeError(
                f"{name} is a parameter of shape {shape}, and LoRA on a parameter needs a 2-D one",
                where=who,
                hint="the plugin should not list it as a leaf",
            )
        return
    entry = tree.get(name)
    assert entry is not None
    if entry.kind is None:
        raise UnsupportedModuleTypeError(
            f"{name} is a {entry.type_name}, which LoRA cannot wrap (role {pick.role!r}, leaf {pick.leaf!r})",
            where=who,
            hint=f"{_WRAPPABLE}; the plugin should not list it",
        )


def _check_parameter_targets(spec: VisionLoRASpec, arch: ArchitectureSpec, names: list[str]) -> None:
    """PEFT adapts bare parameters (``target_parameters``) without dropout and without DoRA."""
    if not names:
        return
    for field, bad in (("use_dora", spec.use_dora), ("lora_dropout", spec.lora_dropout != 0)):
        if bad:
            raise SpecArchitectureMismatch(
                f"{names[0]} on {arch.display_name} is a bare parameter, adapted through PEFT's "
                f"target_parameters, which does not support {field}: {getattr(spec, field)}",
                where=spec.locate(field),
                hint=f"set {field} to {'false' if field == 'use_dora' else '0'}, or train the projector with "
                "finetune_projector: full",
            )


def _unclassified(
    tree: ModuleTree,
    arch: ArchitectureSpec,
    holders: dict[str, list[_Holder]],
    by_name: dict[str, _Holder],
    components: set[str],
) -> list[str]:
    """Wrappable modules inside the layers of ``components`` that no role names, as ``path.leaf`` patterns."""
    classified = {
        _leaf_name(h, leaf)
        for comp in arch.components
        for h in holders[comp.name]
        for leaves in comp.roles.values()
        for leaf in leaves
    }
    found = set()
    for entry in tree.entries:
        if entry.kind is None or entry.name in classified:
            continue
        holder = _ancestor_holder(entry.name, by_name)
        if holder is not None and holder.name != entry.name and holder.component in components:
            found.add(f"{holder.path}.{entry.name[len(holder.name) + 1:]}")
    return sorted(found)


def _add_extra(
    tree: ModuleTree,
    pattern: str,
    where: str,
    by_name: dict[str, _Holder],
    chosen: dict[str, _Pick],
    full_names: list[str],
) -> None:
    rx = re.compile(pattern)
    hits = [e for e in tree.entries if rx.fullmatch(e.name)]
    if not hits:
        raise UserPatternError(
            f"pattern {pattern!r} matches no module of this model",
            where=where,
            hint="patterns are full-name regular expressions (fullmatch), e.g. "
            "'model\\.visual\\.blocks\\.0\\.attn\\.qkv'; see the names with `vlora plan --json`",
        )
    for entry in hits:
        if entry.name in chosen:
            continue
        holder = _ancestor_holder(entry.name, by_name)
        if holder is None:
            raise ComponentOverlapError(
                f"pattern {pattern!r} matches {entry.name}, which lies in no component",
                where=where,
                hint="extra targets must lie inside a component's layers or projector; narrow the pattern",
            )
        if entry.kind is None:
            raise UnsupportedModuleTypeError(
                f"pattern {pattern!r} matches {entry.name}, a {entry.type_name}, which LoRA cannot wrap",
                where=where,
                hint=f"{_WRAPPABLE}; narrow the pattern to those",
            )
        if holder.name in full_names:
            raise ComponentOverlapError(
                f"pattern {pattern!r} matches {entry.name}, inside the fully trained projector {holder.name}",
                where=where,
                hint="a fully trained module cannot also get adapters; use finetune_projector: lora instead",
            )
        leaf = entry.name[len(holder.name) + 1:]
        chosen[entry.name] = _Pick(holder, "other", leaf, "module")


def _why_empty(spec: VisionLoRASpec, arch: ArchitectureSpec, unused: bool) -> str:
    towers_off = not spec.finetune_vision_layers and not spec.finetune_language_layers
    roles_off = not spec.finetune_attention_modules and not spec.finetune_mlp_modules and not (
        spec.finetune_cross_attention
    )
    reasons = []
    if towers_off:
        reasons.append("finetune_vision_layers and finetune_language_layers are both false")
    if roles_off:
        reasons.append("finetune_attention_modules and finetune_mlp_modules are both false")
    if spec.finetune_projector == "frozen":
        reasons.append("finetune_projector is frozen")
    if spec.exclude_modules:
        reasons.append("exclude_modules removed every remaining target")
    if unused:
        reasons.append("the selected layers are all layers the model never uses (see include_unused_layers)")
    if not reasons or (not towers_off and not roles_off and not spec.exclude_modules and not unused):
        reasons.append("the enabled roles have no module in the selected layers")
    return f"the spec selects nothing to train on {arch.display_name}: " + "; ".join(reasons)


def _build_plan(
    spec: VisionLoRASpec,
    tree: ModuleTree,
    plugin: PluginInfo,
    arch: ArchitectureSpec,
    chosen: dict[str, _Pick],
    full_names: list[str],
    holders: dict[str, list[_Holder]],
    warnings: list[str],
) -> TargetPlan:
    targets = []
    for name, pick in chosen.items():
        holder = pick.holder
        override = getattr(spec, holder.component, None)
        r = override.r if override is not None and override.r is not None else spec.r
        alpha = override.lora_alpha if override is not None and override.lora_alpha is not None else spec.lora_alpha
        if pick.kind == "parameter":
            out_f, in_f = tree.param_shape(name) or (0, 0)
            module_type, kind, bias = "Parameter", PARAMETER, 0
            lora = r * (in_f + out_f)
        else:
            entry = tree.get(name)
            assert entry is not None
            module_type, kind, bias = entry.type_name, entry.kind, entry.bias_params
            in_f, out_f = entry.in_features, entry.out_features
            lora = entry.lora_params(r, dora=spec.use_dora)
        targets.append(
            Target(
                name=name,
                component=holder.component,
                role=pick.role,
                layer=holder.layer,
                leaf=pick.leaf,
                stack=holder.stack,
                path=holder.path,
                kind=kind or "",
                module_type=module_type,
                in_features=in_f,
                out_features=out_f,
                r=r,
                lora_alpha=alpha,
                lora_params=lora,
                bias_params=bias,
            )
        )
    full = tuple(
        FullModule(
            name=n, component="projector", params=tree.subtree_params(n), bias_params=tree.subtree_params(n, bias=True)
        )
        for n in sorted(full_names)
    )
    layer_counts: dict[str, int] = {}
    for comp, hs in holders.items():
        for stack, count in _stack_counts(hs).items() if hs and hs[0].layer is not None else ():
            layer_counts[f"{comp}.{stack}" if stack else comp] = count
    plan = TargetPlan(
        architecture=arch.name,
        architecture_title=arch.display_name,
        model_type=tree.model_type,
        model=tree.source,
        plugin=plugin.distribution,
        plugin_version=plugin.version,
        spec=spec,
        targets=tuple(targets),
        full_modules=full,
        total_params=tree.total_params,
        all_bias_params=sum(e.bias_params for e in tree.entries),
        component_params={comp: sum(tree.subtree_params(h.name) for h in hs) for comp, hs in holders.items()},
        layer_counts=layer_counts,
        warnings=tuple(warnings),
        transformers_version=tree.transformers_version,
    )
    plan.check_regex(tree.names)
    return plan
