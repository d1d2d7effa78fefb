"""The words every other module shares: components, roles, their order, and a target's logical identity.

Defined once here; the spec says which of them a user switches on (``VisionLoRASpec.role_enabled`` and
``component_enabled``), a plugin says where they are in a model (``ArchitectureSpec``), and plans, locks,
reports, the conformance kit and adapter tools order and compare targets through ``TargetKey``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Components the spec has toggles and overrides for, in the order reports and locks list them. The audio
# tower exists in some models only (Gemma-4); the others are in every VLM.
KNOWN_COMPONENTS: tuple[str, ...] = ("vision", "audio", "projector", "language")
COMPONENT_ORDER: tuple[str, ...] = KNOWN_COMPONENTS

# Roles a plugin may declare, and what switches each on (for messages and docs; the decision itself is
# ``VisionLoRASpec.role_enabled``).
KNOWN_ROLES: dict[str, str] = {
    "attention": "finetune_attention_modules",
    "mlp": "finetune_mlp_modules",
    "cross_attention": "finetune_cross_attention (unset: finetune_attention_modules)",
    "projection": "finetune_projector: lora",
}
# The spec field that switches each role on (``VisionLoRASpec.role_enabled`` decides; messages name the field).
ROLE_TOGGLES: dict[str, str] = {
    "attention": "finetune_attention_modules",
    "mlp": "finetune_mlp_modules",
    "cross_attention": "finetune_cross_attention",
    "projection": "finetune_projector",
}
# The roles each component may have: a tower's roles follow the attention/MLP toggles, the projector's one
# role follows finetune_projector (so a projector trained in full has no adapter inside it).
_TOWER_ROLES = ("attention", "cross_attention", "mlp")
COMPONENT_ROLES: dict[str, tuple[str, ...]] = {
    "vision": _TOWER_ROLES, "audio": _TOWER_ROLES, "language": _TOWER_ROLES, "projector": ("projection",),
}
# The sub-configs of a composite model's config and the tower (component) each one configures.
SUB_CONFIG_COMPONENTS: dict[str, str] = {"vision_config": "vision", "text_config": "language", "audio_config": "audio"}
# The role of a target the user adds with ``target_modules_extra``.
EXTRA_ROLE = "other"
ROLE_ORDER: tuple[str, ...] = ("attention", "cross_attention", "mlp", "projection", EXTRA_ROLE)


# What a target is (``Target.kind``, ``ModuleEntry.kind``): a module LoRA wraps, or a bare parameter (2-D, or a
# 3-D stack of expert weights) adapted through PEFT's target_parameters. One vocabulary for every room.
LINEAR, CONV, EMBEDDING, PARAMETER = "linear", "conv", "embedding", "parameter"
MODULE_KINDS: tuple[str, ...] = (LINEAR, CONV, EMBEDDING)
# How an adapter on disk changes a module (``AdaptedModule.kind``): a LoRA pair, or the module saved in full.
ADAPTED, SAVED = "lora", "full"


def component_rank(component: str) -> int:
    """Position of a component in reports (unknown ones last)."""
    return COMPONENT_ORDER.index(component) if component in COMPONENT_ORDER else len(COMPONENT_ORDER)


def role_rank(role: str) -> int:
    """Position of a role in reports (unknown ones last)."""
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


def group_order(component: str, role: str) -> tuple[int, int, str, str]:
    """Sort key of a component x role group: component order, then role order, then by name."""
    return component_rank(component), role_rank(role), component, role


def layer_count_key(component: str, stack: str | None) -> str:
    """The key of a stack of layers in ``TargetPlan.layer_counts`` and the ``vlora_unused_layers`` hook:
    the component (``"vision"``), or ``"component.stack"`` in a component with several stacks."""
    return f"{component}.{stack}" if stack else component


class TargetKey(NamedTuple):
    """A target's logical identity: the same on every transformers layout of a family, whatever the raw
    module name. Locks, lock diffs, the conformance kit and adapter tools compare targets by it."""

    component: str
    role: str
    stack: str | None  # the stack's name, in components with several stacks of layers
    layer: int | None  # None for a component without layers (a projector)
    leaf: str  # the name relative to its layer or projector module; "" for that module itself

    def sort_key(self) -> tuple[Any, ...]:
        return (*group_order(self.component, self.role), self.stack or "", -1 if self.layer is None else self.layer,
                self.leaf)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetKey:
        """From a dict with the five fields (a lock entry, ``Target.to_dict()``); a missing stack or layer is None."""
        layer = data.get("layer")
        return cls(str(data["component"]), str(data["role"]), data.get("stack") or None,
                   None if layer is None else int(layer), str(data["leaf"]))


__all__ = [
    "ADAPTED",
    "COMPONENT_ORDER",
    "COMPONENT_ROLES",
    "CONV",
    "EMBEDDING",
    "EXTRA_ROLE",
    "KNOWN_COMPONENTS",
    "KNOWN_ROLES",
    "LINEAR",
    "MODULE_KINDS",
    "PARAMETER",
    "ROLE_ORDER",
    "ROLE_TOGGLES",
    "SAVED",
    "SUB_CONFIG_COMPONENTS",
    "TargetKey",
    "component_rank",
    "group_order",
    "layer_count_key",
    "role_rank",
]
