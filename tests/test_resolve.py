"""Every validation rule of resolve, on a tiny plain-torch VLM described by an in-test plugin."""

from __future__ import annotations

import itertools

import pytest
import torch.nn as nn
from tinyvlm import ATTENTION, LANGUAGE_LAYERS, MLP_LEAVES, VISION_LAYERS, make_registry, tiny_architecture

from vlora_core import (
    Component,
    ComponentOverlapError,
    EmptySelectionError,
    LayerSelectionError,
    PatternMatchError,
    ResolutionErrors,
    SpecArchitectureMismatch,
    UnsupportedModuleTypeError,
    UsageError,
    UserPatternError,
    resolve,
)
from vlora_core.spec import spec_from_data


def expected(vision: bool, language: bool, attention: bool, mlp: bool, projector: str) -> set[str]:
    """The target names, written out from the model's shape, independently of the resolver."""
    leaves = (ATTENTION if attention else ()) + (MLP_LEAVES if mlp else ())
    names = set()
    for tower, on, n in (("vision", vision, VISION_LAYERS), ("language", language, LANGUAGE_LAYERS)):
        if on:
            names |= {f"{tower}.layers.{i}.{leaf}" for i in range(n) for leaf in leaves}
    if projector == "lora":
        names |= {"projector.linear_1", "projector.linear_2"}
    return names


COMBOS = list(itertools.product([True, False], [True, False], [True, False], [True, False], ["frozen", "lora", "full"]))


@pytest.mark.parametrize(("vision", "language", "attention", "mlp", "projector"), COMBOS)
def test_every_toggle_combination(model, registry, vision, language, attention, mlp, projector):
    spec = dict(finetune_vision_layers=vision, finetune_language_layers=language,
                finetune_attention_modules=attention, finetune_mlp_modules=mlp, finetune_projector=projector)
    want = expected(vision, language, attention, mlp, projector)
    if not want and projector != "full":
        with pytest.raises(EmptySelectionError):
            resolve(spec, model, registry=registry)
        return
    plan = resolve(spec, model, registry=registry)
    assert {t.name for t in plan.targets} == want
    assert [m.name for m in plan.full_modules] == (["projector"] if projector == "full" else [])


def test_target_details(model, registry):
    plan = resolve({"r": 4, "vision": {"r": 2, "lora_alpha": 8}}, model, registry=registry)
    by_name = {t.name: t for t in plan.targets}
    up = by_name["vision.layers.3.mlp.up"]
    assert (up.component, up.role, up.layer, up.leaf, up.module_type) == ("vision", "mlp", 3, "mlp.up", "Linear")
    assert (up.in_features, up.out_features, up.r, up.lora_alpha) == (8, 16, 2, 8)
    assert up.lora_params == 2 * (8 + 16)
    q = by_name["language.layers.0.attn.q"]
    assert (q.r, q.lora_alpha, q.lora_params) == (4, 16, 4 * (8 + 8))


def test_layer_selection_lists_and_ranges(model, registry):
    plan = resolve({"vision": {"layers": [0, 2]}, "language": {"layers": {"last": 1}}}, model, registry=registry)
    assert {t.layer for t in plan.targets if t.component == "vision"} == {0, 2}
    assert {t.layer for t in plan.targets if t.component == "language"} == {LANGUAGE_LAYERS - 1}
    plan = resolve({"vision": {"layers": {"first": 1}}}, model, registry=registry)
    assert {t.layer for t in plan.targets if t.component == "vision"} == {0}


def test_layer_out_of_range_names_it_and_the_count(model, registry):
    with pytest.raises(LayerSelectionError) as info:
        resolve({"vision": {"layers": [1, 99]}}, model, registry=registry)
    assert "layer 99 does not exist" in str(info.value)
    assert f"has {VISION_LAYERS} layers (0-{VISION_LAYERS - 1})" in str(info.value)
    assert info.value.where == "vision.layers"
    with pytest.raises(LayerSelectionError, match=f"has {LANGUAGE_LAYERS} layers"):
        resolve({"language": {"layers": {"last": 9}}}, model, registry=registry)


def test_layers_of_a_disabled_tower_warn(model, registry):
    plan = resolve({"finetune_vision_layers": False, "vision": {"layers": [0]}}, model, registry=registry)
    assert any("vision.layers is set but finetune_vision_layers is false" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"finetune_vision_layers": False, "finetune_language_layers": False},
         "finetune_vision_layers and finetune_language_layers are both false"),
        ({"finetune_attention_modules": False, "finetune_mlp_modules": False},
         "finetune_attention_modules and finetune_mlp_modules are both false"),
        ({"exclude_modules": [".*"]}, "exclude_modules removed every remaining target"),
    ],
)
def test_empty_selection_says_why(model, registry, spec, words):
    with pytest.raises(EmptySelectionError) as info:
        resolve(spec, model, registry=registry)
    assert words in str(info.value)


def test_user_patterns(model, registry):
    plan = resolve({"finetune_language_layers": False, "target_modules_extra": [r"language\.layers\.0\.attn\.q"],
                    "exclude_modules": [r"vision\.layers\.[0-2]\..*"]}, model, registry=registry)
    names = {t.name for t in plan.targets}
    assert "language.layers.0.attn.q" in names
    assert not any(n.startswith(("vision.layers.0.", "vision.layers.1.", "vision.layers.2.")) for n in names)
    extra = next(t for t in plan.targets if t.name == "language.layers.0.attn.q")
    assert (extra.component, extra.role, extra.layer, extra.leaf) == ("language", "other", 0, "attn.q")


