"""What a plugin declares: ``ArchitectureSpec`` and its parts. Data only; no torch, no behaviour.

Pattern semantics are explicit and never inferred from Python types:

* ``Component.prefix`` is a regular expression matched with ``re.fullmatch`` against the full dotted name
  of the module that *contains* the component's modules: a layer (then it has a named group ``layer``
  capturing the layer index) or the whole component (for components without layers, like a projector).
  Use alternation to cover several transformers layouts, e.g. ``(?:model\\.)?visual\\.blocks\\.(?P<layer>\\d+)``.
  A component made of several stacks of layers (Llama-3.2-Vision's local and global vision encoders)
  adds a named group ``stack`` that captures the stack's name, e.g.
  ``vision_model\\.(?P<stack>transformer|global_transformer)\\.layers\\.(?P<layer>\\d+)``; users can then
  select layers per stack.
* ``Component.roles`` maps a role to leaf paths *relative to* a prefix module (``self_attn.q_proj``).
  A target's full name is ``<prefix module name>.<leaf>``; the empty leaf ``""`` is the prefix module
  itself (a projector that is one bare Linear). A leaf may also name a parameter that is not inside a
  module of its own (Gemma-3's projector weight); LoRA then goes through PEFT's ``target_parameters``.
  Each leaf must exist in at least one prefix module of a tree, or the plugin is out of date for it. A
  3-D parameter is a mixture-of-experts weight (``mlp.experts.gate_up_proj``: experts x out x in); PEFT
  adapts every expert at once, and the plan counts them.
* ``Component.variants`` labels leaves that share a role but are another kind of module (Qwen3.5's
  linear-attention projections are ``attention`` with the variant ``linear``); the plan table shows each
  variant on its own row. Expert parameters get the variant ``experts`` unless they have another.
* ``Component.frozen`` names leaves that are never targets, with the reason (a MoE router, a gate with
  one output, a depthwise convolution): they are not "unclassified", and a user pattern that adds one
  is warned about, or refused where PEFT's wrapper would break the module.
* ``Component.optional`` names leaves that only some models of the family have (the dense MLP of the
  few dense layers in a mixture-of-experts model): they are targets where they exist, and a tree without
  them is not a sign of an out-of-date plugin.
* ``Component.required`` is false for a component only some models of the family have (Gemma-4's
  audio tower is in E2B and E4B only): where a tree has none of its modules, the component is absent, and
  a spec that sets its toggle or overrides is an error there.
* ``Component.follows`` names parts of a component (a dotted suffix of a prefix module's name) that
  also follow another component's toggle: Gemma-4's projector part for audio (``embed_audio``) trains
  only when the audio tower is on.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .placement import Placement
from .vocabulary import COMPONENT_ROLES, KNOWN_COMPONENTS, KNOWN_ROLES, layer_count_key

_LEAF = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")


class Component(BaseModel):
    """One part of a VLM (vision encoder, projector, language model) and where its modules are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="vision, audio, projector or language")
    prefix: str = Field(
        description="regex (fullmatch) for the module holding this component's targets; with a named group "
        "`layer` when it is a stack of layers"
    )
    roles: dict[str, tuple[str, ...]] = Field(description="role -> leaf paths relative to a prefix module")
    variants: dict[str, str] = Field(
        default_factory=dict, description="leaf -> variant label shown on its own row (e.g. 'linear')"
    )
    frozen: dict[str, str] = Field(
        default_factory=dict, description="leaf -> why it is never a target (a router, a gate, a conv)"
    )
    required: bool = Field(
        default=True,
        description="false: only some models of the family have this component (Gemma-4's audio tower); where a "
        "tree has none of its modules it is absent",
    )
    optional: tuple[str, ...] = Field(
        default=(), description="leaves that only some models of the family have; not required to match"
    )
    follows: dict[str, str] = Field(
        default_factory=dict,
        description="dotted suffix of a prefix module's name -> another component whose toggle it also follows",
    )

    @field_validator("name")
    @classmethod
    def _known_component(cls, name: str) -> str:
        if name not in KNOWN_COMPONENTS:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(KNOWN_COMPONENTS)}")
        return name

    @field_validator("prefix")
    @classmethod
    def _compiles(cls, prefix: str) -> str:
        try:
            re.compile(prefix)
        except re.error as exc:
            raise ValueError(f"prefix {prefix!r} is not a valid regular expression: {exc}") from None
        return prefix

    @field_validator("roles")
    @classmethod
    def _roles(cls, roles: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        seen: dict[str, str] = {}
        for role, leaves in roles.items():
            if role not in KNOWN_ROLES:
                raise ValueError(f"unknown role {role!r}; known roles: {', '.join(KNOWN_ROLES)}")
            if not leaves:
                raise ValueError(f"role {role!r} lists no leaf")
            for leaf in leaves:
                if leaf and not _LEAF.fullmatch(leaf):
                    raise ValueError(f"role {role!r}: {leaf!r} is not a dotted leaf path like 'self_attn.q_proj'")
                if leaf in seen:
                    raise ValueError(f"leaf {leaf!r} is declared twice (roles {seen[leaf]!r} and {role!r})")
                seen[leaf] = role
        if not roles:
            raise ValueError("a component needs at least one role")
        return roles

    @model_validator(mode="after")
    def _declared_leaves(self) -> Component:
        allowed = COMPONENT_ROLES.get(self.name, ())
        for role in self.roles:
            if role not in allowed:
                raise ValueError(f"role {role!r} is not one a {self.name} component may have (it may have: "
                                 f"{', '.join(allowed)}); the projector's modules are all 'projection'")
        for group in ("layer", "stack"):
            if f"(?P<{group}>" in self.prefix and not _always_sets(self.prefix, group):
                raise ValueError(f"prefix {self.prefix!r} can match without setting the group {group!r} (a branch "
                                 f"of an alternation, or an optional part, lacks it); put (?P<{group}>...) where "
                                 "every match goes through it, e.g. (?:model\\.)?(?:a|b)\\.layers\\.(?P<layer>\\d+)")
        leaves = {leaf for group in self.roles.values() for leaf in group}
        for field, names in (("variants", self.variants), ("optional", self.optional)):
            unknown = sorted(set(names) - leaves)
            if unknown:
                raise ValueError(f"{field}: {unknown[0]!r} is not a leaf of any role")
        for leaf in self.frozen:
            if leaf in leaves:
                raise ValueError(f"frozen: {leaf!r} is also a leaf of a role; a leaf is a target or frozen, not both")
            if not _LEAF.fullmatch(leaf):
                raise ValueError(f"frozen: {leaf!r} is not a dotted leaf path like 'mlp.gate'")
        for part, other in self.follows.items():
            if other not in KNOWN_COMPONENTS or other == self.name:
                raise ValueError(f"follows: {part!r} -> {other!r} must name another component")
        return self

    def follows_of(self, holder: str) -> str | None:
        """The other component whose toggle the prefix module ``holder`` also follows (None: none)."""
        return next((c for part, c in self.follows.items() if holder == part or holder.endswith("." + part)), None)

    def role_of(self, leaf: str) -> str | None:
        """The role that names ``leaf`` (None: no role does)."""
        return next((r for r, leaves in self.roles.items() if leaf in leaves), None)

    def holder(self, name: str) -> Placement | None:
        """The placement of ``name`` as one of this component's holding modules (None: the prefix does not
        match it): its layer, stack and ``*``-path."""
        match = self.pattern.fullmatch(name)
        if match is None:
            return None
        groups = match.groupdict()
        if groups.get("layer") is None:
            return Placement(self.name, None, None, groups.get("stack"), "", name)
        start, end = match.span("layer")
        return Placement(self.name, None, int(groups["layer"]), groups.get("stack"), "",
                         name[:start] + "*" + name[end:])

    @property
    def layered(self) -> bool:
        return "(?P<layer>" in self.prefix

    @property
    def stacked(self) -> bool:
        """True when the component has several stacks of layers, told apart by the group ``stack``."""
        return "(?P<stack>" in self.prefix

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.prefix)


