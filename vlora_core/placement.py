"""Where a module sits: ``Placement``, the one answer to "which component, role, stack, layer and leaf is this
name", and the ``*``-path rule that goes with it. Pure data; no torch.

An architecture places a name (``ArchitectureSpec.place``); resolve places the modules it picks, targets hold
their placement (``Target.placement``), and so do an adapter's modules; locks, migration, explanations,
pictures and optimizer groups read it instead of recomputing it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .vocabulary import TargetKey, layer_count_key


class Placement(NamedTuple):
    """A module's (or parameter's) place under an architecture's patterns.

    It unpacks as ``component, role, layer, stack, leaf, path`` (the order ``ArchitectureSpec.place`` has
    always returned). ``path`` is the holding module's name with the layer index written as ``*``; ``leaf`` is
    the name relative to the holding module (``""``: the holding module itself); ``role`` is None for a leaf
    no role names.
    """

    component: str
    role: str | None
    layer: int | None
    stack: str | None
    leaf: str
    path: str

    @property
    def holder(self) -> str:
        """The name of the holding module (a layer, or a component without layers)."""
        return self.path if self.layer is None else self.path.replace("*", str(self.layer), 1)

    @property
    def name(self) -> str:
        """The full name this placement stands for."""
        return f"{self.holder}.{self.leaf}" if self.leaf else self.holder

    @property
    def key(self) -> TargetKey:
        """The logical identity (component, role, stack, layer, leaf): the same on every layout of a family."""
        return TargetKey(self.component, self.role or "", self.stack, self.layer, self.leaf)

    @property
    def count_key(self) -> str:
        """The key of its stack of layers in ``TargetPlan.layer_counts``."""
        return layer_count_key(self.component, self.stack)

    def at(self, leaf: str, role: str | None) -> Placement:
        """The placement of ``leaf`` (with ``role``) under the same holding module."""
        return self._replace(leaf=leaf, role=role)


def path_pattern(path: str) -> re.Pattern[str]:
    """A regex matching the names of every layer of a ``*``-path, and of anything inside them."""
    return re.compile(re.escape(path).replace(r"\*", r"\d+") + r"(?:\.|$)")


__all__ = ["Placement", "path_pattern"]
