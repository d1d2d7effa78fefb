"""One resolution: the phases in order, the plugin's roles turned into targets, and every check of the spec
against the architecture and the tree."""

from __future__ import annotations

import re
from typing import Any

from ..architecture import ArchitectureSpec, Component
from ..decisions import Decision
from ..diagnostics import Diagnostic, Location, warning
from ..errors import (
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    PatternMatchError,
    ResolutionError,
    ResolutionErrors,
    SpecArchitectureMismatch,
    UnsupportedModuleTypeError,
    UserPatternError,
)
from ..modeltree import ModuleTree
from ..peft.rules import PREFIX
from ..placement import Placement
from ..plan import TargetPlan
from ..plugins import PluginInfo
from ..spec import VisionLoRASpec
from .build import PlanBuilder
from .holders import HolderRules, Pick
from .layers import LayerRules
from .user import UserRules

_WRAPPABLE = "LoRA wraps Linear, Conv1d/2d/3d, Embedding, HF Conv1D and 2-D parameters"
_STALE = "the plugin is out of date for this transformers layout; update it (or pin transformers)"
_OVERLAP_HINT = "the plugin's component prefixes must not overlap; fix the plugin"


class _Faults:
    """Independent faults of the spec, collected so that one run reports them all: ``with faults:`` around one
    check keeps a fault of the spec (and goes on); a fault of the plugin or model ends the run at once."""

    KINDS = (LayerSelectionError, UserPatternError, SpecArchitectureMismatch, ComponentOverlapError,
             UnsupportedModuleTypeError)

    def __init__(self, plugin: Location) -> None:
        self.plugin = plugin
        self.errors: list[ResolutionError] = []

    def __enter__(self) -> _Faults:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if not isinstance(exc, self.KINDS):
            return False
        if isinstance(exc, ComponentOverlapError | UnsupportedModuleTypeError) and exc.location == self.plugin:
            return False  # the plugin's own fault
        self.errors.append(exc)
        return True

    def raise_collected(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ResolutionErrors(self.errors)


class Resolution(HolderRules, LayerRules, UserRules, PlanBuilder):
    """One resolution of a spec against a module tree with one plugin's architecture; ``plan()`` runs it.

    Each phase returns what it found; the decisions that keep or drop a module are recorded as they are made
    (``Decision``), and the plan carries them for ``--explain``. The phases live in one module each: the holder
    modules (``holders``), layer selection (``layers``), the user's patterns (``user``), building the plan
    (``build``); this class puts them in order and holds the plugin's roles."""

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
        self.decided: dict[str, Decision] = {}  # module name -> the rule that kept or dropped it
        # found by find_holders: the modules each component's prefix matches, by component and by name
        self.holders: dict[str, list[Placement]] = {}
        self.by_name: dict[str, Placement] = {}
        self.layer_counts: dict[str, int] = {}  # "component" or "component.stack" -> number of layers
        self.present: list[Component] = list(arch.components)  # narrowed to what this tree has
        self.unused: dict[str, set[int]] = {}  # layers whose output the model never uses, left out or not

    def warn(self, code: str, message: str, location: Location | None = None) -> None:
        self.diagnostics.append(warning(code, message, location=location))

    def plan(self) -> TargetPlan:
        self.find_holders()
        self.check_spec_fits()
        enabled = [c for c in self.present if self.spec.component_enabled(c.name)]
        for comp in enabled:
            try:
                self.check_patterns(comp)
            except PatternMatchError as exc:
                raise self.explain_mismatch(exc, comp) from None
        self.warn_forced_architecture()
        if self.spec.source is not None and not self.spec.model_fields_set:
            self.warn("empty-spec", "the spec file sets no field: the plan is every default (every tower, attention "
                      "and MLP, r=16); is this the file meant?", self.spec.origin)
        # independent faults of the spec are reported together: every layer selection, then every user pattern
        faults = _Faults(self.who)
        selected: dict[str, dict[str | None, set[int]] | None] = {}
        for comp in self.arch.components:
            if comp.layered:
                with faults:
                    selected[comp.name] = self.select_layers(comp)
        faults.raise_collected()
        self.warn_ignored_projector_settings()
        unused = self.unused_layers()
        chosen = self.pick_targets(selected, unused)
        full_names = self.full_projector()
        for i, pattern in enumerate(self.spec.target_modules_extra):
            with faults:
                chosen = {**chosen, **self.extra_targets(i, pattern, chosen, full_names)}
        if not faults.errors:  # an exclusion may be meant for what a failed extra pattern would have added
            for i, pattern in enumerate(self.spec.exclude_modules):
                with faults:
                    dropped = self.excluded(i, pattern, chosen)
                    chosen = {n: p for n, p in chosen.items() if n not in dropped}
        with faults:
            self.check_parameter_targets(chosen)
        saved: dict[str, Location] = {}  # modules_to_save: full name -> the entry that named it
        for i, pattern in enumerate(self.spec.modules_to_save):
            with faults:
                saved = {**self.saved_modules(i, pattern, chosen, full_names), **saved}
        faults.raise_collected()
        tied = self.tied_partners(saved, chosen)
        saved = {**saved, **{partner: saved[name] for name, partner in tied.items() if partner not in saved}}
        if not chosen and not full_names and not saved:
            raise EmptySelectionError(
                self.why_empty(bool(unused)),
                where=self.spec.origin,
                hint="turn on at least one component and one role (or finetune_projector)",
            )
        self.warn_unclassified(enabled)
        return self.build(chosen, full_names, saved, tied)

    def check_spec_fits(self) -> None:
        """The spec against the parts this model has. One rule for a toggle of a part a model may lack (the
        audio tower, cross-attention, a vision tower, a projector): left at its default or set off, it asks for
        nothing (a note where it was written); set on explicitly, it is an error naming the part."""
        spec, arch = self.spec, self.arch
        roles = {role for comp in arch.components for role in comp.roles}
        present = {c.name for c in self.present} | ({"cross_attention"} if "cross_attention" in roles else set())
        for part in sorted(spec.lr_scale.model_fields_set - present):
            if getattr(spec.lr_scale, part) is not None:
                raise SpecArchitectureMismatch(
                    f"lr_scale.{part}: {self.tree.source} ({arch.display_name}) has no "
                    + ("cross-attention layers" if part == "cross_attention" else f"{part} component"),
                    where=spec.location("lr_scale", part),
                    hint=f"remove lr_scale.{part} from the spec",
                )
        model = (f"{self.tree.source} ({arch.display_name})" if any(c.name == "audio" for c in arch.components)
                 else arch.display_name)
        absent = [("finetune_cross_attention", "cross_attention", f"{arch.display_name} has no cross-attention "
                   "layers")]
        absent += [(spec.component_toggle(name), name, f"{model if name == 'audio' else arch.display_name} has no "
                    f"{'audio tower' if name == 'audio' else name + ' component'} ({self.who.render()})")
                   for name in ("audio", "vision", "projector") if name not in present]
        for toggle, part, lacks in absent:
            if part not in present and toggle in spec.model_fields_set:
                on = (spec.finetune_cross_attention if part == "cross_attention"
                      else spec.component_enabled(part))
                if on:
                    raise SpecArchitectureMismatch(
                        lacks, where=spec.location(toggle),
                        hint=f"set {toggle} to {'frozen' if part == 'projector' else 'false'}, or leave it out: a "
                        "toggle of a part the model lacks asks for nothing",
                    )
                self.warn("absent-part", f"{toggle} is set, but {lacks}: it asks for nothing here",
                          spec.location(toggle))
        if "vision" not in present and "projector" in present and spec.component_toggle("vision") not in \
                spec.model_fields_set:
            self.warn("absent-part", f"{arch.display_name} has no vision tower: image patches reach the language "
                      "model through the projector alone, so the vision toggles select nothing here (finetune_"
                      "projector: lora or full trains the image path)", spec.origin)
        if not {"vision", "projector"} & present and spec.component_toggle("vision") not in spec.model_fields_set:
            self.warn("absent-part", f"{arch.display_name} has no vision tower and no projector: its images reach the "
                      "language model as tokens of its vocabulary (an image tokenizer, which no gradient passes "
                      "through), so only the language model trains", spec.origin)
        if "projector" not in present and "vision" in present and "cross_attention" in roles and \
                spec.component_toggle("projector") not in spec.model_fields_set:
            self.warn("absent-part", f"{arch.display_name} has no projector: its language model reads the vision "
                      "tower's output through cross-attention (finetune_cross_attention trains that path)",
                      spec.origin)
        for part in ("audio", "vision", "projector"):
            if part not in present and part in spec.model_fields_set:
                self.warn("absent-part", f"{part}: its settings are ignored: {model} has no "
                          f"{'audio tower' if part == 'audio' else part + ' component'}", spec.location(part))

    def follows_off(self, comp: Component, holder: Placement) -> str | None:
        """The other component a prefix module's part of an enabled component also follows, when that one is
        off (Gemma-4's audio projector trains only with the audio tower); None: the part trains."""
        other = comp.follows_of(holder.holder)
        return other if other is not None and not self.spec.component_enabled(other) else None

    def full_projector(self) -> list[str]:
        """The projector modules trained in full (finetune_projector: full)."""
        projector = self.arch.component("projector")
        if self.spec.finetune_projector != "full" or projector is None:
            return []
        return [h.holder for h in self.holders.get("projector", []) if self.follows_off(projector, h) is None]

    def classify(self, name: str) -> Decision:
        """The plugin's word on a module no role of an enabled component names: outside every component, a
        component switched off, the holding module itself, a type LoRA cannot wrap, or a leaf without a role
        (with the plugin's reason when it freezes it)."""
        holder = self.holder_of(name)
        if holder is None:
            return Decision("outside")
        if not self.spec.component_enabled(holder.component):
            return Decision("component-off", holder.component)
        if name == holder.holder:
            return Decision("holder", holder.component)
        leaf = name[len(holder.holder) + 1:]
        entry = self.tree.get(name)
        if entry is not None and entry.kind is None:
            return Decision("not-wrappable", holder.component, leaf=leaf, detail=entry.type_name)
        comp = self.arch.component(holder.component)
        return Decision("no-role", holder.component, leaf=leaf, detail=(comp.frozen.get(leaf, "") if comp else ""))

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
        for outer in ("model.", PREFIX):
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

    def warn_ignored_projector_settings(self) -> None:
        spec = self.spec
        written = spec.projector.model_fields_set if "projector" in spec.model_fields_set else set()
        if written and spec.finetune_projector != "lora":
            fields = ", ".join(f"projector.{f}" for f in sorted(written))
            self.warn("ignored-projector-settings", f"{fields} is set but finetune_projector is "
                      f"{spec.finetune_projector}: the setting is ignored (it applies to finetune_projector: lora)",
                      spec.location("projector"))

    def pick_targets(
        self, selected: dict[str, dict[str | None, set[int]] | None], unused: dict[str, set[int]]
    ) -> dict[str, Pick]:
        """The targets the plugin's roles give in the enabled components, every candidate's decision recorded."""
        spec = self.spec
        chosen: dict[str, Pick] = {}
        for comp in self.present:
            if not spec.component_enabled(comp.name):
                continue
            layers = selected.get(comp.name)
            if comp.layered and not any(spec.role_enabled(role) for role in comp.roles):
                self.warn("no-role-enabled", f"{spec.component_toggle(comp.name)} is true, but none of the "
                          f"{comp.name} roles ({', '.join(comp.roles)}) is switched on: nothing in {comp.name} is "
                          "adapted", spec.location(spec.component_toggle(comp.name)))
            for role, leaves in comp.roles.items():
                role_on = spec.role_enabled(role)
                for h in self.holders[comp.name]:
                    rule, detail = self.layer_rule(comp, h, layers, unused), ""
                    follows = self.follows_off(comp, h)
                    if follows is not None:
                        rule, detail = "follows", follows
                    elif not role_on:
                        rule = "role-off"
                    for leaf in leaves:
                        found = self.lookup(h, leaf)
                        if found is None:
                            continue
                        name, parameter = found
                        if leaf in comp.optional and not parameter and self.tree.get(name).kind is None:
                            continue  # an optional leaf is a target only where it is a module LoRA can wrap
                        self.decided[name] = Decision(rule, comp.name, role, h.layer, leaf, detail)
                        if rule == "target":
                            chosen[name] = Pick(h.at(leaf, role), parameter)
        for name, pick in chosen.items():
            self.check_wrappable(name, pick)
        return chosen

    @staticmethod
    def layer_rule(comp: Component, h: Placement, layers: dict[str | None, set[int]] | None,
                   unused: dict[str, set[int]]) -> str:
        """"target", or the layer rule that leaves out the holder's layer (a layer never used, a selection)."""
        if h.layer is None:
            return "target"
        if h.layer in unused.get(h.count_key, ()):
            return "unused-layer"
        if layers is not None and h.layer not in layers.get(h.stack, ()):
            return "layer-selection"
        return "target"

    def check_wrappable(self, name: str, pick: Pick) -> None:
        if pick.parameter:
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
                f"{name} is a {entry.type_name}, which LoRA cannot wrap (role {pick.placement.role!r}, leaf "
                f"{pick.placement.leaf!r})",
                where=self.who,
                hint=f"{_WRAPPABLE}; the plugin should not list it",
            )

    def check_parameter_targets(self, chosen: dict[str, Pick]) -> None:
        """PEFT adapts bare parameters and expert weights (``target_parameters``) without dropout and DoRA."""
        params = [(n, p) for n, p in chosen.items() if p.parameter]
        if not params:
            return
        name, pick = params[0]
        spec = self.spec
        what = "a stack of expert weights" if len(self.tree.param_shape(name) or ()) == 3 else "a bare parameter"
        other = ("train the projector with finetune_projector: full" if pick.placement.component == "projector" else
                 f"leave it out with exclude_modules: ['{re.escape(name)}'] (or finetune_mlp_modules: false)")
        for field, bad in (("use_dora", spec.use_dora), ("lora_dropout", spec.lora_dropout != 0)):
            if bad:
                raise SpecArchitectureMismatch(
                    f"{name} on {self.arch.display_name} is {what}, adapted through PEFT's "
                    f"target_parameters, which does not support {field}: {getattr(spec, field)}",
                    where=spec.location(field),
                    hint=f"set {field} to {'false' if field == 'use_dora' else '0'}, or {other}",
                )

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

    def warn_unclassified(self, enabled: list[Component]) -> None:
        """Warn about wrappable modules inside enabled towers' layers that no role names (never targeted)."""
        towers = {c.name for c in enabled if c.layered}
        found = set()
        for entry in self.tree.entries:
            if entry.kind is None or entry.name in self.decided:
                continue
            holder = self.holder_of(entry.name)
            if holder is None or holder.holder == entry.name or holder.component not in towers:
                continue
            leaf = entry.name[len(holder.holder) + 1:]
            comp = self.arch.component(holder.component)
            if comp is not None and leaf not in comp.frozen:
                found.add(f"{holder.path}.{leaf}")
        if found:
            self.warn("unclassified-modules", f"{self.who.render()} gives no role to {', '.join(sorted(found))}: they "
                      "are never targeted (add them with target_modules_extra if you want them)")


def _all_false(toggles: list[str]) -> str:
    if len(toggles) == 1:
        return f"{toggles[0]} is false"
    return f"{' and '.join(toggles)} are both false" if len(toggles) == 2 else f"{', '.join(toggles)} are all false"


__all__ = ["Resolution"]
