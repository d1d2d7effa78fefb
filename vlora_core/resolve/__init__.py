"""spec × architecture × module tree → TargetPlan. Every validation rule lives here.

``resolve`` is pure: it reads the spec, the plugin's declared patterns and the module tree, and either
returns a plan or raises exactly one ``ResolutionError`` saying what is wrong, where, and how to fix it.
It never touches a live model.

The work is one ``Resolution`` per call, with a method per phase, in this order: the spec fits the
architecture; each component's holders (its layer modules, or its one module) are found and do not
overlap; the patterns of enabled components match this tree; layers are selected and unused layers
left out; the plugin's roles become targets; user patterns add and remove targets; the plan is built.
Warnings are collected as ``Diagnostic`` values on the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..cache import tree_for
from ..errors import UnsupportedModelError, UsageError
from ..infer import InferenceRefused, infer_architecture
from ..modeltree import ModuleTree
from ..plan import TargetPlan
from ..plugins import Registry, default_registry
from ..spec import VisionLoRASpec, load_spec, spec_from_data
from .resolution import Resolution


def _as_spec(spec: VisionLoRASpec | dict[str, Any] | str | Path) -> VisionLoRASpec:
    if isinstance(spec, VisionLoRASpec):
        return spec
    if isinstance(spec, dict):
        return spec_from_data(spec)
    if isinstance(spec, str | Path):
        return load_spec(spec)
    raise UsageError(f"cannot read a spec from a {type(spec).__name__}", hint="pass a VisionLoRASpec, dict or path")


def resolve(
    spec: VisionLoRASpec | dict[str, Any] | str | Path,
    model: Any = None,
    *,
    registry: Registry | None = None,
    infer: bool = False,
) -> TargetPlan:
    """Resolve a spec against a model into a validated ``TargetPlan``.

    ``model`` is a live ``nn.Module``, a ``PretrainedConfig``, a ``ModuleTree``, a bundled reference name,
    a directory or ``config.json`` path, or a Hub id (config only). When None, the spec's ``model:`` is used.
    A model whose ``model_type`` no installed plugin claims is read from its own structure (the plan says
    it was inferred); ``infer=True`` does that even where a plugin exists, to compare the two.
    """
    spec = _as_spec(spec)
    registry = registry or default_registry()
    if model is None:
        if spec.model is None:
            raise UsageError(
                "no model to resolve against",
                where=spec.source,
                hint="pass a model (--model REF on the command line) or set `model:` in the spec",
            )
        tree = tree_for(spec.model_ref(), registry, label=spec.model)
    else:
        tree = tree_for(model, registry)
    key = spec.architecture or tree.model_type
    if key is None:
        raise UsageError(
            "the model has no config.model_type to detect its architecture from",
            hint="set `architecture:` in the spec (see `vlora plugins` for the names)",
        )
    if infer:
        return _inferred(spec, tree, None)
    try:
        plugin, arch = registry.lookup(key, tree.config)
    except UnsupportedModelError as exc:
        if spec.architecture is not None:
            names = sorted({a.name for _, a in registry.architectures()})
            raise UnsupportedModelError(
                f"{spec.architecture!r} is no installed architecture or model_type (installed: {', '.join(names)})",
                where=spec.location("architecture"),
                hint="use one of those, or leave `architecture:` out to use the model's own model_type "
                f"({tree.model_type!r})",
            ) from None
        return _inferred(spec, tree, exc)
    return Resolution(spec, tree, plugin, arch).plan()


def _inferred(spec: VisionLoRASpec, tree: ModuleTree, unclaimed: UnsupportedModelError | None) -> TargetPlan:
    """The plan on an architecture read from the tree's structure (no plugin claimed it, or infer=True)."""
    try:
        inference = tree.inference or infer_architecture(tree)
    except InferenceRefused as refusal:
        if unclaimed is None:
            raise
        error = UnsupportedModelError(f"{unclaimed.message}; and {refusal.message}", hint=unclaimed.hint)
        error.inference_refused = refusal.reason
        raise error from None
    why = (f"no installed plugin handles model_type {tree.model_type!r}" if unclaimed is not None
           else "inference was asked for (infer=True)")
    resolution = Resolution(spec, tree, inference.plugin(), inference.architecture, inferred=why)
    if inference.unclassified:
        resolution.warn("inference-unclassified", f"inference could not place {', '.join(inference.unclassified)}: "
                        "they are never targeted (add them with target_modules_extra if you want them)")
    return resolution.plan()


__all__ = ["Resolution", "resolve"]
