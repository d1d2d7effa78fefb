"""The Gemma-3 plugin: a projector that is a bare parameter (LoRA via target_parameters, or trained in full)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

from vlora_core import SpecArchitectureMismatch, apply, default_registry, resolve
from vlora_core.testing import (
    VISION_TOWER_PATHS,
    check_toggle_combinations,
    current_vision_tower_layout,
    relayout,
    vision_tower_layouts,
)

IMAGE = 299


def tiny():
    torch.manual_seed(0)
    config = Gemma3Config(
        text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=300, sliding_window=8),
        vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=3, num_attention_heads=2,
                           image_size=16, patch_size=4, vision_use_head=False),
        mm_tokens_per_image=4, image_token_index=IMAGE, boi_token_index=297, eoi_token_index=298)
    return Gemma3ForConditionalGeneration(config)


def inputs() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[2, 5, 297, *[IMAGE] * 4, 298, 6, 7]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16), labels=ids,
                token_type_ids=(ids == IMAGE).long())


V_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def _other_layouts(model) -> dict[str, dict[str, str]]:
    """The layouts the model does not have ("4.46" is Gemma-3's first layout, 4.50 - 4.51)."""
    return {k: v for k, v in vision_tower_layouts(model).items() if k != current_vision_tower_layout(model)}


def expected(spec: dict, layout: str) -> set[str]:
    vision, projector, language = VISION_TOWER_PATHS[layout]
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"{vision}.{i}.{leaf}" for i in range(3) for leaf in V_ATT * att + V_MLP * mlp}
    if spec["finetune_language_layers"]:
        names |= {f"{language}.{i}.{leaf}" for i in range(2) for leaf in L_ATT * att + L_MLP * mlp}
    if spec["finetune_projector"] == "lora":
        names.add(f"{projector}.mm_input_projection_weight")
    return names


def test_conformance(vlora_conformance):
    model = tiny()
    report = vlora_conformance("gemma3", model, inputs=inputs(), layouts=_other_layouts(model))
    assert [t.name for t in report.plans["lora"].parameter_targets] == [
        "model.multi_modal_projector.mm_input_projection_weight"]


@pytest.mark.parametrize("layout", ["as built", "4.46", "4.52", "5.6"])
def test_every_combination_on_every_layout(layout):
    model = tiny()
    if layout == "as built":
        layout = current_vision_tower_layout(model)
    else:
        model = relayout(model, vision_tower_layouts(model)[layout])
    assert check_toggle_combinations(model, lambda spec: expected(spec, layout)) == 48


def test_projector_lora_goes_through_target_parameters_and_trains():
    model = tiny()
    spec = {"task": "vqa", "finetune_mlp_modules": False, "finetune_projector": "lora", "projector": {"r": 4}}
    plan = resolve(spec, model)
    weight = next(t for t in plan.targets if t.component == "projector")
    assert (weight.module_type, weight.in_features, weight.out_features, weight.r) == ("Parameter", 32, 16, 4)
    config = plan.to_lora_config()
    assert config.target_parameters == ["model.multi_modal_projector.mm_input_projection_weight"]
    before = model.model.multi_modal_projector.mm_input_projection_weight.detach().clone()
    peft_model = apply(model, spec)
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == plan.trainable_params
    peft_model(**inputs()).loss.backward()
    lora_b = [p for n, p in peft_model.named_parameters() if "multi_modal_projector.lora_B" in n]
    assert lora_b and lora_b[0].grad is not None and lora_b[0].grad.abs().sum() > 0
    base = [p for n, p in peft_model.named_parameters() if n.endswith("mm_input_projection_weight")
            or "mm_input_projection_weight.original" in n]
    assert len(base) == 1 and not base[0].requires_grad and torch.equal(base[0], before)


def test_projector_full_trains_the_whole_module():
    model = tiny()
    plan = resolve({"task": "vqa", "finetune_projector": "full"}, model)
    projector = model.model.multi_modal_projector
    assert [(m.name, m.params) for m in plan.full_modules] == [
        ("model.multi_modal_projector", sum(p.numel() for p in projector.parameters()))]
    peft_model = apply(model, {"task": "vqa", "finetune_projector": "full"})
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == plan.trainable_params


@pytest.mark.parametrize(("field", "value"), [("lora_dropout", 0.1), ("use_dora", True)])
def test_projector_lora_refuses_what_peft_cannot_do_on_a_parameter(field, value):
    model = tiny()
    names = [n for n, _ in model.named_modules()]
    with pytest.raises(SpecArchitectureMismatch) as info:
        apply(model, {"finetune_projector": "lora", field: value})
    text = str(info.value)
    assert "bare parameter" in text and f"does not support {field}" in text and "finetune_projector: full" in text
    assert [n for n, _ in model.named_modules()] == names  # untouched
    assert resolve({"finetune_projector": "full", field: value}, model).full_modules


# --- full-size reference configs on the meta device --------------------------------------------------

PUBLISHED = {"gemma-3-4b-it": 4_300_079_472}


def lora_from_dims(config: dict, r: int) -> dict[str, int]:
    """From config.json, with Gemma3TextConfig's defaults (8 heads, 4 KV heads, head_dim 256) where absent."""
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    heads, kv, hd = t.get("num_attention_heads", 8), t.get("num_key_value_heads", 4), t.get("head_dim", 256)
    return {
        "vision": r * v["num_hidden_layers"] * (4 * 2 * vd + 2 * (vd + vi)),
        "projector": r * (vd + h),
        "language": r * layers * ((h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h) + 3 * (h + inter)),
    }


@pytest.mark.parametrize("name", ["gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it"])
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"finetune_projector": "lora", "r": 16}, name)
    got = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in ("vision", "projector", "language")}
    assert got == lora_from_dims(config, 16)
    if name in PUBLISHED:
        assert plan.total_params == PUBLISHED[name]
