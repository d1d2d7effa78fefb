"""Building the plan from the chosen targets: counts, ranks, variants, the modules trained in full, and the
checks of the emitted PEFT config against the tree."""

from __future__ import annotations

from ..decisions import Decisions
from ..diagnostics import Location
from ..errors import SpecArchitectureMismatch
from ..plan import FullModule, Target, TargetPlan
from ..vocabulary import PARAMETER, SUB_CONFIG_COMPONENTS
from .holders import Pick


class PlanBuilder:
    """``build`` and what it needs (a part of ``Resolution``)."""

    def build(self, chosen: dict[str, Pick], full_names: list[str], saved: dict[str, Location],
              tied: dict[str, str]) -> TargetPlan:
        spec, tree = self.spec, self.tree
        targets = []
        for name, pick in chosen.items():
            place = pick.placement
            r = spec.rank_for(place.component)
            experts, experts_param = 1, False
            if pick.parameter:
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
                name=name, placement=place, kind=kind, module_type=module_type, in_features=in_f,
                out_features=out_f, r=r, lora_alpha=spec.alpha_for(place.component), lora_params=lora,
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
            component_params={c: sum(tree.subtree_params(h.holder) for h in hs) for c, hs in self.holders.items()},
            layer_counts=dict(self.layer_counts),
            unused_layers={k: tuple(sorted(v)) for k, v in sorted(self.unused.items()) if v},
            diagnostics=tuple(self.diagnostics),
            decisions=Decisions(dict(self.decided), self.classify),
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
        odd = next((t for t in targets if t.kind != PARAMETER and t.r % 2), None)
        if init == "orthogonal" and odd is not None:  # PEFT splits one orthogonal basis between A and B
            raise SpecArchitectureMismatch(
                f"orthogonal initialisation needs an even rank, and {odd.component} targets have r={odd.r}",
                where=self.spec.location("init_lora_weights"),
                hint=f"use an even r for {odd.component} (e.g. r={odd.r + 1}), or another init_lora_weights",
            )
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

    def variant(self, pick: Pick, *, stacked: bool) -> str | None:
        """The row a target is shown on within its role: the plugin's label, or ``experts`` for expert weights."""
        comp = self.arch.component(pick.placement.component)
        declared = comp.variants.get(pick.placement.leaf) if comp is not None else None
        return declared or ("experts" if stacked else None)

    def saved_component(self, name: str) -> tuple[str, str]:
        """(component, name inside it) of a fully trained module: its component's layer or projector, else the
        tower (sub-model) it lies in, else ("", the full name)."""
        holder = self.holder_of(name)
        if holder is not None:
            return holder.component, name[len(holder.holder) + 1:]
        for module, key in self.tree.sub_models:
            if key in SUB_CONFIG_COMPONENTS and name.startswith(module + "."):
                return SUB_CONFIG_COMPONENTS[key], name[len(module) + 1:]
        return "", name


__all__ = ["PlanBuilder"]
