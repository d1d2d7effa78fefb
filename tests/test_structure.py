"""Layouts beyond one stack of layers: several stacks, a projector that is one module or a bare parameter,
and layers whose output the model never uses (the plugin's vlora_unused_layers hook)."""

from __future__ import annotations

import pytest
import torch
from tinyvlm import (
    ATTENTION,
    GLOBAL_LAYERS,
    LANGUAGE_LAYERS,
    VISION_LAYERS,
    FakePlugin,
    batch,
    make_registry,
    stacked_vision,
    tiny_architecture,
)

from vlora_core import (
    Component,
    EmptySelectionError,
    LayerSelectionError,
    PluginError,
    Registry,
    UnusedLayers,
    apply,
    hookimpl,
    resolve,
)


def _layers(plan, stack=None):
    return {t.layer for t in plan.targets if t.component == "vision" and t.stack == stack}


def test_stacks_are_selected_together_or_one_by_one(model):
    registry = make_registry(tiny_architecture(vision=stacked_vision()))
    plan = resolve({"finetune_language_layers": False}, model, registry=registry)
    assert _layers(plan, "vision") == set(range(VISION_LAYERS))
    assert _layers(plan, "vision_global") == set(range(GLOBAL_LAYERS))
    assert plan.layer_counts == {"vision.vision": VISION_LAYERS, "vision.vision_global": GLOBAL_LAYERS,
                                 "language": LANGUAGE_LAYERS}
    both = resolve({"vision": {"layers": {"last": 1}}}, model, registry=registry)
    assert _layers(both, "vision") == {VISION_LAYERS - 1} and _layers(both, "vision_global") == {GLOBAL_LAYERS - 1}
    one = resolve({"vision": {"layers": {"vision_global": [1], "vision": {"first": 2}}}}, model, registry=registry)
    assert _layers(one, "vision_global") == {1} and _layers(one, "vision") == {0, 1}
    only = resolve({"vision": {"layers": {"vision_global": [0]}}}, model, registry=registry)
    assert _layers(only, "vision") == set() and _layers(only, "vision_global") == {0}
    row = next(r for r in one.summary() if (r.component, r.role) == ("vision", "attention"))
    assert row.layers == "vision:0-1 vision_global:1"


@pytest.mark.parametrize(
    ("layers", "words"),
    [
        ({"vision_global": [5]}, f"layer 5 does not exist: TinyVLM vision vision_global has {GLOBAL_LAYERS} layers"),
        ({"globl": [0]}, "unknown stack 'globl': TinyVLM vision has stacks vision (4 layers), vision_global (2"),
        ([3], "layer 3 does not exist: TinyVLM vision vision_global has 2 layers"),
        ({"last": 3}, "last 3 layers asked, but TinyVLM vision vision_global has 2 layers"),
    ],
)
def test_stack_errors_name_the_stack(model, layers, words):
    registry = make_registry(tiny_architecture(vision=stacked_vision()))
    with pytest.raises(LayerSelectionError) as info:
        resolve({"vision": {"layers": layers}}, model, registry=registry)
    assert words in str(info.value)


def test_per_stack_selection_on_a_single_stack_is_an_error(model, registry):
    with pytest.raises(LayerSelectionError, match="has a single stack of layers"):
        resolve({"vision": {"layers": {"vision": [0]}}}, model, registry=registry)


def test_projector_that_is_one_module(model):
    arch = tiny_architecture(projector=Component(name="projector", prefix=r"projector\.linear_1",
                                                 roles={"projection": ("",)}))
    registry = make_registry(arch)
    plan = resolve({"finetune_projector": "lora", "finetune_vision_layers": False}, model, registry=registry)
    projector = [t for t in plan.targets if t.component == "projector"]
    assert [(t.name, t.leaf, t.layer) for t in projector] == [("projector.linear_1", "", None)]
    peft_model = apply(model, {"finetune_projector": "lora", "finetune_vision_layers": False}, registry=registry)
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == plan.trainable_params


def test_a_bare_parameter_goes_through_target_parameters(model):
    arch = tiny_architecture(projector=Component(name="projector", prefix=r"projector",
                                                 roles={"projection": ("linear_1", "scale")}))
    registry = make_registry(arch)
    spec = {"finetune_projector": "lora", "task": "vqa", "projector": {"r": 2}, "init_lora_weights": False}
    plan = resolve(spec, model, registry=registry)
    scale = next(t for t in plan.targets if t.name == "projector.scale")
    assert (scale.module_type, scale.kind, scale.in_features, scale.out_features) == ("Parameter", "parameter", 8, 8)
    assert scale.lora_params == 2 * (8 + 8)
    config = plan.to_lora_config()
    assert config.target_parameters == ["projector.scale"]
    assert "scale" not in config.target_modules
    assert list(config.rank_pattern.values()) == [2]
    peft_model = apply(model, spec, registry=registry)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == plan.trainable_params
    pixels, ids = batch()
    peft_model(pixels, ids).pow(2).mean().backward()
    assert all(p.grad is not None for p in trainable.values())


class UnusedPlugin(FakePlugin):
    """Says the last language layer's output is never used (like LLaVA's vision_feature_layer)."""

    def __init__(self, result=None, **kw) -> None:
        super().__init__(**kw)
        self.result = result
        self.calls: list[tuple[dict, dict]] = []

    @hookimpl
    def vlora_unused_layers(self, architecture, config, layer_counts):
        self.calls.append((config, layer_counts))
        if self.result is not None:
            return self.result
        return [UnusedLayers(component="language", layers=(layer_counts["language"] - 1,),
                             reason="feature_layer is -2")]


def test_unused_layers_are_left_out_with_a_warning(model):
    plugin = UnusedPlugin()
    registry = Registry.from_plugins(plugin, names=["fake"])
    plan = resolve({}, model, registry=registry)
    assert {t.layer for t in plan.targets if t.component == "language"} == set(range(LANGUAGE_LAYERS - 1))
    assert any("language layers 2 are left out" in w and "feature_layer is -2" in w for w in plan.warnings)
    config, counts = plugin.calls[-1]
    assert config["model_type"] == "tinyvlm" and counts["language"] == LANGUAGE_LAYERS
    forced = resolve({"include_unused_layers": True}, model, registry=registry)
    assert {t.layer for t in forced.targets if t.component == "language"} == set(range(LANGUAGE_LAYERS))
    assert any("no gradient" in w for w in forced.warnings)
    with pytest.raises(EmptySelectionError, match="layers the model never uses"):
        resolve({"task": "vqa", "language": {"layers": [2]}}, model, registry=registry)


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ([UnusedLayers(component="language", layers=(7,), reason="x")],
         r"names language layers \[7\], but the model has 3"),
        ([{"component": "language", "layers": [0], "why": "x"}], "vlora_unused_layers failed"),
    ],
)
def test_a_broken_unused_layers_hook_is_a_plugin_error(model, result, words):
    registry = Registry.from_plugins(UnusedPlugin(result=result), names=["fake"])
    with pytest.raises(PluginError, match=words):
        resolve({}, model, registry=registry)


def test_attention_only_model_parts_still_resolve(model):
    arch = tiny_architecture(language=Component(name="language", prefix=r"language\.layers\.(?P<layer>\d+)",
                                                roles={"attention": ATTENTION}))
    plan = resolve({"finetune_attention_modules": False}, model, registry=make_registry(arch))
    assert {t.component for t in plan.targets} == {"vision"}
    assert torch.is_grad_enabled()
