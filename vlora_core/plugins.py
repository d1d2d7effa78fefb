"""Plugin registry: entry-point discovery, per-plugin load errors, conflicts, and disabling.

A plugin that fails to import or declares invalid data is recorded as a failure, by name, and the
others keep working. Two plugins claiming the same ``model_type`` is an error naming both, raised when
that model_type is looked up (and shown by ``vlora plugins``).
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy
from pydantic import ValidationError

from . import hookspecs
from .architecture import ArchitectureSpec, ReferenceModel, UnusedLayers, claim_text
from .diagnostics import see_docs
from .errors import ModelLoadError, PluginConflictError, PluginError, UnsupportedModelError
from .versions import CORE_DISTRIBUTION, LEGACY_DISTRIBUTION, core_version

DISABLE_ENV = "VLORA_DISABLE_PLUGINS"
SLOW_PLUGIN_SECONDS = 1.0  # a plugin that takes longer to load is named on every command (it slows each one)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin: where it comes from, what it declares, and its hooks."""

    name: str
    distribution: str
    version: str
    architectures: tuple[ArchitectureSpec, ...]
    manager: pluggy.PluginManager | None = field(default=None, compare=False, repr=False)
    load_seconds: float = field(default=0.0, compare=False)  # importing it and reading its architectures

    def implements(self, hook: str) -> bool:
        """Whether the plugin implements the hook ``hook`` (a ``vlora_*`` name)."""
        return self.manager is not None and bool(getattr(self.manager.hook, hook).get_hookimpls())

    def unused_layers(
        self, arch: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
    ) -> list[UnusedLayers]:
        """What the plugin's optional ``vlora_unused_layers`` hook says (nothing when it has none)."""
        if self.manager is None:
            return []
        try:
            results = self.manager.hook.vlora_unused_layers(
                architecture=arch, config=config, layer_counts=layer_counts
            )
            found = [UnusedLayers.model_validate(item) for result in results if result for item in result]
        except Exception as exc:
            raise PluginError(
                f"vlora_unused_layers failed: {type(exc).__name__}: {exc}",
                where=f"plugin {self.distribution} ({arch.name})",
                hint="fix the plugin, or disable it with " + DISABLE_ENV,
            ) from None
        for item in found:
            count = layer_counts.get(item.count_key)
            if count is None or any(not 0 <= i < count for i in item.layers):
                stacks = sorted(k.partition(".")[2] for k in layer_counts if k.startswith(f"{item.component}."))
                have = (f"{item.component} has stacks {', '.join(stacks)}; name one with `stack`" if stacks and
                        not item.stack else f"the model has {count or 0} {item.count_key.replace('.', ' ')} layers")
                raise PluginError(
                    f"vlora_unused_layers names {item.count_key.replace('.', ' ')} layers {list(item.layers)}, but "
                    f"{have}",
                    where=f"plugin {self.distribution} ({arch.name})",
                    hint="fix the plugin",
                )
        return found


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    name: str
    distribution: str
    reason: str


