"""The holder modules of a resolution: the modules each component's prefix matches (its layers, or the one
module of a component without layers), by component and by name, with the layer counts; and where a name sits
among them."""

from __future__ import annotations

from dataclasses import dataclass

from ..architecture import ArchitectureSpec, Component
from ..errors import ComponentOverlapError
from ..modeltree import ModuleTree
from ..placement import Placement


@dataclass(frozen=True)
class Pick:
    """One chosen target before it becomes a ``Target``: where it sits, and whether it is a bare parameter."""

    placement: Placement
    parameter: bool



_OVERLAP_HINT = "the plugin's component prefixes must not overlap; fix the plugin"


class HolderRules:
    """Finding the holders (``find_holders``) and asking where a name sits (``holder_of``, ``lookup``)."""

    arch: ArchitectureSpec
    tree: ModuleTree
    holders: dict[str, list[Placement]]
    by_name: dict[str, Placement]
    layer_counts: dict[str, int]
    present: list[Component]

    def find_holders(self) -> None:
        """Holder modules per component and by name, and the layer counts; two components claiming one
        module, or one nested in another, is an error."""
        for comp in self.arch.components:
            self.holders[comp.name] = [p for p in (comp.holder(e.name) for e in self.tree.entries) if p is not None]
        # a component only some models of the family have (Gemma-4's audio tower) is absent where the tree
        # has none of its modules
        self.present = [c for c in self.arch.components if c.required or self.holders[c.name]]
        for comp in self.arch.components:
            for h in self.holders[comp.name]:
                other = self.by_name.get(h.holder)
                if other is not None:
                    raise ComponentOverlapError(
                        f"module {h.holder} matches the prefix of both {other.component} and {comp.name}",
                        where=self.who,
                        hint=_OVERLAP_HINT,
                    )
                self.by_name[h.holder] = h
                if h.layer is not None:
                    self.layer_counts[h.count_key] = max(self.layer_counts.get(h.count_key, 0), h.layer + 1)
        for name, h in self.by_name.items():
            parent = name.rpartition(".")[0]
            outer = self.holder_of(parent) if parent else None
            if outer is not None and outer.component != h.component:
                raise ComponentOverlapError(
                    f"{h.component} module {name} lies inside {outer.component} module {outer.holder}",
                    where=self.who,
                    hint=_OVERLAP_HINT,
                )

    def holder_of(self, name: str) -> Placement | None:
        """The holder that is ``name`` or contains it."""
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            holder = self.by_name.get(".".join(parts[:cut]))
            if holder is not None:
                return holder
        return None

    def lookup(self, holder: Placement, leaf: str) -> tuple[str, bool] | None:
        """(full name, is a bare parameter) of a declared leaf under a holder, if the tree has it."""
        name = f"{holder.holder}.{leaf}" if leaf else holder.holder
        if name in self.tree:
            return name, False
        if leaf and self.tree.param_shape(name) is not None:
            return name, True
        return None

    def stacks(self, comp: str) -> dict[str | None, int]:
        """Layer count per stack of a component (the key None for a component with one stack)."""
        return {(key.partition(".")[2] or None): n for key, n in self.layer_counts.items()
                if key.partition(".")[0] == comp}


__all__ = ["HolderRules", "Pick"]
