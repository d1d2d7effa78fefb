"""spec × architecture × module tree → TargetPlan. Every validation rule lives here.

``resolve`` is pure: it reads the spec, the plugin's declared patterns and the module tree, and either
returns a plan or raises exactly one ``ResolutionError`` saying what is wrong, where, and how to fix it.
It never touches a live model.

The work is one ``Resolution`` per call, with a method per phase, in this order: the spec fits the
architecture; each component's holders (its layer modules, or its one module) are found and do not
overlap; the patterns of enabled components match this tree; layers are selected and unused layers
left out; the plugin's roles become targets; user patterns add and remove targets; the plan is built.
Warnings are collected as ``Diagnostic`` values on the way.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .architecture import ArchitectureSpec, Component
from .cache import tree_for
from .diagnostics import Diagnostic, Location, warning
from .errors import (
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    PatternMatchError,
    ResolutionError,
    ResolutionErrors,
    SpecArchitectureMismatch,
    UnsupportedModelError,
    UnsupportedModuleTypeError,
    UsageError,
    UserPatternError,
)
from .infer import InferenceRefused, infer_architecture
from .modeltree import PARAMETER, ModuleTree
from .plan import FullModule, Target, TargetPlan
from .plugins import PluginInfo, Registry, default_registry
from .spec import LayerRange, VisionLoRASpec, load_spec, spec_from_data
from .vocabulary import EXTRA_ROLE, layer_count_key

_WRAPPABLE = "LoRA wraps Linear, Conv1d/2d/3d, Embedding, HF Conv1D and 2-D parameters"
_STALE = "the plugin is out of date for this transformers layout; update it (or pin transformers)"
_OVERLAP_HINT = "the plugin's component prefixes must not overlap; fix the plugin"


@dataclass(frozen=True)
class _Holder:
    """A module matched by a component's prefix: a layer of a stack, or the whole (layer-less) component."""

    name: str
    component: str
    layer: int | None
    stack: str | None  # the stack's name, for components with several stacks
    path: str  # the name with the layer index written as '*'

    @property
    def count_key(self) -> str:
        """Its key in the layer counts: the component, or ``component.stack``."""
        return layer_count_key(self.component, self.stack)

    def child(self, leaf: str) -> str:
        return f"{self.name}.{leaf}" if leaf else self.name


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


def resolve(
    spec: VisionLoRASpec | dict[str, Any] | str | Path,
    model: Any = None,
    *,
    registry: Registry | None = None,
    infer: bool = False,
) -> TargetPlan:
    """Resolve a spec against a model into a validated ``TargetPlan``.

    ``model`` is a live ``nn.Module``, a ``PretrainedConfig``, a ``ModuleTree``, a bundled reference name,
    a directory or ``config.json`` path, or a Hub id (config only). When None, the spec's ``model:`` is used.
    A model whose ``model_type`` no installed plugin claims is read from its own structure (the plan says
    it was inferred); ``infer=True`` does that even where a plugin exists, to compare the two.
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
        tree = tree_for(spec.model_ref(), registry, label=spec.model)
    else:
        tree = tree_for(model, registry)
    key = spec.architecture or tree.model_type
    if key is None:
        raise UsageError(
            "the model has no config.model_type to detect its architecture from",
            hint="set `architecture:` in the spec (see `vlora plugins` for the names)",
        )
    if infer:
        return _inferred(spec, tree, None)
    try:
        plugin, arch = registry.lookup(key, tree.config)
    except UnsupportedModelError as exc:
        if spec.architecture is not None:
            names = sorted({a.name for _, a in registry.architectures()})
            raise UnsupportedModelError(
                f"{spec.architecture!r} is no installed architecture or model_type (installed: {', '.join(names)})",
                where=spec.location("architecture"),
                hint="use one of those, or leave `architecture:` out to use the model's own model_type "
                f"({tree.model_type!r})",
            ) from None
        return _inferred(spec, tree, exc)
    return Resolution(spec, tree, plugin, arch).plan()


def _inferred(spec: VisionLoRASpec, tree: ModuleTree, unclaimed: UnsupportedModelError | None) -> TargetPlan:
    """The plan on an architecture read from the tree's structure (no plugin claimed it, or infer=True)."""
    try:
        inference = tree.inference or infer_architecture(tree)
    except InferenceRefused as refusal:
        if unclaimed is None:
            raise
        raise UnsupportedModelError(f"{unclaimed.message}; and {refusal.message}", hint=unclaimed.hint) from None
    why = (f"no installed plugin handles model_type {tree.model_type!r}" if unclaimed is not None
           else "inference was asked for (infer=True)")
    resolution = Resolution(spec, tree, inference.plugin(), inference.architecture, inferred=why)
    if inference.unclassified:
        resolution.warn("inference-unclassified", f"inference could not place {', '.join(inference.unclassified)}: "
                        "they are never targeted (add them with target_modules_extra if you want them)")
    return resolution.plan()