def claim_text(model_types: str, when: dict[str, Any]) -> str:
    """A claim in words: the model_type(s), and the ``when`` conditions in key order."""
    return model_types + (" where " + " and ".join(f"{k} = {v!r}" for k, v in sorted(when.items())) if when else "")


_MISSING = object()


def _config_value(config: dict[str, Any], path: str) -> Any:
    """The value at a dotted path of a config dict (``vision_config.model_type``), or a marker when absent."""
    value: Any = config
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _always_sets(prefix: str, group: str) -> bool:
    """Whether every match of ``prefix`` sets the named group (read from the regex's parse tree)."""
    try:
        from re import _constants as c
        from re import _parser as parser
    except ImportError:  # another Python's private layout: skip the check rather than refuse the plugin
        return True
    parsed = parser.parse(prefix)
    gid = parsed.state.groupdict.get(group)
    if gid is None:
        return True

    def sets(items) -> bool:  # a sequence sets the group if any one of its items always does
        return any(item_sets(op, av) for op, av in items)

    def item_sets(op, av) -> bool:
        if op is c.SUBPATTERN:
            return av[0] == gid or sets(av[-1])
        if op is c.BRANCH:
            return all(sets(branch) for branch in av[1])
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            return av[0] >= 1 and sets(av[2])
        if op is c.ATOMIC_GROUP:
            return sets(av)
        return False

    return sets(parsed)