@pytest.mark.parametrize(
    ("spec", "error", "words", "where"),
    [
        ({"target_modules_extra": [r"nothing\.here"]}, UserPatternError, "matches no module",
         "target_modules_extra[0]"),
        ({"exclude_modules": ["x", r"vision\.layers\.0\.attn\.q", "nope"]}, ResolutionErrors,  # x and nope
         "matches none of the", "exclude_modules[0]"),
        ({"target_modules_extra": ["lm_head"]}, ComponentOverlapError, "lies in no component",
         "target_modules_extra[0]"),
        ({"target_modules_extra": [r"vision\.layers\.0\.norm"]}, UnsupportedModuleTypeError,
         "a LayerNorm, which LoRA cannot wrap", "target_modules_extra[0]"),
        ({"finetune_projector": "full", "target_modules_extra": [r"projector\.linear_1"]}, ComponentOverlapError,
         "inside the fully trained projector", "target_modules_extra[0]"),
        ({"finetune_cross_attention": True}, SpecArchitectureMismatch, "has no cross-attention",
         "finetune_cross_attention"),
    ],
)
def test_user_errors_name_the_field(model, registry, spec, error, words, where):
    with pytest.raises(error) as info:
        resolve(spec, model, registry=registry)
    assert words in str(info.value)
    assert info.value.where == where


def test_errors_point_at_the_spec_file_line(model, registry, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("r: 8\nlanguage:\n  layers: [7]\n")
    with pytest.raises(LayerSelectionError) as info:
        resolve(path, model, registry=registry)
    assert str(info.value).startswith(f"{path}:3: language.layers: layer 7 does not exist")


def test_stale_plugin_pattern_is_reported_with_the_transformers_version(model):
    arch = tiny_architecture(language=Component(
        name="language", prefix=r"language\.layers\.(?P<layer>\d+)",
        roles={"attention": ATTENTION, "mlp": ("mlp.up", "mlp.gate")}))
    with pytest.raises(PatternMatchError) as info:
        resolve({}, model, registry=make_registry(arch))
    text = str(info.value)
    assert "language mlp leaf 'mlp.gate' matches no module or parameter under language.layers.*" in text
    assert "transformers " in text and "plugin fake (tiny)" in text
    # a disabled component's patterns are not checked
    assert resolve({"finetune_language_layers": False}, model, registry=make_registry(arch)).targets


def test_prefix_matching_nothing(model):
    arch = tiny_architecture(vision=Component(name="vision", prefix=r"visual\.blocks\.(?P<layer>\d+)",
                                              roles={"mlp": MLP_LEAVES}))
    with pytest.raises(PatternMatchError, match=r"vision prefix 'visual\\\\.blocks"):
        resolve({}, model, registry=make_registry(arch))


def test_non_lora_module_declared_by_a_plugin(model):
    arch = tiny_architecture(vision=Component(name="vision", prefix=r"vision\.layers\.(?P<layer>\d+)",
                                              roles={"attention": ATTENTION, "mlp": ("mlp.up", "norm")}))
    with pytest.raises(UnsupportedModuleTypeError, match=r"vision\.layers\.0\.norm is a LayerNorm"):
        resolve({}, model, registry=make_registry(arch))


def test_overlapping_components(model):
    arch = tiny_architecture(projector=Component(name="projector", prefix=r"vision\.layers\.0",
                                                 roles={"projection": ("mlp.up",)}))
    with pytest.raises(ComponentOverlapError, match="matches the prefix of both vision and projector"):
        resolve({}, model, registry=make_registry(arch))
    arch = tiny_architecture(projector=Component(name="projector", prefix=r"vision\.layers\.0\.mlp",
                                                 roles={"projection": ("up",)}))
    with pytest.raises(ComponentOverlapError, match=r"lies inside vision module vision\.layers\.0"):
        resolve({}, model, registry=make_registry(arch))


def test_unclassified_linear_inside_a_layer_warns(model):
    arch = tiny_architecture(vision=Component(name="vision", prefix=r"vision\.layers\.(?P<layer>\d+)",
                                              roles={"attention": ATTENTION, "mlp": ("mlp.up",)}))
    plan = resolve({}, model, registry=make_registry(arch))
    assert any("gives no role to vision.layers.*.mlp.down" in w for w in plan.warnings)


def test_component_missing_from_architecture(model):
    arch = tiny_architecture(projector=None)
    registry = make_registry(arch)
    with pytest.raises(SpecArchitectureMismatch, match="has no projector component"):
        resolve({"finetune_projector": "lora"}, model, registry=registry)
    assert resolve({}, model, registry=registry).targets


def test_model_required(registry):
    with pytest.raises(UsageError, match="no model to resolve against"):
        resolve({}, None, registry=registry)
    with pytest.raises(UsageError, match="cannot read a model from a int"):
        resolve({}, 3, registry=registry)


def test_model_without_model_type_needs_architecture(registry):
    bare = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(UsageError, match="set `architecture:`"):
        resolve({}, bare, registry=registry)


def test_resolve_does_not_touch_the_model(model, registry):
    before = [(n, type(m)) for n, m in model.named_modules()]
    resolve(spec_from_data({"finetune_projector": "full"}), model, registry=registry)
    assert [(n, type(m)) for n, m in model.named_modules()] == before
    assert all(p.requires_grad for p in model.parameters())
