"""The InternVL plugin: exact target sets for every toggle combination, apply and a forward/backward pass
(the conformance kit), the vision layers after the feature layer left out."""

from __future__ import annotations

import pytest
import torch
from transformers import InternVLConfig, InternVLForConditionalGeneration

from vlora_core import resolve
from vlora_core.testing import check_toggle_combinations

IMAGE = 100
VISION = dict(model_type="internvl_vision", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
              num_attention_heads=2, image_size=[16, 16], patch_size=[4, 4])


def tiny(text_type: str = "qwen2", **config):
    torch.manual_seed(0)
    text = dict(model_type=text_type, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
    return InternVLForConditionalGeneration(InternVLConfig(vision_config=VISION, text_config=text,
                                                           image_token_id=IMAGE, **config))


def inputs() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[1, 5, *[IMAGE] * 4, 6, 7, 2]])  # 4x4 patches, pixel-shuffled by 0.5: 4 tokens
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16), labels=ids)


V_ATT = ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.projection_layer"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def expected(spec: dict, vision_layers: int = 3, language_layers: int = 2) -> set[str]:
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"model.vision_tower.encoder.layer.{i}.{leaf}" for i in range(vision_layers)
                  for leaf in (V_ATT * att + V_MLP * mlp)}
    if spec["finetune_language_layers"]:
        names |= {f"model.language_model.layers.{i}.{leaf}" for i in range(language_layers)
                  for leaf in (L_ATT * att + L_MLP * mlp)}
    if spec["finetune_projector"] == "lora":
        names |= {"model.multi_modal_projector.linear_1", "model.multi_modal_projector.linear_2"}
    return names


@pytest.mark.parametrize("text_type", ["qwen2", "qwen3", "llama"])
def test_conformance(vlora_conformance, text_type):
    report = vlora_conformance("internvl", tiny(text_type), inputs=inputs())
    assert report.plans["lora"].architecture == "internvl"


@pytest.mark.parametrize("text_type", ["qwen2", "qwen3"])
def test_every_combination(text_type):
    assert check_toggle_combinations(tiny(text_type), expected) == 48


@pytest.mark.parametrize(("feature_layer", "used"), [(-1, 3), (-2, 2), (1, 1)])
def test_vision_layers_after_the_feature_layer_are_left_out(feature_layer, used):
    plan = resolve({"task": "domain_adaptation"}, tiny(vision_feature_layer=feature_layer))
    assert {t.layer for t in plan.targets} == set(range(used))
    assert [d.code for d in plan.diagnostics] == ([] if used == 3 else ["unused-layers"])


def test_the_projector_norm_is_no_target_and_trains_in_full_mode():
    plan = resolve({"finetune_projector": "full", "finetune_vision_layers": False,
                    "finetune_language_layers": False}, tiny())
    assert [m.name for m in plan.full_modules] == ["model.multi_modal_projector"] and not plan.targets
