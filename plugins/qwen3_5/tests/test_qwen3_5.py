"""The Qwen3.5 / Qwen3.5-MoE plugin: linear and full attention in one stack of layers, the gates and the
depthwise convolution never targets, experts and the shared expert, full-size counts, apply + backward."""

from __future__ import annotations

import json

import pytest
from qwen35_tiny import LAYER_TYPES, image_batch, tiny_config, tiny_model

from vlora_core import LayerSelectionError, default_registry, resolve
from vlora_core.testing import check_toggle_combinations

VISION = {"attention": ["attn.qkv", "attn.proj"], "mlp": ["mlp.linear_fc1", "mlp.linear_fc2"]}
FULL = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
LINEAR = ["linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj"]
MLP = {"qwen3_5": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
       "qwen3_5_moe": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj", "mlp.shared_expert.gate_proj",
                       "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj"]}


def expected(config, family, vision, language, attention, mlp, projector) -> set[str]:
    """Target names written out from the config (layer_types decides each layer's attention), independently
    of the plugin and resolver."""
    names = set()
    if vision:
        leaves = (VISION["attention"] if attention else []) + (VISION["mlp"] if mlp else [])
        names |= {f"model.visual.blocks.{i}.{leaf}" for i in range(config.vision_config.depth) for leaf in leaves}
    if language:
        for i, kind in enumerate(config.text_config.layer_types):
            attn = FULL if kind == "full_attention" else LINEAR
            leaves = (attn if attention else []) + (MLP[family] if mlp else [])
            names |= {f"model.language_model.layers.{i}.{leaf}" for leaf in leaves}
    if projector == "lora":
        names |= {"model.visual.merger.linear_fc1", "model.visual.merger.linear_fc2"}
    return names


def test_every_combination_gives_the_exact_target_set(family):
    model = tiny_model(family)
    def want(spec):
        return expected(model.config, family, spec["finetune_vision_layers"], spec["finetune_language_layers"],
                        spec["finetune_attention_modules"], spec["finetune_mlp_modules"], spec["finetune_projector"])

    assert check_toggle_combinations(model, want) == 48


def test_two_kinds_of_attention_on_two_rows_in_one_stack(family):
    model = tiny_model(family)
    plan = resolve({"task": "vqa", "finetune_mlp_modules": False}, model)
    rows = [(r.label, r.layers) for r in plan.summary()]
    full = [i for i, kind in enumerate(LAYER_TYPES) if kind == "full_attention"]
    linear = [i for i, kind in enumerate(LAYER_TYPES) if kind == "linear_attention"]
    assert rows == [("attention", ",".join(map(str, full))), ("attention (linear)", "0-1,3")]
    assert {t.layer for t in plan.targets if t.variant == "linear"} == set(linear)
    assert plan.layer_counts["language"] == len(LAYER_TYPES)  # one stack
    last = resolve({"task": "vqa", "language": {"layers": {"last": 2}}}, model)
    assert {t.layer for t in last.targets} == {3, 4}
    with pytest.raises(LayerSelectionError, match=f"has {len(LAYER_TYPES)} layers"):
        resolve({"task": "vqa", "language": {"layers": [len(LAYER_TYPES)]}}, model)


def test_gates_and_the_depthwise_convolution_are_never_targets(family):
    model = tiny_model(family)
    plan = resolve({}, model)
    leaves = {t.leaf for t in plan.targets}
    never = {"linear_attn.in_proj_a", "linear_attn.in_proj_b", "linear_attn.conv1d", "mlp.gate",
             "mlp.shared_expert_gate"}
    assert not leaves & never
    assert plan.diagnostics == ()
    added = resolve({"target_modules_extra": [r"model\.language_model\.layers\.0\.linear_attn\.in_proj_a"]}, model)
    assert "model.language_model.layers.0.linear_attn.in_proj_a" in {t.name for t in added.targets}
    assert [d.code for d in added.diagnostics] == ["frozen-target"]


def test_moe_experts_and_the_shared_expert():
    model = tiny_model("qwen3_5_moe")
    plan = resolve({"task": "vqa", "finetune_attention_modules": False, "r": 2}, model)
    assert [r.label for r in plan.summary()] == ["mlp (experts: 4)", "mlp (shared expert)"]
    gate_up = next(t for t in plan.targets if t.leaf == "mlp.experts.gate_up_proj")
    assert gate_up.lora_params == 2 * 4 * (2 * 12 + 32)


# --- full-size reference configs on the meta device --------------------------------------------------


def lora_by_component(config: dict, r: int) -> dict[str, int]:
    """LoRA parameters, summed from the config's dimensions alone."""
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    vision = v["depth"] * ((vd + 3 * vd) + (vd + vd) + (vd + vi) + (vi + vd))
    merged = vd * v["spatial_merge_size"] ** 2
    projector = (merged + merged) + (merged + v["out_hidden_size"])
    h, heads, kv, hd = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    q_out = heads * hd * (2 if t["attn_output_gate"] else 1)  # the gated query doubles q_proj
    full = (h + q_out) + 2 * (h + kv * hd) + (heads * hd + h)
    key_dim = t["linear_num_key_heads"] * t["linear_key_head_dim"]
    value_dim = t["linear_num_value_heads"] * t["linear_value_head_dim"]
    linear = (h + 2 * key_dim + value_dim) + (h + value_dim) + (value_dim + h)
    if "num_experts" in t:
        e, mi, si = t["num_experts"], t["moe_intermediate_size"], t["shared_expert_intermediate_size"]
        mlp = e * ((h + 2 * mi) + (mi + h)) + 3 * (h + si)
    else:
        mlp = 3 * (h + t["intermediate_size"])
    kinds = t["layer_types"]
    language = sum(full if k == "full_attention" else linear for k in kinds) + len(kinds) * mlp
    return {"vision": r * vision, "projector": r * projector, "language": r * language}


# The 9B checkpoint's safetensors hold 9,653,108,208 parameters, with a multi-token-prediction head that
# transformers never builds (one full-attention decoder layer, its input projection and three norms).
PUBLISHED_9B, MTP_9B = 9_653_108_208, (4096 * 8192 + 2 * 4096 * 1024 + 4096 * 4096 + 2 * 256
                                       + 3 * 4096 * 12288 + 2 * 4096 + 2 * 4096 * 4096 + 3 * 4096)


@pytest.mark.parametrize("name", ["Qwen3.5-9B", "Qwen3.5-35B-A3B"])
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"r": 16, "finetune_projector": "lora"}, name)
    want = lora_by_component(config, 16)
    assert {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in want} == want
    assert plan.layer_counts == {"vision": config["vision_config"]["depth"],
                                 "language": config["text_config"]["num_hidden_layers"]}
    if name == "Qwen3.5-9B":
        assert abs(plan.total_params + MTP_9B - PUBLISHED_9B) < 5_000  # within 0.00005 %


def test_conformance(vlora_conformance, family):
    report = vlora_conformance("qwen3_5", tiny_model(family), inputs=image_batch(tiny_config(family)))
    assert report.plugin.distribution == "vlora-core"
    assert {t.component for t in report.plans["lora"].targets} == {"vision", "projector", "language"}
