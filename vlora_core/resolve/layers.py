"""Layer selection: the layers a spec selects per component and stack, checked against the tree, and the layers
the plugin says the model never uses."""

from __future__ import annotations

from ..architecture import ArchitectureSpec, Component
from ..diagnostics import Location
from ..errors import LayerSelectionError
from ..spec import LayerRange


class LayerRules:
    """``select_layers`` and ``unused_layers`` (a part of ``Resolution``)."""

    arch: ArchitectureSpec
    unused: dict[str, set[int]]

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


__all__ = ["LayerRules"]
