"""pluggy hook specifications. Every hook name starts with ``vlora_``; docs/hooks.md documents each one."""

from __future__ import annotations

import pluggy

from .architecture import ArchitectureSpec

PROJECT_NAME = "vlora"
ENTRY_POINT_GROUP = "vlora.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def vlora_architectures() -> list[ArchitectureSpec]:  # type: ignore[empty-body]
    """Return the architectures this plugin supports, as data.

    Called once per registry load. Each ``ArchitectureSpec`` names the ``model_type`` values it handles,
    where each component's modules are, which role each module plays, and bundled reference configs.
    """
