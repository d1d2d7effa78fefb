"""Installed versions of vlora and the libraries it reports (``package_version``), the core version
plugins are checked against, and ``ToolVersion``: what one range of another tool's or a serving engine's
releases does, as data (``interop.versions`` and ``serving.engines`` keep one per range)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

CORE_DISTRIBUTION = "vlora-core"
# the name this project's distribution had before 0.1 shipped under its own: ``vlora`` on PyPI is an unrelated
# project. A third-party plugin that still requires ``vlora>=...`` is checked against this core's version
LEGACY_DISTRIBUTION = "vlora"


def package_version(dist: str) -> str:
    """The installed version of a distribution, or ``"not installed"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def core_version() -> str:
    return package_version(CORE_DISTRIBUTION)


# the other tools and serving engines vlora writes for or reads facts of, as people name them
NAMES = {"peft": "PEFT", "unsloth": "Unsloth", "llamafactory": "LLaMA-Factory", "swift": "ms-swift",
         "axolotl": "axolotl",
         "vllm": "vLLM", "sglang": "SGLang"}


@dataclass(frozen=True)
class ToolVersion:
    """What one range of a tool's releases does."""

    tool: str
    versions: str  # the range, as users say it: "4.x", "3.x"
    read_from: str  # the file(s) the facts were read from
    proven: str | None = None  # the release vlora's output was handed to and checked against; None: read only
    facts: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``ms-swift 4.x (proven on 4.6.0)`` or ``... (read from X, not run)``, for file headers."""
        how = f"proven on {self.proven}" if self.proven else f"read from {self.read_from}, not run"
        return f"{NAMES.get(self.tool, self.tool)} {self.versions} ({how})"

    def matches(self, requested: str) -> bool:
        """Whether ``requested`` ("3", "3.x", "3.5.1"; "0.33" for "0.33.0") falls in this range: the parts both
        name agree."""
        wanted = requested.strip().removeprefix("v").removesuffix(".x").split(".")
        return all(a == b for a, b in zip(self.versions.removesuffix(".x").split("."), wanted, strict=False))


__all__ = ["CORE_DISTRIBUTION", "LEGACY_DISTRIBUTION", "NAMES", "ToolVersion", "core_version", "package_version"]
