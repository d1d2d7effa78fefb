"""Why each module is or is not a target: ``Decision``, recorded by resolve where a rule keeps or drops a module,
and ``Decisions``, the record a plan carries. ``vlora plan --explain`` reads it; it never decides again.

A rule is written once, in resolve, where it is applied; a new rule adds a code here and a sentence in
``explain``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# every rule that decides a module, in the order resolve applies them to a module a plugin role names
RULES: dict[str, str] = {
    "target": "planned: it gets an adapter",
    "outside": "no component's prefix holds it",
    "component-off": "its component's toggle is off",
    "holder": "it is the module that holds a component's targets (a layer, a projector), not a target itself",
    "not-wrappable": "it is of a type LoRA cannot wrap",
    "no-role": "no role of the plugin names its leaf (the plugin may say why: frozen)",
    "follows": "its part of the component also follows another component, which is off",
    "role-off": "its role's toggle is off",
    "unused-layer": "its layer's output is never used by the model (include_unused_layers adds it)",
    "layer-selection": "its layer is not in the component's layer selection",
    "excluded": "an exclude_modules entry removed it",
}


@dataclass(frozen=True)
class Decision:
    """The rule that decided one module, with what is needed to say it in words."""

    rule: str  # a key of RULES
    component: str | None = None
    role: str | None = None
    layer: int | None = None
    leaf: str = ""
    detail: str = ""  # the frozen reason, the module type, the pattern, or the component a part follows
    index: int | None = None  # which exclude_modules entry

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown rule {self.rule!r}")


class Decisions:
    """Every decision of one resolution: those a rule recorded for the modules the plugin's roles name, and,
    for any other module, the plugin's classification (outside, holder, no role, a type LoRA cannot wrap)."""

    def __init__(self, recorded: dict[str, Decision], classify: Callable[[str], Decision]) -> None:
        self._recorded = recorded
        self._classify = classify

    def of(self, name: str) -> Decision:
        return self._recorded.get(name) or self._classify(name)

    def __len__(self) -> int:
        return len(self._recorded)


__all__ = ["RULES", "Decision", "Decisions"]