@dataclass
class Registry:
    """The installed plugins and what they declare. Build with ``Registry.discover()`` or ``from_plugins``."""

    plugins: list[PluginInfo] = field(default_factory=list)
    failures: list[PluginFailure] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def discover(cls, *, disabled: Iterable[str] | None = None) -> Registry:
        """Load every plugin registered under the ``vlora.plugins`` entry-point group.

        ``disabled`` (default: the comma-separated ``VLORA_DISABLE_PLUGINS`` environment variable) names
        entry points or distributions to skip.
        """
        if disabled is None:
            disabled = [p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()]
        off = set(disabled)
        registry = cls()
        for ep in sorted(metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            if ep.name in off or dist in off:
                registry.disabled.append(ep.name)
                continue
            mismatch = core_mismatch(ep.dist.requires if ep.dist else None)
            if mismatch:  # reported by name, never imported: a plugin for another core is not half-loaded
                registry.failures.append(PluginFailure(ep.name, dist, mismatch))
                continue
            start = time.perf_counter()
            try:
                module = ep.load()
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a broken plugin must not take the others
                # down, nor end the command: sys.exit() or KeyboardInterrupt at import is that plugin's failure
                registry.failures.append(
                    PluginFailure(ep.name, dist, f"import failed: {type(exc).__name__}: {exc}")
                )
                continue
            registry._add(module, name=ep.name, distribution=dist, version=version, start=start)
        return registry

    def slow_plugins(self, seconds: float = SLOW_PLUGIN_SECONDS) -> list[PluginInfo]:
        """Plugins that took longer than ``seconds`` to load: every command pays that time."""
        return [p for p in self.plugins if p.load_seconds > seconds]

    @classmethod
    def from_plugins(cls, *plugins: Any, names: Iterable[str] | None = None) -> Registry:
        """A registry of the given plugin objects/modules only (for tests and embedding)."""
        registry = cls()
        names = list(names) if names is not None else []
        for i, plugin in enumerate(plugins):
            name = names[i] if i < len(names) else getattr(plugin, "__name__", type(plugin).__name__)
            registry._add(plugin, name=name, distribution=name, version="0")
        return registry

    def _add(self, plugin: Any, *, name: str, distribution: str, version: str, start: float | None = None) -> None:
        start = time.perf_counter() if start is None else start
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        try:
            pm.register(plugin, name=name)
            unknown = _unknown_hooks(pm)
            if unknown:
                known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("vlora_")))
                self.failures.append(PluginFailure(
                    name, distribution, f"unknown hook {', '.join(unknown)} (misspelt? the hooks are: {known}); a "
                    "hook of a newer vlora is allowed with @hookimpl(optionalhook=True)"))
                return
            results = pm.hook.vlora_architectures()
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            self.failures.append(PluginFailure(name, distribution, f"{type(exc).__name__}: {exc}"))
            return
        archs: list[ArchitectureSpec] = []
        for result in results:
            items = result if isinstance(result, list | tuple) else [result]
            for item in items:
                try:
                    archs.append(
                        item if isinstance(item, ArchitectureSpec) else ArchitectureSpec.model_validate(item)
                    )
                except ValidationError as exc:
                    first = exc.errors()[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    self.failures.append(
                        PluginFailure(
                            name, distribution, f"invalid ArchitectureSpec: {loc}: {first['msg']}".rstrip(": ")
                        )
                    )
                    return
        if not archs:
            self.failures.append(PluginFailure(name, distribution, "vlora_architectures() returned nothing"))
            return
        self.plugins.append(PluginInfo(name, distribution, version, tuple(archs), manager=pm,
                                       load_seconds=time.perf_counter() - start))

    # --- queries ------------------------------------------------------------------------------------

    def architectures(self) -> list[tuple[PluginInfo, ArchitectureSpec]]:
        return [(p, a) for p in self.plugins for a in p.architectures]

    def conflicts(self) -> dict[str, list[tuple[PluginInfo, ArchitectureSpec]]]:
        """Claims made by more than one architecture with the same conditions (a model_type, plus the ``when``
        conditions where there are some) -> the (plugin, architecture) pairs making them."""
        claims: dict[tuple[str, tuple[tuple[str, Any], ...]], list[tuple[PluginInfo, ArchitectureSpec]]] = {}
        for plugin, arch in self.architectures():
            for model_type in arch.model_types:
                claims.setdefault((model_type, tuple(sorted(arch.when.items()))), []).append((plugin, arch))
        return {claim_text(mt, dict(when)): owners for (mt, when), owners in claims.items() if len(owners) > 1}

    def lookup(self, key: str, config: dict[str, Any] | None = None) -> tuple[PluginInfo, ArchitectureSpec]:
        """The architecture that claims a model: ``key`` is its model_type (or an architecture's name), and
        ``config`` (the model's config as a dict) decides between architectures that add ``when`` conditions:
        the most specific one whose conditions all hold claims it; two of equal specificity are a conflict."""
        config = config or {}
        typed = [(p, a) for p, a in self.architectures() if key in a.model_types]
        top = 0
        if typed:
            owners = [(p, a) for p, a in typed if a.claims(key, config)]
            if not owners:
                offers = "; ".join(f"{p.distribution} ({a.name}): {a.describe_claim()}" for p, a in typed)
                raise UnsupportedModelError(
                    f"no installed architecture claims this {key} model ({offers})",
                    hint="install the plugin for this variant, or write one: " + see_docs("plugin-tutorial"),
                )
            top = max(a.specificity for _, a in owners)
            owners = [(p, a) for p, a in owners if a.specificity == top]
        else:
            owners = [(p, a) for p, a in self.architectures() if key == a.name]
        if len(owners) > 1:
            who = " and ".join(f"{p.distribution} ({a.name})" for p, a in owners)
            names = list(dict.fromkeys(p.name for p, _ in owners))
            hint = (f"plugin {names[0]} declares it in two architectures: fix the plugin" if len(names) == 1 else
                    _disable_hint(names))
            equal = f" with equal specificity ({top} config condition{'s' if top != 1 else ''} each)" if top else ""
            raise PluginConflictError(f"model_type {key!r} is claimed by {who}{equal}",
                                      where=f"plugins {', '.join(names)}", hint=hint)
        if owners:
            return owners[0]
        covered = "; ".join(
            f"{p.distribution}: {', '.join(a.model_types)}" for p, a in self.architectures()
        ) or "none"
        failed = "".join(f"\n  plugin {f.name} failed to load: {f.reason}" for f in self.failures)
        raise UnsupportedModelError(
            f"no installed plugin handles model_type {key!r} (installed: {covered}){failed}",
            hint="install the plugin for this family (`vlora plugins` lists what is installed), or write one: "
            + see_docs("plugin-tutorial"),
        )

    def references(self) -> list[tuple[PluginInfo, ArchitectureSpec, ReferenceModel]]:
        return [(p, a, r) for p, a in self.architectures() for r in a.references]

    def find_reference(self, ref: str) -> tuple[PluginInfo, ArchitectureSpec, ReferenceModel] | None:
        """The bundled reference named (or Hub id) ``ref``, or one a re-upload under another owner stands for
        (``unsloth/Qwen2-VL-7B-Instruct``, its ``-bnb-4bit`` variants: the same config.json); two plugins
        bundling it is a conflict, not a silent take-over."""
        key = ref.lower()
        found = [item for item in self.references() if key in (item[2].name.lower(), item[2].hub_id.lower())]
        if not found and "/" in key and not Path(ref).exists():
            tail = _without_variant(key.rpartition("/")[2])
            found = [item for item in self.references()
                     if tail in (item[2].name.lower(), item[2].hub_id.lower().rpartition("/")[2])]
        owners = {item[0].distribution for item in found}
        if len(owners) > 1:
            names = sorted({item[0].name for item in found})
            raise PluginConflictError(f"the reference {ref!r} is bundled by {' and '.join(sorted(owners))}",
                                      where=f"plugins {', '.join(names)}", hint=_disable_hint(names))
        return found[0] if found else None

    def require_reference(self, ref: str) -> tuple[PluginInfo, ArchitectureSpec, ReferenceModel]:
        found = self.find_reference(ref)
        if found is None:
            names = ", ".join(r.name for _, _, r in self.references()) or "none installed"
            close = self.close_references(ref)
            raise ModelLoadError(f"no bundled reference config named {ref!r}"
                                 + (f" (did you mean {' or '.join(close)}?)" if close else f" (bundled: {names})"),
                                 hint="`vlora models` lists them")
        return found

    def close_references(self, ref: str) -> list[str]:
        """Bundled reference names close to ``ref`` (its part after the owner), for "did you mean"."""
        names = {r.name.lower(): r.name for _, _, r in self.references()}
        tail = _without_variant(ref.lower().rpartition("/")[2])
        close = [n for n in names if n.startswith(tail) or tail.startswith(n)] if len(tail) >= 4 else []
        close += difflib.get_close_matches(tail, list(names), n=3, cutoff=0.75)
        return [names[n] for n in dict.fromkeys(close)][:3]


# suffixes of re-uploads of a published checkpoint under another owner (quantized copies keep the config)
_VARIANTS = ("-unsloth-bnb-4bit", "-bnb-4bit", "-bnb-8bit", "-unsloth")


def _without_variant(name: str) -> str:
    for suffix in _VARIANTS:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def core_mismatch(requires: Iterable[str] | None, version: str | None = None) -> str | None:
    """Why a plugin whose distribution requires ``requires`` cannot run on this core (None when it can).

    The version policy: a plugin declares the core range it works with as a dependency on the ``vlora-core``
    distribution (e.g. ``vlora-core>=0.1,<0.2``; the old name ``vlora`` is read the same way); a plugin that
    declares none is taken to work with any."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    version = version or core_version()
    try:
        Version(version)
    except InvalidVersion:  # vlora itself is not installed (run from a source tree): nothing to check against
        return None
    for text in requires or ():
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.name.lower() not in (CORE_DISTRIBUTION, LEGACY_DISTRIBUTION) or (
                req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            return (f"needs {req.name}{req.specifier}, but {CORE_DISTRIBUTION} {version} is installed; "
                    "install a version of the plugin made for this vlora, or a vlora-core in that range")
    return None


def _disable_hint(entry_points: list[str]) -> str:
    return "uninstall the one you do not want, or disable it: " + " or ".join(
        f"{DISABLE_ENV}={n}" for n in entry_points)


def default_registry(*, reload: bool = False) -> Registry:
    """The registry of installed plugins, discovered once per process (``reload=True`` to rediscover)."""
    global _DEFAULT
    if reload or _DEFAULT is None:
        _DEFAULT = Registry.discover()
    return _DEFAULT


_DEFAULT: Registry | None = None


def loaded_registry() -> Registry | None:
    """The default registry if this process has discovered it already (None otherwise; discovers nothing)."""
    return _DEFAULT


def _unknown_hooks(pm: pluggy.PluginManager) -> list[str]:
    """Hook implementations that match no hook specification (pluggy's own check), unless marked optional."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        return sorted(name for name, caller in vars(pm.hook).items()
                      if not caller.has_spec() and any(not impl.optionalhook for impl in caller.get_hookimpls()))
    return []


__all__ = ["DISABLE_ENV", "SLOW_PLUGIN_SECONDS", "PluginFailure", "PluginInfo", "Registry", "core_mismatch",
           "default_registry", "loaded_registry"]