class UnusedLayers(BaseModel):
    """Layers of a component whose output the model never uses (returned by ``vlora_unused_layers``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    component: str = Field(description="the component, e.g. vision")
    stack: str | None = Field(
        default=None, description="the stack, in a component with several stacks of layers (else leave it out)"
    )
    layers: tuple[int, ...] = Field(description="layer indices whose output is never used")
    reason: str = Field(description="why, in words users understand, e.g. 'vision_feature_layer is -2'")

    @property
    def count_key(self) -> str:
        """Its key in ``layer_counts``: the component, or ``component.stack``."""
        return layer_count_key(self.component, self.stack)


class ReferenceModel(BaseModel):
    """A published checkpoint whose config.json a plugin bundles (data only, no weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="short name users type, e.g. Qwen2-VL-7B-Instruct")
    hub_id: str = Field(description="the Hub repository the config comes from, e.g. Qwen/Qwen2-VL-7B-Instruct")
    config_path: Path = Field(description="path of the bundled config.json")


class ArchitectureSpec(BaseModel):
    """One model family's layout, as a plugin declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique architecture name, e.g. qwen2_vl")
    title: str = Field(default="", description="human name, e.g. Qwen2-VL")
    model_types: tuple[str, ...] = Field(description="HF config.model_type values this architecture handles")
    components: tuple[Component, ...]
    references: tuple[ReferenceModel, ...] = Field(default=(), description="bundled reference configs")
    when: dict[str, str | int | bool] = Field(
        default_factory=dict,
        description="config conditions besides model_type: dotted config path -> the value it must have, e.g. "
        "{'vision_config.model_type': 'pixtral'}; each condition makes the claim more specific, and the most "
        "specific architecture whose conditions hold claims the model",
    )

    @model_validator(mode="after")
    def _unique(self) -> ArchitectureSpec:
        names = [c.name for c in self.components]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"component {dupes[0]!r} is declared twice")
        if not self.model_types:
            raise ValueError("model_types is empty")
        for comp in self.components:
            if comp.name == "projector" and comp.layered:
                raise ValueError("the projector component has no layers; drop the (?P<layer>...) group")
            if comp.stacked and not comp.layered:
                raise ValueError(f"component {comp.name!r}: a (?P<stack>...) group needs a (?P<layer>...) group too")
            if comp.name != "projector" and not comp.layered:
                raise ValueError(
                    f"component {comp.name!r}: prefix needs a named group (?P<layer>\\d+) for the layer index"
                )
        return self

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def place(self, name: str) -> Placement | None:
        """Where a module (or parameter) name sits under these patterns, from the name alone (a ``Placement``,
        which unpacks as (component, role, layer, stack, leaf, path)); the role is None for a leaf no role
        names. None when no component holds it."""
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            holder = self.place_holder(".".join(parts[:cut]))
            if holder is not None:
                leaf = ".".join(parts[cut:])
                comp = self.component(holder.component)
                assert comp is not None
                return holder.at(leaf, comp.role_of(leaf))
        return None

    def place_holder(self, name: str) -> Placement | None:
        """The placement of a holding module (one a component's prefix matches; leaf "", no role), else None."""
        for comp in self.components:
            placement = comp.holder(name)
            if placement is not None:
                return placement
        return None

    @property
    def specificity(self) -> int:
        """How specific the claim is: the number of ``when`` conditions (0: model_type alone)."""
        return len(self.when)

    def claims(self, model_type: str | None, config: dict[str, Any]) -> bool:
        """Whether this architecture claims a model of ``model_type`` with this config (a dict)."""
        return model_type in self.model_types and all(_config_value(config, path) == value
                                                      for path, value in self.when.items())

    def describe_claim(self) -> str:
        """``llava`` or ``llava where vision_config.model_type = 'pixtral'``, for messages."""
        return claim_text(", ".join(self.model_types), self.when)

    @property
    def display_name(self) -> str:
        return self.title or self.name
