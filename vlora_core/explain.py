"""``vlora plan --explain NAME``: why each module matching NAME is or is not a target of the plan.

Reads the decisions resolve recorded while it planned (``TargetPlan.decisions``: the rule that kept or dropped
each module) and says them in words; it never decides again, so a new rule in resolve is explained by adding
its sentence here. Never part of resolve: it only reads what resolve made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .boundary import bounded_fullmatches, shown
from .decisions import Decision
from .errors import UsageError, VloraError
from .patterns import layer_ranges
from .plan import TargetPlan

LEAF = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*")  # q_proj, self_attn.q_proj: the end of module names
LAYER = re.compile(r"\blayer \d+")
NUMBER = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class Explanation:
    name: str
    target: bool
    why: str

    def render(self) -> str:
        return f"{self.name}: {'target' if self.target else 'not a target'}: {self.why}"


def explain(plan: TargetPlan, tree: Any, what: str) -> list[Explanation]:
    """Explanations for the modules (and parameters) of ``tree`` named ``what``: an exact name, else a
    full-name regular expression (fullmatch), else the end of names (a leaf like ``q_proj``, or
    ``self_attn.q_proj``: every module whose name ends with it)."""
    modules = [e.name for e in tree.entries if e.name]
    params = [p for p, _ in tree.params]
    if what in modules or what in params:
        chosen = [what]
    else:  # modules first; parameters (a bare projector weight) where no module matches
        found = bounded_fullmatches(what, [*modules, *params], where=None, what="--explain", error=UsageError)
        chosen = [n for n in modules if n in found] or [n for n in params if n in found]
        if not chosen and LEAF.fullmatch(what):
            chosen = [n for n in modules if n.endswith("." + what)] or [n for n in params if n.endswith("." + what)]
    if not chosen:
        raise UsageError(f"--explain {shown(what)} matches no module of {plan.model}",
                         hint="give a full module name, the end of names (q_proj, self_attn.q_proj), or a full-name "
                         "regular expression, e.g. 'model\\.language_model\\.layers\\.0\\..*'; `vlora plan --modules` "
                         "lists the targets")
    if plan.decisions is None:
        raise VloraError("internal error: the plan carries no decisions to explain")
    return [_one(plan, n) for n in chosen]  # many (a leaf over every layer): the caller says them `grouped`


def grouped(explanations: list[Explanation]) -> list[str]:
    """Explanations that say the same but for the layer, one line per group: ``language attention, r=16,
    alpha=16: target (28 modules, layers 0-27)``, in the order they first appear."""
    groups: dict[tuple[bool, str], list[Explanation]] = {}
    for e in explanations:
        groups.setdefault((e.target, LAYER.sub("layer N", e.why)), []).append(e)
    lines = []
    for (target, why), members in groups.items():
        layers = sorted({int(m.group(1)) for e in members if (m := NUMBER.search(e.name))})
        where = f", layers {layer_ranges(layers)}" if len(layers) > 1 else ""
        example = members[0].name if len(members) == 1 else f"e.g. {members[0].name}"
        verdict = "target" if target else "not a target"
        lines.append(f"{len(members)} module{'s' if len(members) != 1 else ''}{where} ({example}): {verdict}: "
                     + why.replace(", layer N", "").replace("layer N is", "these layers are")
                     .replace("layer N", "these layers"))
    return lines


def _one(plan: TargetPlan, name: str) -> Explanation:
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
    assert plan.decisions is not None
    return Explanation(name, False, _sentence(plan, plan.decisions.of(name)))


def _sentence(plan: TargetPlan, d: Decision) -> str:
    """The decision in words, with the spec's own values."""
    spec, arch = plan.spec, plan.architecture_title
    if d.rule == "outside":
        return f"outside every component of {arch}, so no toggle targets it (train it in full with modules_to_save)"
    if d.rule == "component-off" or d.rule == "follows":
        component = d.component if d.rule == "component-off" else d.detail
        assert component is not None
        value = spec.finetune_projector if component == "projector" else "false"
        why = f"{component} is off ({spec.component_toggle(component)}: {value})"
        return why if d.rule == "component-off" else f"this part of the {d.component} follows {component}, and {why}"
    if d.rule == "holder":
        return f"the {d.component} module that holds the targets, not one itself"
    if d.rule == "not-wrappable":
        return f"a {d.detail} in {d.component}, which LoRA cannot wrap"
    if d.rule == "no-role":
        return (f"{arch} gives {d.leaf} no role in {d.component}" + (f" ({d.detail})" if d.detail else "")
                + "; add it with target_modules_extra")
    if d.rule == "role-off":
        assert d.role is not None
        value = spec.finetune_projector if d.role == "projection" else "false"
        return f"its role {d.role} is off ({spec.role_toggle(d.role)}: {value})"
    if d.rule == "excluded":
        return f"excluded by exclude_modules[{d.index}] {d.detail!r}"
    if d.rule == "unused-layer":
        return (f"{d.component} layer {d.layer} is never used by the model, so it is left out "
                "(include_unused_layers: true adds it)")
    if d.rule == "layer-selection":
        assert d.component is not None
        written = spec.model_dump(mode="json", exclude_unset=True).get(d.component)
        selection = written.get("layers") if isinstance(written, dict) else None
        return f"layer {d.layer} is not in {d.component}.layers ({selection})"
    return "no rule of the spec selects it"


__all__ = ["Explanation", "explain", "grouped"]
