"""The PaliGemma / PaliGemma 2 plugin: SigLIP vision layers, one-Linear projector, Gemma or Gemma 2 decoder."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

from vlora_core import default_registry, resolve
from vlora_core.testing import (
    VISION_TOWER_PATHS,
    check_toggle_combinations,
    current_vision_tower_layout,
    relayout,
    vision_tower_layouts,
)

IMAGE = 100


def tiny(text_type: str = "gemma"):
    torch.manual_seed(0)
    text = dict(model_type=text_type, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=1, head_dim=8, vocab_size=128)
    vision = dict(model_type="siglip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                  num_attention_heads=2, image_size=8, patch_size=4, projection_dim=32, vision_use_head=False)
    return PaliGemmaForConditionalGeneration(PaliGemmaConfig(vision_config=vision, text_config=text,
                                                             image_token_index=IMAGE, projection_dim=32))


def inputs() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[*[IMAGE] * 4, 2, 5, 6, 7, 1]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 8, 8), labels=ids,
                token_type_ids=torch.tensor([[0] * 6 + [1] * 3]))


V_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def _other_layouts(model) -> dict[str, dict[str, str]]:
    """The layouts the model does not have."""
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
        names.add(f"{projector}.linear")
    return names


@pytest.mark.parametrize("text_type", ["gemma", "gemma2"])
def test_conformance(vlora_conformance, text_type):
    model = tiny(text_type)
    vlora_conformance("paligemma", model, inputs=inputs(), layouts=_other_layouts(model))


@pytest.mark.parametrize("layout", ["as built", "4.46", "4.52", "5.6"])
def test_every_combination_on_every_layout(layout):
    model = tiny()
    if layout == "as built":
        layout = current_vision_tower_layout(model)
    else:
        model = relayout(model, vision_tower_layouts(model)[layout])
    assert check_toggle_combinations(model, lambda spec: expected(spec, layout)) == 48


# --- full-size reference configs on the meta device --------------------------------------------------

REFERENCES = ["paligemma-3b-pt-224", "paligemma-3b-pt-448", "paligemma2-3b-pt-224", "paligemma2-10b-pt-224"]


def lora_from_dims(config: dict, r: int) -> dict[str, int]:
    v, t = config["vision_config"], config["text_config"]
    vd, vi = v["hidden_size"], v["intermediate_size"]
    h, inter, layers = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    heads, kv, hd = t["num_attention_heads"], t["num_key_value_heads"], t.get("head_dim", 256)
    return {
        "vision": r * v["num_hidden_layers"] * (4 * 2 * vd + 2 * (vd + vi)),
        "projector": r * (vd + config["projection_dim"]),
        "language": r * layers * ((h + heads * hd) + 2 * (h + kv * hd) + (heads * hd + h) + 3 * (h + inter)),
    }


@pytest.mark.parametrize("name", REFERENCES)
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"finetune_projector": "lora", "r": 16}, name)
    got = {c: sum(t.lora_params for t in plan.targets if t.component == c) for c in ("vision", "projector", "language")}
    assert got == lora_from_dims(config, 16)
    assert plan.layer_counts["language"] == config["text_config"]["num_hidden_layers"]
