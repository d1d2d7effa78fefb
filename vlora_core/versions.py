"""Installed versions of vlora and the libraries it reports (``package_version``), and the core version
plugins are checked against."""

from __future__ import annotations

from importlib import metadata

CORE_DISTRIBUTION = "vlora"


def package_version(dist: str) -> str:
    """The installed version of a distribution, or ``"not installed"``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def core_version() -> str:
    return package_version(CORE_DISTRIBUTION)


__all__ = ["CORE_DISTRIBUTION", "core_version", "package_version"]
