"""Installed versions of vlora and the libraries it reports (``package_version``), and the core version
plugins are checked against."""

from __future__ import annotations

from importlib import metadata

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


__all__ = ["CORE_DISTRIBUTION", "LEGACY_DISTRIBUTION", "core_version", "package_version"]
