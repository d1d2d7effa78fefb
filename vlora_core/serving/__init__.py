"""Will the model users talk to be the one that was trained: what each serving engine (vLLM, SGLang) applies of
an adapter, per group of its modules, from facts derived per engine release (``engines``, ``check``)."""

from __future__ import annotations

from typing import Any

from .check import (
    AS_TRAINED,
    DROPPED,
    FLAG,
    GROUPS,
    REFUSED,
    RESCALED,
    SERVED,
    UNKNOWN,
    Finding,
    Item,
    ServeCheck,
    architecture_of,
    check_serving,
    items_of_adapter,
    items_of_plan,
)
from .engines import NAMES, RELEASES, EngineTable, engine_table


def serve_plan(plan: Any, tree: Any, engine: str, version: str | None = None, subject: str = "the plan") -> ServeCheck:
    """What ``engine`` would apply of the adapter ``plan`` trains (before training)."""
    settings = plan.lora_config_data() if plan.targets else {}
    return check_serving(items_of_plan(plan), engine_table(engine, version), tree.config, tree.model_type,
                         settings=settings, subject=subject)


def serve_adapter(adapter: Any, tree: Any, engine: str, version: str | None = None) -> ServeCheck:
    """What ``engine`` would apply of an adapter on disk (``adapters.read_adapter``)."""
    return check_serving(items_of_adapter(adapter), engine_table(engine, version), tree.config, tree.model_type,
                         settings=adapter.config, subject=adapter.path)


__all__ = ["AS_TRAINED", "DROPPED", "FLAG", "GROUPS", "NAMES", "REFUSED", "RELEASES", "RESCALED", "SERVED", "UNKNOWN",
           "EngineTable", "Finding", "Item", "ServeCheck", "architecture_of", "check_serving", "engine_table",
           "items_of_adapter", "items_of_plan", "serve_adapter", "serve_plan"]
