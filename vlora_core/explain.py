"""``vlora plan --explain NAME``: why each module matching NAME is or is not a target of the plan.

Reads the plan and the architecture that made it; for a module that is not a target it names the rule that
decided it (outside every component, a component or role switched off, no role, a type LoRA cannot wrap, an
exclusion, a layer selection, a layer the model never uses), checking the last three by resolving the spec
again without that rule. Never part of resolve: it only reads what resolve made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .architecture import ArchitectureSpec
from .errors import UsageError, VloraError
from .infer import infer_architecture
from .plan import TargetPlan
from .plugins import Registry
from .resolve import resolve

_ROLE_FIELDS = {"attention": "finetune_attention_modules", "mlp": "finetune_mlp_modules",
                "cross_attention": "finetune_cross_attention", "projection": "finetune_projector"}
MAX_EXPLAINED = 200


@dataclass(frozen=True)
class Explanation:
    name: str
    target: bool
    why: str

    def render(self) -> str:
        return f"{self.name}: {'target' if self.target else 'not a target'}: {self.why}"


def explain(plan: TargetPlan, tree: Any, registry: Registry, what: str) -> list[Explanation]:
    """Explanations for the modules (and parameters) of ``tree`` named ``what``: an exact name, else a
    full-name regular expression (fullmatch)."""
    modules = [e.name for e in tree.entries if e.name]
    params = [p for p, _ in tree.params]
    if what in modules or what in params:
        chosen = [what]
    else:
        try:
            rx = re.compile(what)
        except re.error as exc:
            raise UsageError(f"--explain {what!r} is no module name and no valid regular expression ({exc})") from None
        # modules first; parameters (a bare projector weight) where no module matches
        chosen = [n for n in modules if rx.fullmatch(n)] or [n for n in params if rx.fullmatch(n)]
    if not chosen:
        raise UsageError(f"--explain {what!r} matches no module of {plan.model}",
                         hint="give a full module name or a full-name regular expression, e.g. "
                         "'model\\.language_model\\.layers\\.0\\..*'; `vlora plan --modules` lists the targets")
    arch = _architecture(plan, tree, registry)
    return [_one(plan, tree, registry, arch, n) for n in chosen[:MAX_EXPLAINED]]


def _architecture(plan: TargetPlan, tree: Any, registry: Registry) -> ArchitectureSpec:
    if plan.inferred is not None:
        return infer_architecture(tree).architecture
    for _, arch in registry.architectures():
        if arch.name == plan.architecture:
            return arch
    raise VloraError(f"internal error: the plan's architecture {plan.architecture!r} is not installed")


def _one(plan: TargetPlan, tree: Any, registry: Registry, arch: ArchitectureSpec, name: str) -> Explanation:
    spec = plan.spec
    target = next((t for t in plan.targets if t.name == name), None)
    if target is not None:
        layer = f", layer {target.layer}" if target.layer is not None else ""
        return Explanation(name, True, f"{target.component} {target.role}{layer}, r={target.r}, "
                                       f"alpha={target.lora_alpha:g}")
    full = next((m for m in plan.full_modules if name == m.name or name.startswith(m.name + ".")), None)
    if full is not None:
        why = "finetune_projector: full" if full.component == "projector" and not full.leaf else "modules_to_save"
        inside = "" if full.name == name else f" inside {full.name}"
        return Explanation(name, False, f"trained in full{inside} ({why}), not through an adapter")
    inside_target = next((t for t in plan.targets if name.startswith(t.name + ".")), None)
    if inside_target is not None:
        return Explanation(name, False, f"part of the target {inside_target.name}")
    place = arch.place(name)
    if place is None:
        return Explanation(name, False, f"outside every component of {arch.display_name}, so no toggle targets it "
                                        "(train it in full with modules_to_save)")
    component, role, layer, _stack, leaf, _path = place
    if not spec.component_enabled(component):
        toggle = spec.component_toggle(component)
        value = spec.finetune_projector if component == "projector" else "false"
        return Explanation(name, False, f"{component} is off ({toggle}: {value})")
    entry = tree.get(name)
    if role is None:
        comp = arch.component(component)
        reason = comp.frozen.get(leaf) if comp is not None else None
        if not leaf:
            return Explanation(name, False, f"the {component} module that holds the targets, not one itself")
        if entry is not None and entry.kind is None:
            return Explanation(name, False, f"a {entry.type_name} in {component}, which LoRA cannot wrap")
        return Explanation(name, False, f"{arch.display_name} gives {leaf} no role in {component}"
                           + (f" ({reason})" if reason else "") + "; add it with target_modules_extra")
    if not spec.role_enabled(role):
        field = _ROLE_FIELDS.get(role, role)
        value = spec.finetune_projector if role == "projection" else "false"
        return Explanation(name, False, f"its role {role} is off ({field}: {value})")
    for i, pattern in enumerate(spec.exclude_modules):
        if re.fullmatch(pattern, name):
            return Explanation(name, False, f"excluded by exclude_modules[{i}] {pattern!r}")
    data = spec.model_dump(mode="json", exclude_unset=True)
    if _targets(spec, {**data, "include_unused_layers": True}, tree, registry, name):
        return Explanation(name, False, f"{component} layer {layer} is never used by the model, so it is left out "
                                        "(include_unused_layers: true adds it)")
    block = data.get(component) if isinstance(data.get(component), dict) else None
    if block and "layers" in block:
        if _targets(spec, {**data, component: {k: v for k, v in block.items() if k != "layers"}}, tree, registry,
                    name):
            return Explanation(name, False, f"layer {layer} is not in {component}.layers ({block['layers']})")
    return Explanation(name, False, "no rule of the spec selects it")


def _targets(spec: Any, data: dict[str, Any], tree: Any, registry: Registry, name: str) -> bool:
    """Whether ``name`` would be a target of the spec ``data`` (the spec without one of its rules)."""
    from .spec import spec_from_data

    try:
        plan = resolve(spec_from_data(data, source=spec.source), tree, registry=registry)
    except VloraError:
        return False
    return any(t.name == name for t in plan.targets)


__all__ = ["Explanation", "explain"]
