"""Structural inference against the built-in plugins, which are the ground truth: on every bundled reference
config, with every toggle combination (and the audio and cross-attention toggles where a model has them),
the plan read from the model's structure equals the plugin's plan: the same target names, components,
roles, layers, stacks and leaves, and the same fully trained modules. Each module tree is built once."""

from __future__ import annotations

import itertools

import pytest

from vlora_core import EmptySelectionError, default_registry, module_tree, resolve
from vlora_core.testing import relayout, vision_tower_layouts

TOGGLES = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules",
           "finetune_mlp_modules")
REFERENCES = [ref.name for _, _, ref in default_registry().references()]


def outcome(spec: dict, tree, **kw):
    try:
        plan = resolve(spec, tree, **kw)
    except EmptySelectionError:
        return "nothing to train"
    targets = sorted((t.name, t.component, t.role, t.layer, t.stack or "", t.leaf) for t in plan.targets)
    return targets, [m.name for m in plan.full_modules], plan.inferred is not None


def combinations(plan_components: set[str], roles: set[str]):
    extra = []
    if "audio" in plan_components:
        extra.append(("finetune_audio_layers", [True, False]))
    if "cross_attention" in roles:
        extra.append(("finetune_cross_attention", [True, False]))
    axes = [[True, False]] * 4 + [["frozen", "lora", "full"]] + [values for _, values in extra]
    names = [*TOGGLES, "finetune_projector", *(name for name, _ in extra)]
    for values in itertools.product(*axes):
        yield dict(zip(names, values, strict=True))


@pytest.mark.parametrize("name", REFERENCES)
def test_inference_equals_the_plugin_on_every_combination(name):
    registry = default_registry()
    tree = module_tree(name, registry)
    everything = resolve({"finetune_projector": "lora"}, tree)
    checked = 0
    for spec in combinations({t.component for t in everything.targets}, {t.role for t in everything.targets}):
        by_plugin, by_inference = outcome(spec, tree), outcome(spec, tree, infer=True)
        if by_plugin == "nothing to train":
            assert by_inference == by_plugin, spec
        else:
            assert by_inference[:2] == by_plugin[:2], spec
            assert (by_plugin[2], by_inference[2]) == (False, True)
        checked += 1
    assert checked >= 48


@pytest.mark.parametrize("name", ["llava-1.5-7b-hf", "paligemma-3b-pt-224", "gemma-3-4b-it"])
def test_inference_equals_the_plugin_on_older_layouts(name):
    from vlora_core.testing import reference_model

    model = reference_model(name)
    for layout, names in vision_tower_layouts(model).items():
        old = relayout(model, names)
        for spec in ({"finetune_projector": "lora"}, {"finetune_projector": "full", "task": "vqa"}):
            assert outcome(spec, old, infer=True)[:2] == outcome(spec, old)[:2], (layout, spec)


def test_inference_equals_the_plugin_on_qwen_s_older_layout():
    from vlora_core.testing import reference_model

    model = reference_model("Qwen2-VL-7B-Instruct")
    old = relayout(model, {"visual": "model.visual", "model": "model.language_model", "lm_head": "lm_head"})
    for spec in ({"finetune_projector": "lora"}, {"finetune_projector": "full", "task": "domain_adaptation"}):
        by_plugin, by_inference = outcome(spec, old), outcome(spec, old, infer=True)
        assert by_inference[:2] == by_plugin[:2]
        assert not any(name.startswith("model.visual") for name, *_ in by_plugin[0])  # the 4.46 names


def test_unused_vision_layers_are_left_out_by_inference_too():
    plan = resolve({}, "llava-1.5-7b-hf", infer=True)
    assert max(t.layer for t in plan.targets if t.component == "vision") == 22  # vision_feature_layer -2
    assert any(d.code == "unused-layers" for d in plan.diagnostics)


def test_a_model_no_plugin_claims_is_inferred_and_says_so():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from vlora_core import Registry

    config = Qwen2VLConfig(
        text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=128,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=3, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=2,
                           temporal_patch_size=2, spatial_merge_size=2, in_channels=3))
    model = Qwen2VLForConditionalGeneration(config)
    plan = resolve({"finetune_projector": "lora"}, model, registry=Registry())  # no plugin installed at all
    assert plan.inferred == "no installed plugin handles model_type 'qwen2_vl'"
    assert plan.to_dict()["inferred"] is True and plan.plugin == "vlora (inferred)"
    assert plan.table().startswith("inferred: no installed plugin handles model_type 'qwen2_vl'; the architecture")
    assert plan.layer_counts == {"vision": 3, "language": 2}
    assert {t.name for t in plan.targets if t.component == "projector"} == {"model.visual.merger.mlp.0",
                                                                            "model.visual.merger.mlp.2"}
    assert resolve({"finetune_projector": "lora"}, model).inferred is None  # the plugin, where installed


def test_a_model_that_is_not_a_vlm_is_refused_with_the_reason():
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlora_core import Registry, UnsupportedModelError

    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, vocab_size=32))
    with pytest.raises(UnsupportedModelError, match="no sub-model carries its vision config") as info:
        resolve({}, model, registry=Registry())
    assert "no installed plugin handles model_type 'llama'" in str(info.value)


def test_plan_infer_on_the_command_line(capsys):
    from vlora_core.cli import main

    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--infer"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("inferred: inference was asked for (infer=True); the architecture was read")
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--infer", "--json"]) == 0
    assert '"inferred": true' in capsys.readouterr().out
