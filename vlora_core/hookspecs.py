"""pluggy hook specifications. Every hook name starts with ``vlora_``; docs/hooks.md documents each one."""

from __future__ import annotations

from typing import Any

import pluggy

from .architecture import ArchitectureSpec, UnusedLayers

PROJECT_NAME = "vlora"
ENTRY_POINT_GROUP = "vlora.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def vlora_architectures() -> list[ArchitectureSpec]:
    """Return the architectures this plugin supports, as data.

    Called once per registry load. Each ``ArchitectureSpec`` names the ``model_type`` values it handles,
    where each component's modules are, which role each module plays, and bundled reference configs.
    """


@hookspec
def vlora_unused_layers(
    architecture: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
) -> list[UnusedLayers] | None:
    """Name layers whose output the model never uses, so the plan can leave them out (optional hook).

    Called only on the plugin that owns ``architecture``, once per resolve, with the model's config as a
    dict (``config.to_dict()``; empty when the model has none) and the number of layers per component as
    found in the module tree. Return None (or nothing) when every layer is used. Adapters on unused
    layers get no gradient; resolve leaves them out with a warning unless the spec sets
    ``include_unused_layers: true``.
    """
