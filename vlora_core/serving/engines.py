"""What each serving engine applies of a LoRA adapter, as data per engine version: the tables
``scripts/derive_serving.py`` derives from the engine's own wheel (``data/<engine>-<version>.json``), each fact
with the file it was read from. A new engine release is a new table (and a failing test), not a code change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..errors import UsageError
from ..versions import NAMES, ToolVersion

# newest first; each release is one table derived from its wheel (``facts["table"]``), the same kind of entry as
# the other tools' formats (``interop.versions``)
RELEASES: dict[str, tuple[ToolVersion, ...]] = {
    "vllm": (ToolVersion("vllm", "0.33.0", "the vllm-0.33.0 wheel's sources",
                         facts={"table": "vllm-0.33.0.json"}),),
    "sglang": (ToolVersion("sglang", "0.5.23", "the sglang-0.5.23 wheel's sources",
                           facts={"table": "sglang-0.5.23.json"}),),
}


@dataclass(frozen=True)
class EngineTable:
    """One engine release's derived facts: rules for every adapter, and per model class what it applies."""

    engine: str
    version: str
    source: str  # the wheel it was derived from
    facts: dict[str, dict[str, Any]]
    models: dict[str, dict[str, Any]]
    text_models: dict[str, dict[str, Any]] = field(default_factory=dict)
    previously_supported: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{NAMES[self.engine]} {self.version}"

    def fact(self, key: str) -> Any:
        return self.facts[key]["value"]

    def where(self, key: str) -> str:
        return self.facts[key]["read_from"]



@cache
def _load(table: str) -> EngineTable:
    text = resources.files(__package__).joinpath("data", table).read_text()
    data = json.loads(text)
    return EngineTable(engine=data["engine"], version=data["version"], source=data["source"], facts=data["facts"],
                       models=data["models"], text_models=data.get("text_models", {}),
                       previously_supported=data.get("previously_supported", {}))


def engine_table(engine: str, version: str | None = None) -> EngineTable:
    """The table of ``engine`` (``vllm``/``sglang``) for ``version`` ("0.33", "0.33.0"; default: the newest)."""
    if engine not in RELEASES:
        raise UsageError(f"--serve {engine!r}: vlora knows the serving engines " + ", ".join(sorted(RELEASES)),
                         hint="use --serve vllm or --serve sglang")
    known = RELEASES[engine]
    if version is None:
        return _load(known[0].facts["table"])
    found = next((v for v in known if v.matches(version)), None)
    if found is None:
        raise UsageError(f"--engine-version {version!r}: vlora has {NAMES[engine]}'s facts for "
                         + ", ".join(v.versions for v in known) + " only",
                         hint="leave --engine-version out for the newest; facts for another release are derived "
                         "from its wheel with scripts/derive_serving.py")
    return _load(found.facts["table"])


__all__ = ["NAMES", "RELEASES", "EngineTable", "engine_table"]
