"""The LLaVA / LLaVA-NeXT plugin: exact target sets on every layout, unused vision layers, full-size counts."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
)

from vlora_core import default_registry, resolve
from vlora_core.testing import (
    VISION_TOWER_PATHS,
    check_toggle_combinations,
    current_vision_tower_layout,
    relayout,
    vision_tower_layouts,
)

IMAGE = 100
CLIP = dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16)
LLAMA = dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128)


SIGLIP = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
              num_attention_heads=2, image_size=8, patch_size=4)
QWEN2 = dict(model_type="qwen2", hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128)


def tiny(family: str = "llava", **config):
    torch.manual_seed(0)
    if family == "llava_onevision":  # SigLIP + Qwen2; features from the last vision layer (-1) by default
        return LlavaOnevisionForConditionalGeneration(LlavaOnevisionConfig(
            vision_config=SIGLIP, text_config=QWEN2, image_token_index=IMAGE, video_token_index=IMAGE + 1,
            image_grid_pinpoints=[[8, 8]], **config))
    if family == "llava":
        return LlavaForConditionalGeneration(LlavaConfig(vision_config=CLIP, text_config=LLAMA, image_token_index=IMAGE,
                                                         **config))
    return LlavaNextForConditionalGeneration(LlavaNextConfig(vision_config=CLIP, text_config=LLAMA,
                                                             image_token_index=IMAGE, image_grid_pinpoints=[[8, 8]],
                                                             **config))


def inputs(family: str) -> dict:
    torch.manual_seed(1)
    if family == "llava":  # 2x2 patches, CLS dropped: 4 image tokens
        ids = torch.tensor([[1, 5, *[IMAGE] * 4, 6, 7, 2]])
        return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 8, 8), labels=ids)
    ids = torch.tensor([[1, 5, *[IMAGE] * 10, 6, 7, 2]])  # base + one tile (4 + 4) and 2 newline tokens (NeXT, OV)
    return dict(input_ids=ids, pixel_values=torch.randn(1, 2, 3, 8, 8), image_sizes=torch.tensor([[8, 8]]),
                labels=ids)


V_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def expected(spec: dict, layout: str, vision_used: int, language_layers: int) -> set[str]:
    vision, projector, language = VISION_TOWER_PATHS[layout]
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"{vision}.{i}.{leaf}" for i in range(vision_used) for leaf in (V_ATT * att + V_MLP * mlp)}
    if spec["finetune_language_layers"]:
        names |= {f"{language}.{i}.{leaf}" for i in range(language_layers) for leaf in (L_ATT * att + L_MLP * mlp)}
    if spec["finetune_projector"] == "lora":
        names |= {f"{projector}.linear_1", f"{projector}.linear_2"}
    return names


@pytest.mark.parametrize("family", ["llava", "llava_next", "llava_onevision"])
def test_conformance(vlora_conformance, family):
    model = tiny(family)
    # every layout, the model's own included (the kit takes an unchanged mapping for the current layout)
    report = vlora_conformance("llava", model, inputs=inputs(family), layouts=vision_tower_layouts(model))
    assert report.plans["lora"].architecture == family
    assert set(report.layouts) == {"4.46", "4.52", "5.6"}


@pytest.mark.parametrize("family", ["llava", "llava_next", "llava_onevision"])
@pytest.mark.parametrize("layout", ["as built", "4.46", "4.52", "5.6"])
def test_every_combination_on_every_layout(family, layout):
    model = tiny(family)
    if layout == "as built":
        layout = current_vision_tower_layout(model)
    else:
        model = relayout(model, vision_tower_layouts(model)[layout])
    # vision_feature_layer -2 of 3 CLIP layers: features are hidden_states[2], the output of layer 1;
    # OneVision's -1 uses all 3 SigLIP layers
    used = 3 if family == "llava_onevision" else 2
    assert check_toggle_combinations(model, lambda spec: expected(spec, layout, used, 2)) == 48


@pytest.mark.parametrize(("feature_layer", "used"), [(-2, 2), (-1, 3), (1, 1), (2, 2), ([-3, 1], 1), ([-1, 0], 3)])
def test_vision_layers_after_the_feature_layer_are_left_out(feature_layer, used):
    model = tiny(vision_feature_layer=feature_layer)
    plan = resolve({"task": "domain_adaptation"}, model)
    assert {t.layer for t in plan.targets} == set(range(used))
    warned = [w for w in plan.warnings if "left out" in w]
    if used < 3:
        assert len(warned) == 1 and f"vision_feature_layer={feature_layer}" in warned[0]
        assert "include_unused_layers: true" in warned[0]
    else:
        assert warned == []
    forced = resolve({"task": "domain_adaptation", "include_unused_layers": True}, model)
    assert {t.layer for t in forced.targets} == {0, 1, 2}


def test_onevision_leaves_out_the_layers_after_its_feature_layer_too():
    assert {t.layer for t in resolve({"task": "domain_adaptation"}, tiny("llava_onevision")).targets} == {0, 1, 2}
    plan = resolve({"task": "domain_adaptation"}, tiny("llava_onevision", vision_feature_layer=-2))
    assert {t.layer for t in plan.targets} == {0, 1} and [d.code for d in plan.diagnostics] == ["unused-layers"]


def test_only_unused_layers_selected_is_an_error():
    from vlora_core import EmptySelectionError

    with pytest.raises(EmptySelectionError, match="layers the model never uses"):
        resolve({"task": "domain_adaptation", "vision": {"layers": [2]}}, tiny())


# --- full-size reference configs on the meta device --------------------------------------------------

REFERENCES = ["llava-1.5-7b-hf", "llava-1.5-13b-hf", "llava-v1.6-mistral-7b-hf", "llava-v1.6-vicuna-7b-hf"]
PUBLISHED = {"llava-1.5-7b-hf": 7_063_427_072}


def lora_from_dims(config: dict, r: int) -> dict[str, int]:
    """r*(in+out) summed from config.json alone (LlamaConfig / MistralConfig defaults where a key is absent)."""
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    h, inter = t.get("hidden_size", 4096), t.get("intermediate_size", 11008 if t["model_type"] == "llama" else 14336)
    heads, layers = t.get("num_attention_heads", 32), t.get("num_hidden_layers", 32)
    kv, hd = t.get("num_key_value_heads", heads), h // heads
    used = v["num_hidden_layers"] + 1 + config["vision_feature_layer"]  # layers feeding hidden_states[-2]
    return {
        "vision": r * used * (4 * 2 * vd + 2 * (vd + vi)),
        "projector": r * ((vd + h) + (h + h)),
        "language": r * layers * ((h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h) + 3 * (h + inter)),
    }


@pytest.mark.parametrize("name", REFERENCES)
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"finetune_projector": "lora", "r": 8}, name)
    got = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in ("vision", "projector", "language")}
    assert got == lora_from_dims(config, 8)
    assert plan.layer_counts == {"vision": 24, "language": config["text_config"].get("num_hidden_layers", 32)}
    if name in PUBLISHED:
        assert plan.total_params == PUBLISHED[name]


def test_cross_attention_toggle_on_llava_is_an_error():
    from vlora_core import SpecArchitectureMismatch

    with pytest.raises(SpecArchitectureMismatch) as info:
        resolve({"finetune_cross_attention": True}, "llava-1.5-7b-hf")
    assert "LLaVA-1.5 has no cross-attention layers" in str(info.value)
    assert info.value.where == "finetune_cross_attention"