class Resolution:
    """One resolution of a spec against a module tree with one plugin's architecture; ``plan()`` runs it."""

    def __init__(
        self, spec: VisionLoRASpec, tree: ModuleTree, plugin: PluginInfo, arch: ArchitectureSpec,
        *, inferred: str | None = None,
    ) -> None:
        self.inferred = inferred  # why the architecture was read from the tree, when it was
        self.spec = spec
        self.tree = tree
        self.plugin = plugin
        self.arch = arch
        self.who = Location(subject=f"plugin {plugin.distribution} ({arch.name})")
        self.diagnostics: list[Diagnostic] = []
        self.holders: dict[str, list[_Holder]] = {}
        self.by_name: dict[str, _Holder] = {}
        self.layer_counts: dict[str, int] = {}  # "component" or "component.stack" -> number of layers
        self.unused: dict[str, set[int]] = {}  # layers whose output the model never uses, left out or not
        self.present: list[Component] = list(arch.components)  # narrowed to what this tree has by find_holders
        self.enabled: list[Component] = []
        self.errors: list[ResolutionError] = []  # faults of the spec collected by attempt(), raised together

    def attempt(self, step: Any, *args: Any) -> Any:
        """Run one independent check of the spec; a fault of the spec is kept (and None returned) so that
        ``raise_collected`` reports every such fault at once. Faults of the plugin or model end at once."""
        try:
            return step(*args)
        except (LayerSelectionError, UserPatternError, SpecArchitectureMismatch, ComponentOverlapError,
                UnsupportedModuleTypeError) as exc:
            if isinstance(exc, ComponentOverlapError | UnsupportedModuleTypeError) and exc.location == self.who:
                raise  # the plugin's own fault
            self.errors.append(exc)
            return None

    def raise_collected(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ResolutionErrors(self.errors)

    def warn(self, code: str, message: str, location: Location | None = None) -> None:
        self.diagnostics.append(warning(code, message, location=location))

    def plan(self) -> TargetPlan:
        self.find_holders()
        self.check_spec_fits()
        self.enabled = [c for c in self.present if self.spec.component_enabled(c.name)]
        for comp in self.enabled:
            try:
                self.check_patterns(comp)
            except PatternMatchError as exc:
                raise self.explain_mismatch(exc, comp) from None
        self.warn_forced_architecture()
        if self.spec.source is not None and not self.spec.model_fields_set:
            self.warn("empty-spec", "the spec file sets no field: the plan is every default (every tower, attention "
                      "and MLP, r=16); is this the file meant?", self.spec.origin)
        # independent faults of the spec are reported together: every layer selection, then every user pattern
        selected = {comp.name: self.attempt(self.select_layers, comp) for comp in self.arch.components
                    if comp.layered}
        self.raise_collected()
        self.warn_ignored_projector_settings()
        unused = self.unused_layers()
        chosen = self.pick_targets(selected, unused)
        projector = self.arch.component("projector")
        full = self.spec.finetune_projector == "full" and projector is not None
        full_names = [h.name for h in self.holders.get("projector", []) if full and self.holder_on(projector, h)]
        for i, pattern in enumerate(self.spec.target_modules_extra):
            self.attempt(self.add_extra_target, i, pattern, chosen, full_names)
        if not self.errors:  # an exclusion may be meant for what a failed extra pattern would have added
            for i, pattern in enumerate(self.spec.exclude_modules):
                self.attempt(self.exclude_target, i, pattern, chosen)
        self.attempt(self.check_parameter_targets, chosen)
        saved: dict[str, Location] = {}  # modules_to_save: full name -> the entry that named it
        for i, pattern in enumerate(self.spec.modules_to_save):
            self.attempt(self.add_saved_module, i, pattern, chosen, full_names, saved)
        self.raise_collected()
        tied = self.tie_saved_modules(saved, chosen)
        if not chosen and not full_names and not saved:
            raise EmptySelectionError(
                self.why_empty(bool(unused)),
                where=self.spec.origin,
                hint="turn on at least one component and one role (or finetune_projector)",
            )
        self.warn_unclassified()
        return self.build(chosen, full_names, saved, tied)

    # --- the spec and the architecture -----------------------------------------------------------------

    def check_spec_fits(self) -> None:
        spec, arch = self.spec, self.arch
        roles = {role for comp in arch.components for role in comp.roles}
        if spec.finetune_cross_attention is not None and "cross_attention" not in roles:
            raise SpecArchitectureMismatch(
                f"{arch.display_name} has no cross-attention layers",
                where=spec.location("finetune_cross_attention"),
                hint="remove finetune_cross_attention from the spec",
            )
        present = {c.name for c in self.present} | ({"cross_attention"} if "cross_attention" in roles else set())
        for part in sorted(spec.lr_scale.model_fields_set - present):
            if getattr(spec.lr_scale, part) is not None:
                raise SpecArchitectureMismatch(
                    f"lr_scale.{part}: {self.tree.source} ({arch.display_name}) has no "
                    + ("cross-attention layers" if part == "cross_attention" else f"{part} component"),
                    where=spec.location("lr_scale", part),
                    hint=f"remove lr_scale.{part} from the spec",
                )
        if all(c.name != "audio" for c in self.present):
            field = next((f for f in ("finetune_audio_layers", "audio") if f in spec.model_fields_set), None)
            if field is not None:
                model = arch.display_name if arch.component("audio") is None else (
                    f"{self.tree.source} ({arch.display_name})")
                raise SpecArchitectureMismatch(
                    f"{model} has no audio tower ({self.who.render()})",
                    where=spec.location(field),
                    hint=f"remove {field} from the spec",
                )
        for name in ("vision", "projector", "language"):
            if arch.component(name) is None and spec.component_enabled(name):
                toggle = spec.component_toggle(name)
                raise SpecArchitectureMismatch(
                    f"{arch.display_name} has no {name} component ({self.who.render()})",
                    where=spec.location(toggle),
                    hint=f"set {toggle} to {'frozen' if name == 'projector' else 'false'}",
                )

    # --- holders: the modules each component's prefix matches ----------------------------------------

    def find_holders(self) -> None:
        """Holder modules per component and by name, and the layer counts; two components claiming one
        module, or one nested in another, is an error."""
        for comp in self.arch.components:
            self.holders[comp.name] = _match_holders(self.tree, comp)
        # a component only some models of the family have (Gemma-4's audio tower) is absent where the tree
        # has none of its modules
        self.present = [c for c in self.arch.components if c.required or self.holders[c.name]]
        for comp in self.arch.components:
            for h in self.holders[comp.name]:
                other = self.by_name.get(h.name)
                if other is not None:
                    raise ComponentOverlapError(
                        f"module {h.name} matches the prefix of both {other.component} and {comp.name}",
                        where=self.who,
                        hint=_OVERLAP_HINT,
                    )
                self.by_name[h.name] = h
                if h.layer is not None:
                    self.layer_counts[h.count_key] = max(self.layer_counts.get(h.count_key, 0), h.layer + 1)
        for h in self.by_name.values():
            parent = h.name.rpartition(".")[0]
            outer = self.holder_of(parent) if parent else None
            if outer is not None and outer.component != h.component:
                raise ComponentOverlapError(
                    f"{h.component} module {h.name} lies inside {outer.component} module {outer.name}",
                    where=self.who,
                    hint=_OVERLAP_HINT,
                )

    def holder_of(self, name: str) -> _Holder | None:
        """The holder that is ``name`` or contains it."""
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            holder = self.by_name.get(".".join(parts[:cut]))
            if holder is not None:
                return holder
        return None

    def holder_on(self, comp: Component, holder: _Holder) -> bool:
        """Whether a prefix module's part of an enabled component trains: a part that follows another
        component (Gemma-4's audio projector) needs that one switched on too."""
        other = comp.follows_of(holder.name)
        return other is None or self.spec.component_enabled(other)

    def frozen_reason(self, name: str) -> str | None:
        """Why the plugin says module ``name`` is never a target (None when it does not say so)."""
        holder = self.holder_of(name)
        if holder is None or holder.name == name:
            return None
        comp = self.arch.component(holder.component)
        return comp.frozen.get(name[len(holder.name) + 1:]) if comp is not None else None

    def lookup(self, holder: _Holder, leaf: str) -> tuple[str, str] | None:
        """(full name, "module" | "parameter") of a declared leaf under a holder, if the tree has it."""
        name = holder.child(leaf)
        if name in self.tree:
            return name, "module"
        if leaf and self.tree.param_shape(name) is not None:
            return name, "parameter"
        return None

    def check_patterns(self, comp: Component) -> None:
        """Every prefix and leaf of an enabled component must match this tree, or the plugin is out of date."""
        holders = self.holders[comp.name]
        version = f"transformers {self.tree.transformers_version}"
        if not holders:
            raise PatternMatchError(
                f"{comp.name} prefix {comp.prefix!r} matches no module of this {self.tree.source} tree ({version})",
                where=self.who,
                hint=_STALE,
            )
        for role, leaves in comp.roles.items():
            for leaf in leaves:
                if leaf not in comp.optional and not any(self.lookup(h, leaf) for h in holders):
                    paths = ", ".join(sorted({h.path for h in holders}))
                    raise PatternMatchError(
                        f"{comp.name} {role} leaf {leaf!r} matches no module or parameter under {paths} ({version})",
                        where=self.who,
                        hint=_STALE,
                    )

    def forced_elsewhere(self) -> bool:
        """Whether ``architecture:`` forces a family that does not claim this model's own model_type."""
        return self.spec.architecture is not None and self.tree.model_type not in self.arch.model_types

    def explain_mismatch(self, exc: PatternMatchError, comp: Component) -> ResolutionError:
        """A plugin pattern that matches nothing blames the plugin; say so only when nothing else explains it:
        ``architecture:`` forcing another family, or a base model class without the LM head around it."""
        if self.forced_elsewhere():
            return SpecArchitectureMismatch(
                f"{self.spec.architecture!r} forces {self.arch.display_name} onto a model whose "
                f"model_type is {self.tree.model_type!r}, and the two do not fit ({exc.message})",
                where=self.spec.location("architecture"),
                hint=f"remove `architecture:` to use the model's own; {self.arch.display_name} handles "
                f"model_type {', '.join(self.arch.model_types)}",
            )
        names = self.tree.names
        for outer in ("model.", "base_model.model."):
            if any(comp.pattern.fullmatch(outer + n) for n in names):
                return PatternMatchError(
                    f"this {self.tree.source} is the inner model of a {self.arch.display_name} without its LM head: "
                    f"its module names lack the leading {outer!r} of the class the plugin plans for",
                    where=self.who,
                    hint="load the class with the LM head, e.g. AutoModelForImageTextToText.from_pretrained(...) "
                    "(the ...ForConditionalGeneration class), and apply to that",
                )
        return exc

    def warn_forced_architecture(self) -> None:
        if self.forced_elsewhere():
            self.warn("architecture-forced", f"{self.spec.architecture!r} forces "
                      f"{self.arch.display_name} onto a model whose model_type is {self.tree.model_type!r}; "
                      "its patterns matched, but check the plan", self.spec.location("architecture"))

    # --- layers ----------------------------------------------------------------------------------------

    def stacks(self, comp: str) -> dict[str | None, int]:
        """Layer count per stack of a component (the key None for a component with one stack)."""
        return {(key.partition(".")[2] or None): n for key, n in self.layer_counts.items()
                if key.partition(".")[0] == comp}

    def select_layers(self, comp: Component) -> dict[str | None, set[int]] | None:
        """Per stack, the layer indices the spec selects for a component (None: all), checked against the tree."""
        spec, name = self.spec, comp.name
        override = spec.override(name)
        selection = override.layers if override is not None else None
        if not spec.component_enabled(name):
            if selection is not None:
                self.warn("ignored-layers", f"{name}.layers is set but {spec.component_toggle(name)} is false: "
                          "the selection is ignored", spec.location(name, "layers"))
            return None
        if selection is None:
            return None
        counts = self.stacks(name)
        named = {s: c for s, c in counts.items() if s is not None}
        title = f"{self.arch.display_name} {name}"
        where = spec.location(name, "layers")
        if isinstance(selection, dict):
            if not named:
                raise LayerSelectionError(
                    f"{title} has a single stack of layers; per-stack selection does not apply",
                    where=where,
                    hint="write the selection directly: layers: [0, 1] or layers: {last: N}",
                )
            unknown = sorted(set(selection) - set(named))
            if unknown:
                stacks = ", ".join(f"{s} ({c} layers)" for s, c in named.items())
                raise LayerSelectionError(
                    f"unknown stack {unknown[0]!r}: {title} has stacks {stacks}", where=where,
                    hint="use one of those names",
                )
            return {stack: _pick_layers(sel, named[stack], f"{title} {stack}", where)
                    for stack, sel in selection.items()}
        per_stack_hint = None
        if named:  # several stacks: point at the per-stack form
            per_stack_hint = (
                f"{name} has stacks {', '.join(f'{s} ({c} layers)' for s, c in named.items())}; select per "
                f"stack, e.g. layers: {{{next(iter(named))}: [0, 1]}}"
            )
        return {stack: _pick_layers(selection, count, title + (f" {stack}" if stack else ""), where, per_stack_hint)
                for stack, count in counts.items()}

    def warn_ignored_projector_settings(self) -> None:
        spec = self.spec
        written = spec.projector.model_fields_set if "projector" in spec.model_fields_set else set()
        if written and spec.finetune_projector != "lora":
            fields = ", ".join(f"projector.{f}" for f in sorted(written))
            self.warn("ignored-projector-settings", f"{fields} is set but finetune_projector is "
                      f"{spec.finetune_projector}: the setting is ignored (it applies to finetune_projector: lora)",
                      spec.location("projector"))

    def unused_layers(self) -> dict[str, set[int]]:
        """Layers to leave out because the plugin says the model never uses their output (none when the spec
        sets include_unused_layers), by ``layer_counts`` key; each is reported as a warning."""
        spec, plugin = self.spec, self.plugin
        if not plugin.implements("vlora_unused_layers"):
            return {}
        for item in plugin.unused_layers(self.arch, self.tree.config, dict(self.layer_counts)):
            self.unused.setdefault(item.count_key, set()).update(item.layers)
            if not (spec.component_enabled(item.component) and item.layers):
                continue
            layers = ", ".join(str(i) for i in sorted(item.layers))
            what = f"{item.component}{f' {item.stack}' if item.stack else ''} layers {layers}"
            if spec.include_unused_layers:
                self.warn("unused-layers-kept", f"{what} are adapted although the model never uses their output "
                          f"({item.reason}); they will get no gradient", spec.location("include_unused_layers"))
            else:
                self.warn("unused-layers", f"{what} are left out: the model never uses their output "
                          f"({item.reason}), so adapters there would get no gradient; set include_unused_layers: "
                          "true to add them anyway")
        return {} if spec.include_unused_layers else self.unused

    # --- targets ---------------------------------------------------------------------------------------

    def pick_targets(
        self, selected: dict[str, dict[str | None, set[int]] | None], unused: dict[str, set[int]]
    ) -> dict[str, _Pick]:
        spec = self.spec
        chosen: dict[str, _Pick] = {}
        for comp in self.enabled:
            layers = selected.get(comp.name)
            if comp.layered and not any(spec.role_enabled(role) for role in comp.roles):
                self.warn("no-role-enabled", f"{spec.component_toggle(comp.name)} is true, but none of the "
                          f"{comp.name} roles ({', '.join(comp.roles)}) is switched on: nothing in {comp.name} is "
                          "adapted", spec.location(spec.component_toggle(comp.name)))
            for role, leaves in comp.roles.items():
                if not spec.role_enabled(role):
                    continue
                for h in self.holders[comp.name]:
                    if not self.holder_on(comp, h):
                        continue
                    if h.layer is not None and (h.layer in unused.get(h.count_key, ()) or (
                            layers is not None and h.layer not in layers.get(h.stack, ()))):
                        continue
                    for leaf in leaves:
                        found = self.lookup(h, leaf)
                        if found is None or (leaf in comp.optional and found[1] == "module"
                                             and self.tree.get(found[0]).kind is None):
                            continue  # an optional leaf is a target only where it is a module LoRA can wrap
                        chosen[found[0]] = _Pick(h, role, leaf, found[1])
        for name, pick in chosen.items():
            self.check_wrappable(name, pick)
        return chosen

    def check_wrappable(self, name: str, pick: _Pick) -> None:
        if pick.kind == PARAMETER:
            shape = self.tree.param_shape(name)
            if shape is None or len(shape) not in (2, 3):
                raise UnsupportedModuleTypeError(
                    f"{name} is a parameter of shape {shape}, and LoRA on a parameter needs a 2-D one (or a 3-D "
                    "one of stacked experts)",
                    where=self.who,
                    hint="the plugin should not list it as a leaf",
                )
            return
        entry = self.tree.get(name)
        assert entry is not None
        if entry.kind is None:
            raise UnsupportedModuleTypeError(
                f"{name} is a {entry.type_name}, which LoRA cannot wrap (role {pick.role!r}, leaf {pick.leaf!r})",
                where=self.who,
                hint=f"{_WRAPPABLE}; the plugin should not list it",
            )

    def check_parameter_targets(self, chosen: dict[str, _Pick]) -> None:
        """PEFT adapts bare parameters and expert weights (``target_parameters``) without dropout and DoRA."""
        params = [(n, p) for n, p in chosen.items() if p.kind == PARAMETER]
        if not params:
            return
        name, pick = params[0]
        spec = self.spec
        what = "a stack of expert weights" if len(self.tree.param_shape(name) or ()) == 3 else "a bare parameter"
        other = ("train the projector with finetune_projector: full" if pick.holder.component == "projector" else
                 f"leave it out with exclude_modules: ['{re.escape(name)}'] (or finetune_mlp_modules: false)")
        for field, bad in (("use_dora", spec.use_dora), ("lora_dropout", spec.lora_dropout != 0)):
            if bad:
                raise SpecArchitectureMismatch(
                    f"{name} on {self.arch.display_name} is {what}, adapted through PEFT's "
                    f"target_parameters, which does not support {field}: {getattr(spec, field)}",
                    where=spec.location(field),
                    hint=f"set {field} to {'false' if field == 'use_dora' else '0'}, or {other}",
                )

    def add_extra_target(self, i: int, pattern: str, chosen: dict[str, _Pick], full_names: list[str]) -> None:
        where = self.spec.location("target_modules_extra", i)
        matched = _user_matches(pattern, self.tree.names, where)
        hits = [e for e in self.tree.entries if e.name in matched]
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
            holder = self.holder_of(entry.name)
            if holder is None:
                raise ComponentOverlapError(
                    f"pattern {pattern!r} matches {entry.name}, which lies in no component",
                    where=where,
                    hint="extra targets must lie inside a component's layers or projector; narrow the pattern, or "
                    "train the module in full with modules_to_save",
                )
            if entry.kind is None:
                raise UnsupportedModuleTypeError(
                    f"pattern {pattern!r} matches {entry.name}, a {entry.type_name}, which LoRA cannot wrap",
                    where=where,
                    hint=f"{_WRAPPABLE}; narrow the pattern to those",
                )
            reason = self.frozen_reason(entry.name)
            if reason is not None and entry.custom_forward:
                raise UnsupportedModuleTypeError(
                    f"pattern {pattern!r} matches {entry.name}, {reason}: a {entry.type_name} whose forward "
                    "PEFT's LoRA wrapper would break (it adds the adapter's output to the module's own)",
                    where=where,
                    hint="leave it out of target_modules_extra; narrow the pattern",
                )
            if reason is not None:
                self.warn("frozen-target", f"target_modules_extra adds {entry.name}, which {self.who.render()} "
                          f"never targets ({reason})", where)
            if holder.name in full_names:
                raise ComponentOverlapError(
                    f"pattern {pattern!r} matches {entry.name}, inside the fully trained projector {holder.name}",
                    where=where,
                    hint="a fully trained module cannot also get adapters; use finetune_projector: lora instead",
                )
            chosen[entry.name] = _Pick(holder, EXTRA_ROLE, entry.name[len(holder.name) + 1:], "module")

    def exclude_target(self, i: int, pattern: str, chosen: dict[str, _Pick]) -> None:
        where = self.spec.location("exclude_modules", i)
        matched = _user_matches(pattern, list(chosen), where)
        dropped = [n for n in chosen if n in matched]
        if not dropped:
            raise UserPatternError(
                f"pattern {pattern!r} matches none of the {len(chosen)} planned targets",
                where=where,
                hint="patterns are full-name regular expressions (fullmatch); remove it or fix it",
            )
        for n in dropped:
            del chosen[n]

    def add_saved_module(self, i: int, pattern: str, chosen: dict[str, _Pick], full_names: list[str],
                         saved: dict[str, Location]) -> None:
        """One ``modules_to_save`` entry: the outermost modules it matches, each trained in full."""
        where = self.spec.location("modules_to_save", i)
        names = [n for n in self.tree.names if n]
        matched = _user_matches(pattern, names, where)
        if not matched and re.fullmatch(r"\w+", pattern):  # a plain name: the modules whose name ends with it
            matched = {n for n in names if n.rpartition(".")[2] == pattern}
        if not matched:
            raise UserPatternError(
                f"modules_to_save entry {pattern!r} matches no module of this model",
                where=where,
                hint="write a full dotted name or a full-name regular expression (fullmatch), e.g. lm_head or "
                "'model\\.language_model\\.embed_tokens'; see the names with `vlora plan --json`",
            )
        for name in sorted(n for n in matched if not any(n.startswith(m + ".") for m in matched)):
            self.check_saved(name, chosen, full_names, where, what=f"modules_to_save entry {pattern!r} matches {name}")
            saved.setdefault(name, where)

    def check_saved(self, name: str, chosen: dict[str, _Pick], full_names: list[str], where: Location, *,
                    what: str) -> None:
        """A module to train in full must not be, hold or lie in a LoRA target or the full projector."""
        inside = sorted(t for t in chosen if t == name or t.startswith(name + ".") or name.startswith(t + "."))
        if inside:
            relation = "which is" if inside[0] == name else "which holds" if inside[0].startswith(name) else "inside"
            more = f" and {len(inside) - 1:,} more" if len(inside) > 1 else ""
            raise ComponentOverlapError(
                f"{what}, {relation} the LoRA target {inside[0]}{more}",
                where=where,
                hint="a module trains either in full or through adapters: narrow the entry, or drop those targets "
                "with exclude_modules",
            )
        projector = next((f for f in full_names if name == f or name.startswith(f + ".") or f.startswith(name + ".")),
                         None)
        if projector is not None:
            relation = "which is" if projector == name else "inside" if name.startswith(projector) else "which holds"
            raise ComponentOverlapError(
                f"{what}, {relation} the projector {projector}, trained in full already (finetune_projector: full)",
                where=where,
                hint="leave it out of modules_to_save",
            )
        if not self.tree.subtree_params(name) and not self.tree.tied_with(name):
            raise UserPatternError(f"{what}, which has no parameters to train", where=where,
                                   hint="name a module with weights, e.g. lm_head or embed_tokens")

    def tie_saved_modules(self, saved: dict[str, Location], chosen: dict[str, _Pick]) -> dict[str, str]:
        """Saved modules whose weight another module shares (tie_word_embeddings): PEFT trains one copy for
        both (``ensure_weight_tying``), so the partner is saved too; returns module -> the module it is tied to."""
        tied: dict[str, str] = {}
        for name in list(saved):
            for a, b in self.tree.tied_with(name) if name not in tied else ():
                mine, other = (a, b) if a.startswith(name + ".") else (b, a)
                partner = other.rpartition(".")[0]
                if partner == name or partner in tied:
                    continue
                self.check_saved(partner, chosen, [], saved[name], what=f"{name} shares its weight with {partner}")
                tied[name], tied[partner] = partner, name
                saved.setdefault(partner, saved[name])
                self.warn("tied-weights", f"modules_to_save: {name} shares its {mine.rpartition('.')[2]} with "
                          f"{partner} (tied embeddings), so PEFT trains one copy for both "
                          f"(ensure_weight_tying) and both change; to train {name} alone, untie them first "
                          "(tie_word_embeddings: false in the model's config, before loading)", saved[name])
        return tied

    def saved_component(self, name: str) -> tuple[str, str]:
        """(component, name inside it) of a fully trained module: its component's layer or projector, else the
        tower (sub-model) it lies in, else ("", the full name)."""
        holder = self.holder_of(name)
        if holder is not None:
            return holder.component, name[len(holder.name) + 1:]
        towers = {"vision_config": "vision", "text_config": "language", "audio_config": "audio"}
        for module, key in self.tree.sub_models:
            if key in towers and name.startswith(module + "."):
                return towers[key], name[len(module) + 1:]
        return "", name

    def why_empty(self, unused: bool) -> str:
        spec = self.spec
        towers = [c.name for c in self.present if c.layered]
        towers_off = not any(spec.component_enabled(t) for t in towers)
        roles_off = not any(spec.role_enabled(r) for c in self.present if c.layered for r in c.roles)
        reasons = []
        if towers_off:
            reasons.append(_all_false([spec.component_toggle(t) for t in towers]))
        if roles_off:
            reasons.append(_all_false(["finetune_attention_modules", "finetune_mlp_modules"]))
        if not spec.component_enabled("projector"):
            reasons.append("finetune_projector is frozen")
        if spec.exclude_modules:
            reasons.append("exclude_modules removed every remaining target")
        if unused:
            reasons.append("the selected layers are all layers the model never uses (see include_unused_layers)")
        if not reasons or (not towers_off and not roles_off and not spec.exclude_modules and not unused):
            reasons.append("the enabled roles have no module in the selected layers")
        return f"the spec selects nothing to train on {self.arch.display_name}: " + "; ".join(reasons)

    def warn_unclassified(self) -> None:
        """Warn about wrappable modules inside enabled towers' layers that no role names (never targeted)."""
        towers = {c.name for c in self.enabled if c.layered}
        classified = {
            h.child(leaf)
            for comp in self.arch.components
            for h in self.holders[comp.name]
            for leaf in [*(leaf for leaves in comp.roles.values() for leaf in leaves), *comp.frozen]
        }
        found = set()
        for entry in self.tree.entries:
            if entry.kind is None or entry.name in classified:
                continue
            holder = self.holder_of(entry.name)
            if holder is not None and holder.name != entry.name and holder.component in towers:
                found.add(f"{holder.path}.{entry.name[len(holder.name) + 1:]}")
        if found:
            self.warn("unclassified-modules", f"{self.who.render()} gives no role to {', '.join(sorted(found))}: they "
                      "are never targeted (add them with target_modules_extra if you want them)")

    # --- the plan --------------------------------------------------------------------------------------

    def build(self, chosen: dict[str, _Pick], full_names: list[str], saved: dict[str, Location],
              tied: dict[str, str]) -> TargetPlan:
        spec, tree = self.spec, self.tree
        targets = []
        for name, pick in chosen.items():
            holder = pick.holder
            r = spec.rank_for(holder.component)
            experts, experts_param = 1, False
            if pick.kind == PARAMETER:
                shape = tree.param_shape(name) or (0, 0)
                experts_param = len(shape) == 3
                if experts_param:  # experts x out x in, as PEFT reads a stack of expert weights
                    experts, out_f, in_f = shape
                else:
                    out_f, in_f = shape
                module_type, kind, bias = "Parameter", PARAMETER, 0
                lora = r * experts * (in_f + out_f)
            else:
                entry = tree.get(name)
                assert entry is not None
                module_type, kind, bias = entry.type_name, entry.kind or "", entry.bias_params
                in_f, out_f = entry.in_features, entry.out_features
                lora = entry.lora_params(r, dora=spec.use_dora)
            targets.append(Target(
                name=name, component=holder.component, role=pick.role, layer=holder.layer, leaf=pick.leaf,
                stack=holder.stack, path=holder.path, kind=kind, module_type=module_type, in_features=in_f,
                out_features=out_f, r=r, lora_alpha=spec.alpha_for(holder.component), lora_params=lora,
                bias_params=bias, experts=experts, variant=self.variant(pick, stacked=experts_param),
            ))
        self.check_init(targets)
        full = [
            FullModule(name=n, component="projector", params=tree.subtree_params(n),
                       bias_params=tree.subtree_params(n, bias=True))
            for n in sorted(full_names)
        ]
        for n in sorted(saved, key=tree.names.index):
            component, leaf = self.saved_component(n)
            full.append(FullModule(name=n, component=component, params=tree.subtree_params(n),
                                   bias_params=tree.subtree_params(n, bias=True), leaf=leaf, tied_to=tied.get(n)))
        plan = TargetPlan(
            architecture=self.arch.name,
            architecture_title=self.arch.display_name,
            model_type=tree.model_type,
            model=tree.source,
            plugin=self.plugin.distribution,
            plugin_version=self.plugin.version,
            spec=spec,
            targets=tuple(targets),
            full_modules=tuple(full),
            total_params=tree.total_params,
            all_bias_params=sum(e.bias_params for e in tree.entries),
            component_params={c: sum(tree.subtree_params(h.name) for h in hs) for c, hs in self.holders.items()},
            layer_counts=dict(self.layer_counts),
            unused_layers={k: tuple(sorted(v)) for k, v in sorted(self.unused.items()) if v},
            diagnostics=tuple(self.diagnostics),
            inferred=self.inferred,
            transformers_version=tree.transformers_version,
            quantization=tree.quantization,
            stored_bytes=tree.stored_bytes,
        )
        plan.check_regex(tree.names)
        plan.check_saved(tree.names)
        return plan


    def check_init(self, targets: list[Target]) -> None:
        """SVD- and QR-based inits (PiSSA, OLoRA) take the top r directions of each target's weight: r above
        the weight's smaller side fails inside PEFT after it has rewritten earlier weights, so refuse it here."""
        init = self.spec.init_lora_weights
        if not (isinstance(init, str) and (init in ("pissa", "olora") or init.startswith("pissa_niter_"))):
            return
        for t in targets:
            if t.kind != PARAMETER and t.r > min(t.in_features, t.out_features):
                raise SpecArchitectureMismatch(
                    f"init_lora_weights: {init} decomposes each target's weight, and r={t.r} is more than the "
                    f"smaller side of {t.name} ({t.out_features} x {t.in_features})",
                    where=self.spec.location("init_lora_weights"),
                    hint=f"use r <= {min(t.in_features, t.out_features)} for {t.component} (e.g. {t.component}: "
                    "{r: ...}), exclude that module, or another init_lora_weights",
                )

    def variant(self, pick: _Pick, *, stacked: bool) -> str | None:
        """The row a target is shown on within its role: the plugin's label, or ``experts`` for expert weights."""
        comp = self.arch.component(pick.holder.component)
        declared = comp.variants.get(pick.leaf) if comp is not None else None
        return declared or ("experts" if stacked else None)


PATTERN_SECONDS = 2.0  # the time a user pattern may take over all the names of a model


def _user_matches(pattern: str, names: list[str], where: Location) -> set[str]:
    """The names a user pattern fullmatches, with the ``regex`` engine and a time budget: a pattern that
    backtracks catastrophically (``([a-z._0-9]+)+!``) is refused instead of running for minutes."""
    import regex

    rx = regex.compile(pattern)
    deadline = time.monotonic() + PATTERN_SECONDS
    found = set()
    try:
        for name in names:
            if rx.fullmatch(name, timeout=max(deadline - time.monotonic(), 0.001)):
                found.add(name)
    except TimeoutError:
        raise UserPatternError(
            f"pattern {pattern[:80]!r} takes more than {PATTERN_SECONDS:g} s to match this model's module names "
            "(it backtracks catastrophically)",
            where=where,
            hint="simplify it: no quantified group inside a quantified group, e.g. "
            "'model\\.visual\\.blocks\\.\\d+\\.attn\\.qkv'",
        ) from None
    return found


def _match_holders(tree: ModuleTree, comp: Component) -> list[_Holder]:
    pattern = comp.pattern
    out = []
    for entry in tree.entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        if comp.layered:
            start, end = match.span("layer")
            layer: int | None = int(match.group("layer"))
            path = entry.name[:start] + "*" + entry.name[end:]
        else:
            layer, path = None, entry.name
        stack = match.group("stack") if comp.stacked else None
        out.append(_Holder(entry.name, comp.name, layer, stack, path))
    return out


def _pick_layers(
    selection: list[int] | LayerRange, count: int, what: str, where: Location, hint: str | None = None
) -> set[int]:
    if isinstance(selection, LayerRange):
        n = selection.first if selection.first is not None else selection.last
        assert n is not None
        if n > count:
            raise LayerSelectionError(
                f"{selection.describe()} layers asked, but {what} has {count} layers",
                where=where,
                hint=hint or f"use a number from 1 to {count}, or leave `layers` out to train all {count}",
            )
        return set(selection.indices(count))
    missing = [i for i in selection if i >= count]
    if missing:
        raise LayerSelectionError(
            f"layer {missing[0]} does not exist: {what} has {count} layers (0-{count - 1})",
            where=where,
            hint=hint or f"use indices 0 to {count - 1}, or {{last: N}} for the last N layers",
        )
    return set(selection)


def _all_false(toggles: list[str]) -> str:
    if len(toggles) == 1:
        return f"{toggles[0]} is false"
    return f"{' and '.join(toggles)} are both false" if len(toggles) == 2 else f"{', '.join(toggles)} are all false"


__all__ = ["Resolution", "resolve"]
