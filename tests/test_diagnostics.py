"""Diagnostics are data: errors and warnings carry a code, a location and a hint, and render to the text
users see; the spec answers what each toggle switches; plugins outside their declared core range are
reported by name and never imported."""

from __future__ import annotations

import sys

import pytest
from tinyvlm import install_plugin, make_registry, stacked_vision, tiny_architecture

from vlora_core import (
    Diagnostic,
    LayerSelectionError,
    Location,
    PluginError,
    Registry,
    SpecValidationError,
    UnusedLayers,
    VisionLoRASpec,
    hookimpl,
    load_spec,
    resolve,
)
from vlora_core.plugins import core_mismatch
from vlora_core.spec import spec_from_data


@pytest.mark.parametrize(("location", "text"), [
    (Location(file="a.yaml", line=3, field="vision.layers"), "a.yaml:3: vision.layers"),
    (Location(file="a.yaml", field="r"), "a.yaml: r"),
    (Location(file="a.yaml", line=1), "a.yaml:1"),
    (Location(field="vision.layers"), "vision.layers"),
    (Location(subject="plugin vlora-x (x)"), "plugin vlora-x (x)"),
])
def test_a_location_renders_as_before(location, text):
    assert location.render() == text


def test_an_error_is_one_diagnostic_rendered_from_its_fields(tmp_path, model, registry):
    path = tmp_path / "s.yaml"
    path.write_text("task: vqa\nlanguage:\n  layers: {last: 9}\n")
    with pytest.raises(LayerSelectionError) as info:
        resolve(load_spec(path), model, registry=registry)
    error = info.value
    (diag,) = error.diagnostics
    assert diag.code == "layer-selection" == LayerSelectionError.code
    assert diag.location == Location(file=str(path), line=3, field="language.layers")
    assert str(error) == f"{path}:3: language.layers: {error.message}\n  hint: {error.hint}"
    error.hint = "another hint"  # the text follows the fields; nothing is patched into args
    assert str(error).endswith("hint: another hint")


def test_a_spec_error_has_one_diagnostic_per_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("r: 0\nvision:\n  rank: 4\n")
    with pytest.raises(SpecValidationError) as info:
        load_spec(path)
    diags = info.value.diagnostics
    assert [(d.code, d.location.line, d.location.field) for d in diags] == [
        ("invalid-field", 1, "r"), ("unknown-key", 3, "vision.rank")]
    assert info.value.problems == [(d.where, d.message) for d in diags]


def test_warnings_are_diagnostics_with_codes(model, registry):
    plan = resolve({"finetune_vision_layers": False, "vision": {"layers": [0]}}, model, registry=registry)
    (diag,) = plan.diagnostics
    assert isinstance(diag, Diagnostic) and diag.severity == "warning" and diag.code == "ignored-layers"
    assert diag.location.field == "vision.layers" and plan.warnings == (diag.message,)


@pytest.mark.parametrize(("component", "fields", "enabled"), [
    ("vision", {"finetune_vision_layers": False}, False),
    ("language", {}, True),
    ("projector", {}, False),
    ("projector", {"finetune_projector": "full"}, True),
    ("audio", {}, True),  # unset: on, where a model has an audio tower
    ("audio", {"finetune_audio_layers": False}, False),
    ("video", {}, False),
])
def test_component_enabled(component, fields, enabled):
    assert VisionLoRASpec(**fields).component_enabled(component) is enabled


@pytest.mark.parametrize(("role", "fields", "enabled"), [
    ("attention", {"finetune_attention_modules": False}, False),
    ("mlp", {}, True),
    ("cross_attention", {"finetune_attention_modules": False}, False),
    ("cross_attention", {"finetune_attention_modules": False, "finetune_cross_attention": True}, True),
    ("projection", {"finetune_projector": "full"}, False),
    ("projection", {"finetune_projector": "lora"}, True),
])
def test_role_enabled(role, fields, enabled):
    assert VisionLoRASpec(**fields).role_enabled(role) is enabled


