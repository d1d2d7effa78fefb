"""The Llama-3.2-Vision plugin: two vision stacks, cross-attention as its own role, a one-Linear projector."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import MllamaConfig, MllamaForConditionalGeneration

from vlora_core import LayerSelectionError, default_registry, resolve
from vlora_core.testing import check_toggle_combinations, relayout

CROSS = [1, 3]
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_global_layers=2, attention_heads=2,
              image_size=8, patch_size=4, max_num_tiles=1, intermediate_layers_indices=[0], vision_output_dim=32,
              supported_aspect_ratios=[[1, 1]])
TEXT = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=4, cross_attention_layers=CROSS,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=128, rope_scaling={"rope_type": "default"},
            bos_token_id=1, eos_token_id=2, pad_token_id=0)


def tiny():
    torch.manual_seed(0)
    return MllamaForConditionalGeneration(MllamaConfig(vision_config=VISION, text_config=TEXT, image_token_index=100))


def inputs() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[1, 100, 5, 6, 7, 2]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 1, 1, 3, 8, 8), aspect_ratio_ids=torch.tensor([[1]]),
                aspect_ratio_mask=torch.ones(1, 1, 1, dtype=torch.long),
                cross_attention_mask=torch.ones(1, 6, 1, 1, dtype=torch.long), labels=ids)


LAYOUTS = {
    "4.46": {"vision_model": "model.vision_model", "multi_modal_projector": "model.multi_modal_projector",
             "language_model.model": "model.language_model", "language_model.lm_head": "lm_head"},
}
PATHS = {
    "current": ("model.vision_model", "model.multi_modal_projector", "model.language_model.layers"),
    "4.46": ("vision_model", "multi_modal_projector", "language_model.model.layers"),
}
V_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
X_ATT = ["cross_attn.q_proj", "cross_attn.k_proj", "cross_attn.v_proj", "cross_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def expected(spec: dict, layout: str) -> set[str]:
    vision, projector, language = PATHS[layout]
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    cross = spec.get("finetune_cross_attention", att)
    names = set()
    if spec["finetune_vision_layers"]:
        for stack, n in (("transformer", VISION["num_hidden_layers"]), ("global_transformer", 2)):
            names |= {f"{vision}.{stack}.layers.{i}.{leaf}" for i in range(n) for leaf in V_ATT * att + V_MLP * mlp}
    if spec["finetune_language_layers"]:
        for i in range(TEXT["num_hidden_layers"]):
            leaves = L_MLP * mlp + (X_ATT * cross if i in CROSS else V_ATT * att)
            names |= {f"{language}.{i}.{leaf}" for leaf in leaves}
    if spec["finetune_projector"] == "lora":
        names.add(projector)
    return names


def test_conformance(vlora_conformance):
    report = vlora_conformance("mllama", tiny(), inputs=inputs(), layouts=LAYOUTS)
    roles = {(t.component, t.role) for t in report.plans["lora"].targets}
    assert ("language", "cross_attention") in roles and ("projector", "projection") in roles


@pytest.mark.parametrize("layout", ["current", "4.46"])
def test_every_combination_with_cross_attention(layout):
    model = tiny() if layout == "current" else relayout(tiny(), LAYOUTS[layout])
    checked = check_toggle_combinations(model, lambda spec: expected(spec, layout),
                                        extra={"finetune_cross_attention": [None, True, False]})
    assert checked == 48 * 3


def test_cross_attention_alone():
    plan = resolve({"task": "vqa", "finetune_attention_modules": False, "finetune_mlp_modules": False,
                    "finetune_cross_attention": True}, tiny())
    assert {t.role for t in plan.targets} == {"cross_attention"}
    assert {t.layer for t in plan.targets} == set(CROSS)


def test_vision_stacks_select_separately():
    model = tiny()
    plan = resolve({"task": "domain_adaptation", "vision": {"layers": {"global_transformer": [1]}}}, model)
    assert {(t.stack, t.layer) for t in plan.targets} == {("global_transformer", 1)}
    plan = resolve({"task": "domain_adaptation", "vision": {"layers": {"last": 1}}}, model)
    assert {(t.stack, t.layer) for t in plan.targets} == {("transformer", 2), ("global_transformer", 1)}


def test_projector_is_the_bare_linear():
    plan = resolve({"finetune_projector": "lora", "task": "vqa"}, tiny())
    projector = [t for t in plan.targets if t.component == "projector"]
    assert [(t.name, t.leaf, t.in_features, t.out_features) for t in projector] == [
        ("model.multi_modal_projector", "", 32, 32)]
    full = resolve({"finetune_projector": "full", "task": "vqa"}, tiny())
    assert [m.name for m in full.full_modules] == ["model.multi_modal_projector"]


def test_layer_out_of_range_in_the_global_transformer():
    with pytest.raises(LayerSelectionError) as info:
        resolve({"vision": {"layers": {"global_transformer": [8]}}}, "Llama-3.2-11B-Vision")
    assert "layer 8 does not exist: Llama-3.2-Vision vision global_transformer has 8 layers (0-7)" in str(info.value)
    with pytest.raises(LayerSelectionError) as info:
        resolve({"vision": {"layers": [20]}}, "Llama-3.2-11B-Vision")
    assert "global_transformer has 8 layers" in str(info.value)
    assert "select per stack" in str(info.value)


# --- full-size reference configs on the meta device --------------------------------------------------

PUBLISHED = {"Llama-3.2-11B-Vision": 10_670_220_835}


def lora_from_dims(config: dict, r: int) -> dict[str, int]:
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    h, inter, heads, kv = t["hidden_size"], t["intermediate_size"], t["num_attention_heads"], t["num_key_value_heads"]
    hd, layers = h // heads, t["num_hidden_layers"]
    attention = (h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h)
    return {
        "vision": r * (v["num_hidden_layers"] + v["num_global_layers"]) * (4 * 2 * vd + 2 * (vd + vi)),
        "projector": r * (v["vision_output_dim"] + h),
        "language": r * (layers * (attention + 3 * (h + inter))),  # self- or cross-attention: same shapes
    }


@pytest.mark.parametrize("name", ["Llama-3.2-11B-Vision", "Llama-3.2-90B-Vision"])
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"finetune_projector": "lora", "r": 16}, name)
    got = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in ("vision", "projector", "language")}
    assert got == lora_from_dims(config, 16)
    cross = {t.layer for t in plan.targets if t.role == "cross_attention"}
    assert cross == set(config["text_config"]["cross_attention_layers"])
    assert plan.layer_counts == {"vision.transformer": 32, "vision.global_transformer": 8,
                                 "language": config["text_config"]["num_hidden_layers"]}
    if name in PUBLISHED:
        assert plan.total_params == PUBLISHED[name]
