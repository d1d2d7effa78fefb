"""The spec whose plan reproduces an adapter on disk (``vlora adapter spec``): its modules mapped onto the model
through their logical identity, then the one synthesis every importer uses too (``vlora_core.synthesis``)."""

from __future__ import annotations

from typing import Any

from ..diagnostics import Location
from ..errors import AdapterError
from ..plugins import Registry
from ..synthesis import AdapterSpec, synthesize
from ..vocabulary import ADAPTED, SAVED
from .inspect import Adapter
from .migrate import migration_map


def spec_for_adapter(adapter: Adapter, tree: Any, registry: Registry, *, model: str | None = None) -> AdapterSpec:
    """The spec whose plan on ``tree`` has exactly the adapter's targets (through each module's logical
    identity, so an adapter of an older layout works too), with ranks, alphas, layers, the projector mode
    and the modules saved in full (``synthesize``)."""
    if adapter.spec is None:
        raise AdapterError("no installed plugin places the adapter's modules, so no spec can describe them",
                           where=Location(file=adapter.path), hint="install the plugin of the adapter's model family")
    mapping = migration_map(adapter, tree)
    lora = {mapping[m.name]: (m.r or 0, m.lora_alpha or 0.0) for m in adapter.modules if m.kind == ADAPTED}
    full = [mapping[m.name] for m in adapter.modules if m.kind == SAVED]
    return synthesize(lora, full, tree, registry, adapter.spec, adapter.config, model=model,
                      origin=f"the adapter {adapter.path}")


__all__ = ["spec_for_adapter"]