def test_rank_and_alpha_per_component():
    spec = VisionLoRASpec(r=8, lora_alpha=16, vision={"r": 4}, projector={"lora_alpha": 2})
    assert [spec.rank_for(c) for c in ("vision", "projector", "language")] == [4, 8, 8]
    assert [spec.alpha_for(c) for c in ("vision", "projector", "language")] == [16, 2, 16]


def test_with_task_replaces_the_tower_toggles_and_keeps_the_rest():
    spec = spec_from_data({"finetune_vision_layers": False, "r": 4, "task": "vqa"})
    ocr = spec.with_task("ocr")
    assert (ocr.task, ocr.finetune_vision_layers, ocr.finetune_language_layers, ocr.r) == ("ocr", True, True, 4)
    assert spec.with_task("domain_adaptation").finetune_language_layers is False


@pytest.mark.parametrize(("requires", "problem"), [
    (["vlora-core>=0.1,<0.2", "torch"], None),
    (["vlora-core>=0.2"], "needs vlora-core>=0.2, but vlora-core 0.1.0 is installed"),
    (["vlora-core<0.1"], "needs vlora-core<0.1, but vlora-core 0.1.0 is installed"),
    (["vlora-core"], None),
    (["vlora-core>=9; extra == 'dev'"], None),
    (["vlora>=0.2"], "needs vlora>=0.2, but vlora-core 0.1.0 is installed"),  # the old name, read the same way
    (["vlora>=0.1,<0.2"], None),
    (None, None),
])
def test_core_range(requires, problem):
    found = core_mismatch(requires, "0.1.0")
    assert (found is None) if problem is None else found.startswith(problem)


def test_a_plugin_for_another_core_is_reported_and_never_imported(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-future", "vlora_future", "raise SystemExit('imported!')\n")
    metadata = next(tmp_path.glob("*.dist-info")) / "METADATA"
    metadata.write_text(metadata.read_text() + "Requires-Dist: vlora-core>=99\n")
    registry = Registry.discover()
    (failure,) = [f for f in registry.failures if f.distribution == "vlora-future"]
    assert failure.reason.startswith("needs vlora-core>=99, but vlora-core ") and "vlora_future" not in sys.modules
    assert all(p.distribution != "vlora-future" for p in registry.plugins)


class StackedUnused:
    """Says the last layer of the ``vision_global`` stack is never used."""

    def __init__(self, stack: str | None) -> None:
        self.stack = stack

    @hookimpl
    def vlora_architectures(self):
        return [tiny_architecture(vision=stacked_vision())]

    @hookimpl
    def vlora_unused_layers(self, architecture, config, layer_counts):
        self.counts = dict(layer_counts)
        return [UnusedLayers(component="vision", stack=self.stack, layers=(1,), reason="test")]


def test_the_unused_layers_hook_names_a_layer_of_one_stack(model):
    plugin = StackedUnused("vision_global")
    plan = resolve({"task": "domain_adaptation"}, model, registry=Registry.from_plugins(plugin, names=["s"]))
    assert plugin.counts == {"vision.vision": 4, "vision.vision_global": 2, "language": 3} == plan.layer_counts
    kept = {(t.stack, t.layer) for t in plan.targets}
    assert ("vision_global", 1) not in kept and ("vision", 1) in kept and ("vision_global", 0) in kept
    assert [d.code for d in plan.diagnostics] == ["unused-layers"]
    assert plan.warnings[0].startswith("vision vision_global layers 1 are left out")


def test_an_unused_layer_of_a_stacked_component_must_name_its_stack(model):
    registry = Registry.from_plugins(StackedUnused(None), names=["s"])
    with pytest.raises(PluginError, match="vision has stacks vision, vision_global; name one with `stack`"):
        resolve({}, model, registry=registry)


def test_layer_counts_are_one_definition(model):
    plan = resolve({}, model, registry=make_registry(tiny_architecture(vision=stacked_vision())))
    assert plan.layer_counts == {"vision.vision": 4, "vision.vision_global": 2, "language": 3}
