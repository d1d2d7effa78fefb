"""The Qwen3-VL / Qwen3-VL-MoE plugin: exact target sets, the DeepStack mergers as projector, expert weights,
full-size counts, apply + backward."""

from __future__ import annotations

import json

import pytest
from qwen3_tiny import image_batch, tiny_config, tiny_model

from vlora_core import SpecArchitectureMismatch, UnsupportedModuleTypeError, default_registry, resolve
from vlora_core.testing import check_toggle_combinations

VISION = {"attention": ["attn.qkv", "attn.proj"], "mlp": ["mlp.linear_fc1", "mlp.linear_fc2"]}
ATTENTION = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
DENSE = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def expected(config, family, vision, language, attention, mlp, projector) -> set[str]:
    """Target names written out from the config, independently of the plugin and resolver."""
    names = set()
    if vision:
        leaves = (VISION["attention"] if attention else []) + (VISION["mlp"] if mlp else [])
        names |= {f"model.visual.blocks.{i}.{leaf}" for i in range(config.vision_config.depth) for leaf in leaves}
    if language:
        dense = set(getattr(config.text_config, "mlp_only_layers", None) or [])
        for i in range(config.text_config.num_hidden_layers):
            mlp_leaves = DENSE if family == "qwen3_vl" or i in dense else EXPERTS
            leaves = (ATTENTION if attention else []) + (mlp_leaves if mlp else [])
            names |= {f"model.language_model.layers.{i}.{leaf}" for leaf in leaves}
    if projector == "lora":
        mergers = ["model.visual.merger"] + [f"model.visual.deepstack_merger_list.{i}"
                                             for i in range(len(config.vision_config.deepstack_visual_indexes))]
        names |= {f"{m}.{leaf}" for m in mergers for leaf in ("linear_fc1", "linear_fc2")}
    return names


def test_every_combination_gives_the_exact_target_set(family):
    model = tiny_model(family)
    def want(spec):
        return expected(model.config, family, spec["finetune_vision_layers"], spec["finetune_language_layers"],
                        spec["finetune_attention_modules"], spec["finetune_mlp_modules"], spec["finetune_projector"])

    assert check_toggle_combinations(model, want) == 48


def test_the_mergers_are_the_projector_and_trained_in_full_together(family):
    model = tiny_model(family)
    plan = resolve({"finetune_projector": "full", "task": "vqa"}, model)
    assert [m.name for m in plan.full_modules] == ["model.visual.deepstack_merger_list.0",
                                                   "model.visual.deepstack_merger_list.1", "model.visual.merger"]
    assert plan.full_params == sum(p.numel() for n, p in model.named_parameters()
                                   if "merger" in n)
    vision = resolve({"task": "domain_adaptation"}, model)
    assert not any("merger" in t.name or "patch_embed" in t.name for t in vision.targets)


def test_moe_experts_dense_layers_and_the_router():
    model = tiny_model("qwen3_vl_moe", mlp_only_layers=[1])
    plan = resolve({"task": "vqa", "finetune_attention_modules": False, "r": 2}, model)
    by_layer = {}
    for t in plan.targets:
        by_layer.setdefault(t.layer, set()).add(t.leaf)
    assert by_layer == {0: set(EXPERTS), 1: set(DENSE), 2: set(EXPERTS)}
    gate_up = next(t for t in plan.targets if t.leaf == "mlp.experts.gate_up_proj")
    experts, inner, hidden = 4, 12, 32
    assert (gate_up.experts, gate_up.lora_params) == (experts, 2 * experts * (2 * inner + hidden))
    assert not any(t.leaf == "mlp.gate" for t in plan.targets)
    rows = [r.label for r in plan.summary()]
    assert rows == ["mlp", "mlp (experts: 4)"]
    with pytest.raises(SpecArchitectureMismatch, match="stack of expert weights"):
        resolve({"task": "vqa", "lora_dropout": 0.05}, model)
    gate = model.get_submodule("model.language_model.layers.0.mlp.gate")
    if type(gate).__name__ != "Linear":  # transformers 5: a router holding a bare weight, not a Linear
        with pytest.raises(UnsupportedModuleTypeError):
            resolve({"target_modules_extra": [r"model\.language_model\.layers\.0\.mlp\.gate"]}, model)


# --- full-size reference configs on the meta device --------------------------------------------------

PUBLISHED_PARAMS = {  # total parameters of the published checkpoints (their safetensors index)
    "Qwen3-VL-8B-Instruct": 8_767_123_696,
    "Qwen3-VL-30B-A3B-Instruct": 31_070_754_032,
}


def lora_by_component(config: dict, r: int) -> dict[str, int]:
    """LoRA parameters, summed from the config's dimensions alone (experts: r * experts * (in + out))."""
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    vision = v["depth"] * ((vd + 3 * vd) + (vd + vd) + (vd + vi) + (vi + vd))
    merged, out = vd * v["spatial_merge_size"] ** 2, v["out_hidden_size"]
    projector = (1 + len(v["deepstack_visual_indexes"])) * ((merged + merged) + (merged + out))
    h, heads, kv, hd = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    attn = (h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h)
    if "num_experts" in t:
        e, mi = t["num_experts"], t["moe_intermediate_size"]
        mlp = e * ((h + 2 * mi) + (mi + h))
    else:
        mlp = 3 * (h + t["intermediate_size"])
    return {"vision": r * vision, "projector": r * projector, "language": r * t["num_hidden_layers"] * (attn + mlp)}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"r": 16, "finetune_projector": "lora"}, name)
    assert plan.total_params == PUBLISHED_PARAMS[name]
    want = lora_by_component(config, 16)
    assert {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in want} == want
    assert plan.layer_counts == {"vision": config["vision_config"]["depth"],
                                 "language": config["text_config"]["num_hidden_layers"]}
    memory = plan.memory()
    assert memory["adapter_training_bytes"] == 16 * plan.trainable_params


def test_conformance(vlora_conformance, family):
    report = vlora_conformance("qwen3_vl", tiny_model(family), inputs=image_batch(tiny_config(family)))
    assert report.plugin.distribution == "vlora-core"
    assert {t.component for t in report.plans["lora"].targets} == {"vision", "projector", "language"}
