"""Conformance kit for plugin authors: one call that checks a plugin against a tiny model.

Opt in from a plugin's ``conftest.py``::

    pytest_plugins = ["vlora_core.testing"]

and use the ``vlora_conformance`` fixture (or call ``check_plugin`` directly)::

    def test_conformance(vlora_conformance):
        vlora_conformance("my_plugin", tiny_model(), inputs=tiny_batch())

``check_plugin`` checks, and fails with one message saying what is wrong:

1. the plugin loads through its entry point (``vlora.plugins`` group), by entry-point or distribution name
   (a distribution's every entry point: each must load, and the one that handles the model is checked);
2. every architecture's patterns compile, and one of them handles the model's ``model_type``;
3. with every component and role switched on, every declared prefix and leaf matches the model
   (``PatternMatchError`` otherwise), components do not overlap, no Linear inside a component's layers is
   left without a role, and every target is a type LoRA can wrap;
4. ``apply`` makes exactly the planned parameters trainable, for the projector in ``lora`` and ``full`` mode;
5. a forward and backward pass works (when ``inputs`` are given): every trainable parameter gets a
   gradient, no base weight does;
6. every old layout in ``layouts`` (see ``relayout``) resolves to the same logical targets; a mapping that
   leaves every name as it is stands for the model's own layout (``vision_tower_layouts`` includes it).

``check_toggle_combinations`` resolves every combination of the four toggles and the projector modes
and compares each plan with the target names the test computed itself; ``relayout`` rebuilds a model
under an older transformers layout's module names.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch.nn as nn

from .apply import apply
from .errors import EmptySelectionError
from .layouts import VISION_TOWER_LAYOUTS, Layout
from .modeltree import build_meta_model, config_from_file
from .peft.rules import base_name
from .plan import TargetPlan
from .plugins import PluginInfo, Registry, default_registry
from .resolve import resolve

Inputs = Mapping[str, Any] | Callable[[nn.Module], Mapping[str, Any]] | None


class ConformanceError(AssertionError):
    """A plugin does not meet the contract; the message says which check and why."""


@dataclass
class ConformanceReport:
    """What ``check_plugin`` looked at, for plugin tests that want to assert more."""

    plugin: PluginInfo
    plans: dict[str, TargetPlan] = field(default_factory=dict)  # projector mode -> plan with everything on
    layouts: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


def _fail(check: str, message: str) -> None:
    raise ConformanceError(f"[{check}] {message}")


class _Relayout(nn.Module):
    """A root module that holds another model's submodules under other names; forward runs the original."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.config = getattr(model, "config", None)
        object.__setattr__(self, "_original", model)  # not registered: only the new names are visible

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._original(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        """What the model class provides (``base_model_prefix``, ``get_input_embeddings``, ...) comes from the
        original model, so libraries that read it (PEFT) see the same model under the new names."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = self.__dict__.get("_original")
            value = getattr(original, name) if original is not None else None
            if value is None or isinstance(value, nn.Module | nn.Parameter):  # modules only under the new names
                raise
            return value


def relayout(model: nn.Module, names: Mapping[str, str]) -> nn.Module:
    """The same model under another transformers layout's module names.

    ``names`` maps each new dotted name to the dotted name of a module (or a parameter) in ``model``.
    Missing intermediate containers are created as empty modules. Parameters are shared, not copied,
    and every parameter of ``model`` must be placed exactly once, so the result is faithful. Example,
    the transformers 4.46 names of a LLaVA::

        relayout(model, {"vision_tower.vision_model": "model.vision_tower",
                         "multi_modal_projector": "model.multi_modal_projector",
                         "language_model.model": "model.language_model",
                         "language_model.lm_head": "lm_head"})
    """
    root = _Relayout(model)
    for new, old in names.items():
        parent: nn.Module = root
        *path, leaf = new.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        try:
            parent.add_module(leaf, model.get_submodule(old))
        except AttributeError:  # a parameter held directly by a module (LLaVA-NeXT's image_newline)
            parent.register_parameter(leaf, model.get_parameter(old))
    placed = {id(p) for p in root.parameters()}
    missing = [n for n, p in model.named_parameters() if id(p) not in placed]
    if missing:
        raise ValueError(f"relayout leaves out parameters of the model, e.g. {missing[0]}; map every module")
    return root


def vision_tower_layouts(model: nn.Module) -> dict[str, dict[str, str]]:
    """``relayout`` maps to every transformers layout of a LLaVA-style model (``model.vision_tower``,
    ``model.multi_modal_projector``, ``model.language_model``, ``lm_head``: LLaVA, LLaVA-NeXT, PaliGemma,
    Gemma-3 and others), built from whichever layout ``model`` has, one per ``vlora_core.VISION_TOWER_LAYOUTS``
    entry: ``"4.46"`` (4.46 - 4.51), ``"4.52"`` (4.52 - 5.5) and ``"5.6"`` (5.6 and later).

    Extra parameters held by the inner model itself (LLaVA-NeXT's ``image_newline``) are carried along.
    """
    now = _current_layout(model)
    inner = model.get_submodule(now.root) if now.root else model
    own = [n for n, _ in inner.named_parameters(recurse=False)]
    maps = {}
    for layout in VISION_TOWER_LAYOUTS:
        names = {layout.vision_tower: now.vision_tower, layout.projector: now.projector,
                 layout.language_model: now.language_model, layout.lm_head: now.lm_head}
        names |= {".".join(filter(None, (layout.root, n))): ".".join(filter(None, (now.root, n))) for n in own}
        maps[layout.name] = names
    return maps


# Where the vision layers, the projector and the language layers are in each of those layouts, for tests
# that write out the expected target names themselves.
VISION_TOWER_PATHS: dict[str, tuple[str, str, str]] = {
    layout.name: (layout.vision_layers, layout.projector, layout.language_layers) for layout in VISION_TOWER_LAYOUTS
}


def _current_layout(model: nn.Module) -> Layout:
    """The entry of ``VISION_TOWER_LAYOUTS`` whose names ``model`` has (the newest that fits)."""
    names = {n for n, _ in model.named_modules()}
    for layout in reversed(VISION_TOWER_LAYOUTS):
        if {layout.vision_layers, layout.projector, layout.language_layers, layout.lm_head} <= names:
            return layout
    raise ValueError("the model has none of the LLaVA-style layouts of vlora_core.VISION_TOWER_LAYOUTS")


def current_vision_tower_layout(model: nn.Module) -> str:
    """Which of ``vision_tower_layouts``' names ``model`` has now: ``"4.52"`` or ``"5.6"``."""
    return _current_layout(model).name


def reference_model(name: str, registry: Registry | None = None) -> nn.Module:
    """A bundled reference config (``vlora models``) built into its model on the meta device: full size,
    no weights, no memory; for tests of shapes, counts and layouts."""
    _, _, reference = (registry or default_registry()).require_reference(name)
    return build_meta_model(config_from_file(reference.config_path))


def _find_plugins(plugin: str, registry: Registry) -> list[PluginInfo]:
    """Every loaded entry point named ``plugin`` or belonging to the distribution ``plugin`` (a distribution may
    register several); any of them failing to load fails the check."""
    for failure in registry.failures:
        if plugin in (failure.name, failure.distribution):
            which = f" (entry point {failure.name})" if failure.name != plugin else ""
            _fail("loads", f"plugin {plugin!r} failed to load{which}: {failure.reason}")
    found = [info for info in registry.plugins if plugin in (info.name, info.distribution)]
    if not found:
        installed = ", ".join(f"{p.name} ({p.distribution})" for p in registry.plugins) or "none"
        _fail("loads", f"no plugin {plugin!r} among the installed entry points ({installed}); is it pip-installed?")
    return found


def _everything(projector: str) -> dict[str, Any]:
    return {
        "finetune_vision_layers": True,
        "finetune_language_layers": True,
        "finetune_attention_modules": True,
        "finetune_mlp_modules": True,
        "finetune_projector": projector,
        "init_lora_weights": False,  # non-zero B, so every adapter gets a gradient in the backward check
        "r": 2,
    }


def _resolve_all(spec: dict[str, Any], model: nn.Module, registry: Registry, check: str) -> TargetPlan:
    try:
        plan = resolve(spec, model, registry=registry)
    except Exception as exc:
        _fail(check, f"{type(exc).__name__}: {exc}")
    unclassified = [d for d in plan.diagnostics if d.code == "unclassified-modules"]
    if unclassified:
        _fail("partition", unclassified[0].message)
    return plan


def _check_apply(plan: TargetPlan, model: nn.Module, spec: dict[str, Any], registry: Registry, inputs: Inputs):
    mode = spec["finetune_projector"]
    peft_model = apply(model, spec, registry=registry)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    count = sum(p.numel() for p in trainable.values())
    if count != plan.trainable_params:
        _fail("apply", f"projector {mode}: PEFT trains {count:,} parameters, the plan says {plan.trainable_params:,}")
    adapted = {base_name(n) for n in trainable if ".lora_" in n}
    module_names = {t.name for t in plan.module_targets}
    if not module_names <= adapted:
        _fail("apply", f"projector {mode}: no adapter on {sorted(module_names - adapted)[:3]}")
    if inputs is None:
        return
    batch = inputs(model) if callable(inputs) else inputs
    output = peft_model(**batch)
    loss = getattr(output, "loss", None)
    if loss is None:
        logits = output.logits if hasattr(output, "logits") else output
        loss = logits.float().pow(2).mean()
    loss.backward()
    missing = [n for n, p in trainable.items() if p.grad is None]
    if missing:
        _fail("backward", f"projector {mode}: no gradient reached {missing[:3]} (of {len(missing)})")
    leaked = [n for n, p in peft_model.named_parameters() if not p.requires_grad and p.grad is not None]
    if leaked:
        _fail("backward", f"base weights got gradients: {leaked[:3]}")


def _logical(plan: TargetPlan) -> list[tuple[Any, ...]]:
    return sorted((t.key.sort_key(), t.r, t.lora_params) for t in plan.targets)


def check_plugin(
    plugin: str,
    model: nn.Module,
    inputs: Inputs = None,
    *,
    layouts: Mapping[str, Mapping[str, str]] | None = None,
    registry: Registry | None = None,
) -> ConformanceReport:
    """Check ``plugin`` (entry-point or distribution name) against a tiny ``model``; see the module docstring.

    ``inputs``: keyword arguments for ``model(**inputs)`` (or a function of the model returning them) for
    the forward/backward check. ``layouts``: name -> ``relayout`` mapping of older transformers layouts.
    The model itself is never modified (each check works on a deep copy).
    """
    registry = registry or Registry.discover(disabled=[])
    infos = _find_plugins(plugin, registry)
    for arch in (a for i in infos for a in i.architectures):
        for comp in arch.components:
            try:
                re.compile(comp.prefix)
            except re.error as exc:
                _fail("patterns", f"{arch.name} {comp.name} prefix does not compile: {exc}")
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    as_dict = config.to_dict() if hasattr(config, "to_dict") else {}
    claiming = [i for i in infos if any(a.claims(model_type, as_dict) for a in i.architectures)]
    if not claiming:
        handled = sorted(mt for i in infos for a in i.architectures for mt in a.model_types)
        _fail("patterns", f"plugin {plugin!r} handles {handled}, not the model's model_type {model_type!r}")
    info = claiming[0]
    only = Registry(plugins=[info])
    report = ConformanceReport(plugin=info)
    arch = max((a for a in info.architectures if a.claims(model_type, as_dict)), key=lambda a: a.specificity)
    modes = ["lora", "full"] if arch.component("projector") else ["frozen"]
    for mode in modes:
        spec = _everything(mode)
        if not arch.component("vision"):
            spec["finetune_vision_layers"] = False
        if not arch.component("language"):
            spec["finetune_language_layers"] = False
        plan = _resolve_all(spec, model, only, "patterns")
        report.plans[mode] = plan
        _check_apply(plan, copy.deepcopy(model), spec, only, inputs)
    reference = _logical(report.plans[modes[0]])
    for name, names in (layouts or {}).items():
        if all(new == now for new, now in names.items()):  # the model's own layout (vision_tower_layouts has it)
            report.layouts[name] = reference
            continue
        old = relayout(copy.deepcopy(model), names)
        plan = _resolve_all(_everything(modes[0]), old, only, f"layout {name}")
        report.layouts[name] = _logical(plan)
        if report.layouts[name] != reference:
            diff = sorted(set(reference) ^ set(report.layouts[name]))[:3]
            _fail(f"layout {name}", f"resolves other logical targets than the current layout, e.g. {diff}")
        if plan.to_lora_config().target_modules == report.plans[modes[0]].to_lora_config().target_modules:
            _fail(f"layout {name}", "module names did not change: is the mapping a different layout?")
    return report


TOGGLES = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules", "finetune_mlp_modules")


def check_toggle_combinations(
    model: nn.Module,
    expected: Callable[[dict[str, Any]], set[str]],
    *,
    registry: Registry | None = None,
    projector_modes: tuple[str, ...] = ("frozen", "lora", "full"),
    extra: Mapping[str, list[Any]] | None = None,
) -> int:
    """Resolve every combination of the four toggles x projector modes (x ``extra`` values) and compare.

    ``expected(spec)`` returns the target names that spec must give, computed by the test from the model's
    config, independently of the plugin; each must be a module or parameter of ``model``. Where it returns
    nothing and the projector is not trained in full, resolve must raise ``EmptySelectionError``. Returns
    the number of combinations checked.
    """
    extra = dict(extra or {})
    # an expected name the model does not have is a mistake in the test, not a finding about the plugin
    existing = {n for n, _ in model.named_modules()} | {n for n, _ in model.named_parameters()}
    axes = [[True, False]] * len(TOGGLES) + [list(projector_modes)] + list(extra.values())
    names = [*TOGGLES, "finetune_projector", *extra]
    checked = 0
    for values in itertools.product(*axes):
        spec = {k: v for k, v in zip(names, values, strict=True) if v is not None}
        want = expected(spec)
        if not want <= existing:
            _fail("combinations", f"{spec}: the expected names {sorted(want - existing)[:3]} are not in the model")
        if not want and spec["finetune_projector"] != "full":
            try:
                resolve(spec, model, registry=registry)
            except EmptySelectionError:
                checked += 1
                continue
            _fail("combinations", f"{spec}: expected nothing to train, resolve found targets")
        got = {t.name for t in resolve(spec, model, registry=registry).targets}
        if got != want:
            _fail("combinations", f"{spec}: unexpected {sorted(got - want)[:3]}, missing {sorted(want - got)[:3]}")
        checked += 1
    return checked


@pytest.fixture
def vlora_conformance() -> Callable[..., ConformanceReport]:
    """The ``check_plugin`` function, as a fixture."""
    return check_plugin


__all__ = [
    "TOGGLES",
    "VISION_TOWER_PATHS",
    "ConformanceError",
    "ConformanceReport",
    "check_plugin",
    "check_toggle_combinations",
    "current_vision_tower_layout",
    "reference_model",
    "relayout",
    "vision_tower_layouts",
    "vlora_conformance",
]
