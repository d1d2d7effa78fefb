"""The Qwen2-VL / Qwen2.5-VL plugin: exact target sets, both layouts, full-size counts, apply + backward."""

from __future__ import annotations

import json

import pytest
import torch
from qwen_tiny import OLD_LAYOUT, image_batch, old_layout, tiny_config, tiny_model

from vlora_core import LayerSelectionError, apply, default_registry, resolve
from vlora_core.testing import check_toggle_combinations, reference_model

VISION_LEAVES = {
    "qwen2_vl": {"attention": ["attn.qkv", "attn.proj"], "mlp": ["mlp.fc1", "mlp.fc2"]},
    "qwen2_5_vl": {"attention": ["attn.qkv", "attn.proj"], "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]},
}
LANGUAGE_LEAVES = {
    "attention": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"],
    "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
}
NEW = {"vision": "model.visual.blocks", "merger": "model.visual.merger", "language": "model.language_model.layers"}
OLD = {"vision": "visual.blocks", "merger": "visual.merger", "language": "model.layers"}


def expected(family, config, layout, vision, language, attention, mlp, projector) -> set[str]:
    """Target names written out from the config's layer counts, independently of the plugin and resolver."""
    roles = [r for r, on in (("attention", attention), ("mlp", mlp)) if on]
    names = set()
    if vision:
        names |= {f"{layout['vision']}.{i}.{leaf}" for i in range(config.vision_config.depth)
                  for r in roles for leaf in VISION_LEAVES[family][r]}
    if language:
        names |= {f"{layout['language']}.{i}.{leaf}" for i in range(config.text_config.num_hidden_layers)
                  for r in roles for leaf in LANGUAGE_LEAVES[r]}
    if projector == "lora":
        names |= {f"{layout['merger']}.mlp.0", f"{layout['merger']}.mlp.2"}
    return names


@pytest.mark.parametrize("old", [False, True], ids=["layout-4.52+", "layout-4.46"])
def test_every_combination_gives_the_exact_module_set(family, old):
    model = old_layout(tiny_model(family)) if old else tiny_model(family)
    layout = OLD if old else NEW
    tree_names = {n for n, _ in model.named_modules()}

    def want(spec):
        names = expected(family, model.config, layout, spec["finetune_vision_layers"],
                         spec["finetune_language_layers"], spec["finetune_attention_modules"],
                         spec["finetune_mlp_modules"], spec["finetune_projector"])
        assert names <= tree_names
        return names

    assert check_toggle_combinations(model, want) == 48
    full = resolve({"finetune_projector": "full"}, model)
    assert [m.name for m in full.full_modules] == [layout["merger"]]


def test_merger_is_never_vision_and_patch_embed_never_a_target(family):
    model = tiny_model(family)
    plan = resolve({"finetune_projector": "lora"}, model)
    by_component = {c: {t.name for t in plan.targets if t.component == c} for c in ("vision", "projector")}
    assert not any("merger" in n for n in by_component["vision"])
    assert by_component["projector"] == {"model.visual.merger.mlp.0", "model.visual.merger.mlp.2"}
    assert all("patch_embed" not in t.name for t in plan.targets)
    assert plan.component_params["vision"] == sum(p.numel() for p in model.model.visual.blocks.parameters())


def test_qwen2_5_vision_mlp_never_leaks_into_a_language_only_plan():
    model = tiny_model("qwen2_5_vl")
    plan = resolve({"task": "vqa"}, model)
    assert plan.targets and all(t.name.startswith("model.language_model.layers.") for t in plan.targets)
    assert {t.component for t in plan.targets} == {"language"}
    vision_only = resolve({"task": "domain_adaptation", "finetune_attention_modules": False}, model)
    assert {t.leaf for t in vision_only.targets} == {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
    assert all(t.name.startswith("model.visual.blocks.") for t in vision_only.targets)


def test_old_and_new_layouts_resolve_the_same_logical_targets(family):
    new = tiny_model(family)
    old = old_layout(tiny_model(family))
    spec = {"finetune_projector": "lora", "vision": {"layers": {"last": 2}}}

    def logical(plan):
        return sorted((t.component, t.role, t.layer, t.leaf, t.r, t.lora_params) for t in plan.targets)

    assert logical(resolve(spec, new)) == logical(resolve(spec, old))


@pytest.mark.parametrize("old", [False, True], ids=["layout-4.52+", "layout-4.46"])
def test_apply_trains_exactly_the_plan_and_backward_works(family, old):
    model = tiny_model(family)
    if old:
        model = old_layout(model)
    spec = {"r": 4, "vision": {"r": 2, "layers": [1, 2]}, "finetune_projector": "full", "init_lora_weights": False}
    plan = resolve(spec, model)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = apply(model, spec)
    trainable = {n: p for n, p in peft_model.named_parameters() if p.requires_grad}
    adapters = {n.split(".lora_")[0].removeprefix("base_model.model.") for n in trainable if ".lora_" in n}
    assert adapters == {t.name for t in plan.targets}
    assert sum(p.numel() for n, p in trainable.items() if ".lora_" in n) == sum(
        t.r * (t.in_features + t.out_features) for t in plan.targets)
    assert sum(p.numel() for p in trainable.values()) == plan.trainable_params
    assert {n for n in trainable if ".lora_" not in n} == {
        n for n in trainable if ".modules_to_save." in n}

    out = peft_model(**image_batch(tiny_config(family)))
    out.loss.backward()
    for name, param in peft_model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        else:
            assert param.grad is None, name
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            key = name.removeprefix("base_model.model.").replace(".base_layer", "")
            if key in base:
                assert torch.equal(param, base[key]), name


def test_failed_apply_leaves_the_qwen_model_unchanged(family):
    model = tiny_model(family)
    names = [(n, type(m).__name__) for n, m in model.named_modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LayerSelectionError):
        apply(model, {"language": {"layers": [0, 3]}})
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == names
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.requires_grad for p in model.parameters())


# --- full-size reference configs on the meta device --------------------------------------------------

PUBLISHED_PARAMS = {  # total parameters of the published checkpoints
    "Qwen2-VL-2B-Instruct": 2_208_985_600,
    "Qwen2-VL-7B-Instruct": 8_291_375_616,
    "Qwen2.5-VL-3B-Instruct": 3_754_622_976,
    "Qwen2.5-VL-7B-Instruct": 8_292_166_656,
}


def lora_by_component(config: dict, r: int) -> dict[str, int]:
    """LoRA parameters r*(in+out), summed from the config's dimensions alone."""
    v, qwen25 = config["vision_config"], config["model_type"] == "qwen2_5_vl"
    h, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    hd = h // heads
    inter, n_text = config["intermediate_size"], config["num_hidden_layers"]
    vd = v["hidden_size"] if qwen25 else v["embed_dim"]
    vi = v["intermediate_size"] if qwen25 else vd * v["mlp_ratio"]
    vision_attn = (vd + 3 * vd) + (vd + vd)
    vision_mlp = 3 * (vd + vi) if qwen25 else 2 * (vd + vi)
    merged = vd * v["spatial_merge_size"] ** 2
    out = v["out_hidden_size"] if qwen25 else v["hidden_size"]
    lang_attn = (h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h)
    lang_mlp = 3 * (h + inter)
    return {
        "vision": r * v["depth"] * (vision_attn + vision_mlp),
        "projector": r * ((merged + merged) + (merged + out)),
        "language": r * n_text * (lang_attn + lang_mlp),
    }


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_reference_plans(name):
    registry = default_registry()
    _, _, ref = registry.require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"r": 16, "finetune_projector": "lora"}, name)
    assert plan.total_params == PUBLISHED_PARAMS[name]
    want = lora_by_component(config, 16)
    got = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in want}
    assert got == want
    assert plan.layer_counts == {"vision": config["vision_config"]["depth"], "language": config["num_hidden_layers"]}
    by_hub_id = resolve({"r": 16, "finetune_projector": "lora"}, ref.hub_id)
    assert by_hub_id.to_dict()["targets"] == plan.to_dict()["targets"]


def test_full_size_old_layout_on_meta():
    new = reference_model("Qwen2-VL-7B-Instruct")
    plan_new = resolve({"finetune_projector": "full"}, new)
    plan_old = resolve({"finetune_projector": "full"}, old_layout(new))
    assert [(t.component, t.role, t.layer, t.leaf) for t in plan_new.targets] == [
        (t.component, t.role, t.layer, t.leaf) for t in plan_old.targets]
    assert plan_old.full_modules[0].name == "visual.merger"
    assert plan_old.full_params == plan_new.full_params > 0


def test_resolve_accepts_a_config_object(family):
    config = tiny_config(family)
    from_config = resolve({"task": "ocr"}, config)
    from_model = resolve({"task": "ocr"}, tiny_model(family))
    assert [t.to_dict() for t in from_config.targets] == [t.to_dict() for t in from_model.targets]
    assert from_config.total_params == from_model.total_params


def test_conformance(vlora_conformance, family):
    report = vlora_conformance("qwen2_vl", tiny_model(family), inputs=image_batch(tiny_config(family)),
                               layouts={"4.46": OLD_LAYOUT})
    assert report.plugin.distribution == "vlora-core"
    assert {t.component for t in report.plans["lora"].targets} == {"vision", "projector", "language"}
