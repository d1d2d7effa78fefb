"""The Llama-4 plugin: vision adapter and projector together as the projector, experts, shared expert and
interleaved dense layers, the router refused, full-size counts of Scout and Maverick, apply + backward."""

from __future__ import annotations

import json

import pytest
from llama4_tiny import batch, tiny_model

from vlora_core import SpecArchitectureMismatch, UnsupportedModuleTypeError, default_registry, resolve
from vlora_core.testing import check_toggle_combinations

ATTENTION = [f"self_attn.{p}_proj" for p in "qkvo"]
VISION_MLP = ["mlp.fc1", "mlp.fc2"]
MOE = ["feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj"] + [
    f"feed_forward.shared_expert.{p}_proj" for p in ("gate", "up", "down")]
DENSE = [f"feed_forward.{p}_proj" for p in ("gate", "up", "down")]


def expected(config, spec) -> set[str]:
    """Target names written out from the config (interleave_moe_layer_step decides the MoE layers),
    independently of the plugin and resolver."""
    attention, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        leaves = (ATTENTION if attention else []) + (VISION_MLP if mlp else [])
        names |= {f"vision_model.model.layers.{i}.{leaf}" for i in range(config.vision_config.num_hidden_layers)
                  for leaf in leaves}
    if spec["finetune_language_layers"]:
        step = config.text_config.interleave_moe_layer_step
        for i in range(config.text_config.num_hidden_layers):
            moe = (i + 1) % step == 0
            leaves = (ATTENTION if attention else []) + ((MOE if moe else DENSE) if mlp else [])
            names |= {f"language_model.model.layers.{i}.{leaf}" for leaf in leaves}
    if spec["finetune_projector"] == "lora":
        names |= {"vision_model.vision_adapter.mlp.fc1", "vision_model.vision_adapter.mlp.fc2",
                  "multi_modal_projector.linear_1"}
    return names


@pytest.mark.parametrize("kind", ["scout", "maverick"])
def test_every_combination_gives_the_exact_target_set(kind):
    model = tiny_model(kind)
    def want(spec):
        return expected(model.config, spec)

    assert check_toggle_combinations(model, want) == 48


def test_the_vision_adapter_and_projector_are_the_projector():
    model = tiny_model("scout")
    plan = resolve({"finetune_projector": "full", "task": "vqa"}, model)
    assert [m.name for m in plan.full_modules] == ["multi_modal_projector", "vision_model.vision_adapter"]
    vision = resolve({"task": "domain_adaptation"}, model)
    assert all(t.name.startswith("vision_model.model.layers.") for t in vision.targets)  # no adapter, no patch Linear


def test_the_router_is_refused_and_the_experts_counted():
    model = tiny_model("maverick")
    with pytest.raises(UnsupportedModuleTypeError, match="the MoE router: a Llama4Router whose forward"):
        resolve({"target_modules_extra": [r"language_model\.model\.layers\.1\.feed_forward\.router"]}, model)
    plan = resolve({"task": "vqa", "finetune_attention_modules": False, "r": 2}, model)
    assert [(r.label, r.layers) for r in plan.summary()] == [
        ("mlp", "0,2"), ("mlp (experts: 4)", "1,3"), ("mlp (shared expert)", "1,3")]
    gate_up = next(t for t in plan.targets if t.leaf.endswith("gate_up_proj"))
    assert gate_up.lora_params == 2 * 4 * (16 + 2 * 8)
    with pytest.raises(SpecArchitectureMismatch, match="stack of expert weights"):
        resolve({"task": "vqa", "use_dora": True}, model)


PUBLISHED_PARAMS = {  # total parameters of the published checkpoints (their safetensors index)
    "Llama-4-Scout-17B-16E-Instruct": 108_641_793_536,
    "Llama-4-Maverick-17B-128E-Instruct": 401_583_781_376,
}


def language_lora(config: dict, r: int) -> int:
    """LoRA parameters of the language layers, from the config's dimensions alone."""
    t = config["text_config"]
    h, heads, kv, hd = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    attn = (h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h)
    e, inner, dense = t["num_local_experts"], t["intermediate_size"], t["intermediate_size_mlp"]
    moe = e * ((h + 2 * inner) + (inner + h)) + 3 * (h + inner)
    step, n = t["interleave_moe_layer_step"], t["num_hidden_layers"]
    moe_layers = sum(1 for i in range(n) if (i + 1) % step == 0)
    return r * (n * attn + moe_layers * moe + (n - moe_layers) * 3 * (h + dense))


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"r": 16}, name)
    assert plan.total_params == PUBLISHED_PARAMS[name]
    assert sum(t.lora_params for t in plan.targets if t.component == "language") == language_lora(config, 16)
    assert plan.layer_counts == {"vision": config["vision_config"]["num_hidden_layers"],
                                 "language": config["text_config"]["num_hidden_layers"]}


@pytest.mark.parametrize("kind", ["scout", "maverick"])
def test_conformance(vlora_conformance, kind):
    """apply trains exactly the plan (experts included) and a forward + backward pass reaches every adapter."""
    report = vlora_conformance("llama4", tiny_model(kind), inputs=batch())
    assert report.plugin.distribution == "vlora-core"
    assert {t.component for t in report.plans["lora"].targets} == {"vision", "projector", "language"}
