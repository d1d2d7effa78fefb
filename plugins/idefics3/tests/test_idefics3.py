"""The Idefics3 / SmolVLM plugin: the conformance kit (apply, forward and backward) on both model types, exact
target sets for every toggle combination, and the bundled SmolVLM-Instruct reference at full size."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)
from vlora_idefics3 import IDEFICS3

from vlora_core import resolve
from vlora_core.testing import check_toggle_combinations

IMAGE = 100
VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=8,
              patch_size=4)
TEXT = dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128)
FAMILIES = {
    "idefics3": (Idefics3Config, Idefics3ForConditionalGeneration),
    "smolvlm": (SmolVLMConfig, SmolVLMForConditionalGeneration),
}


def tiny(family: str):
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(0)
    return model_class(config_class(vision_config=VISION, text_config=TEXT, scale_factor=2, image_token_id=IMAGE))


def inputs() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[1, 5, IMAGE, 6, 7, 2]])  # one 8x8 image: 2x2 patches, pixel-shuffled into one token
    return {"input_ids": ids, "pixel_values": torch.randn(1, 1, 3, 8, 8), "labels": ids}


V_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"]
V_MLP = ["mlp.fc1", "mlp.fc2"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def expected(spec: dict, vision_layers: int = 3, language_layers: int = 2) -> set[str]:
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"model.vision_model.encoder.layers.{i}.{leaf}" for i in range(vision_layers)
                  for leaf in (V_ATT * att + V_MLP * mlp)}
    if spec["finetune_language_layers"]:
        names |= {f"model.text_model.layers.{i}.{leaf}" for i in range(language_layers)
                  for leaf in (L_ATT * att + L_MLP * mlp)}
    if spec["finetune_projector"] == "lora":
        names.add("model.connector.modality_projection.proj")
    return names


@pytest.mark.parametrize("family", FAMILIES)
def test_conformance(vlora_conformance, family):
    report = vlora_conformance("idefics3", tiny(family), inputs=inputs())
    assert report.plans["lora"].architecture == "idefics3"


@pytest.mark.parametrize("family", FAMILIES)
def test_every_combination(family):
    assert check_toggle_combinations(tiny(family), expected) == 48


def test_projector_in_full_mode_is_the_whole_connector():
    plan = resolve({"finetune_projector": "full", "finetune_vision_layers": False,
                    "finetune_language_layers": False}, tiny("idefics3"))
    assert [m.name for m in plan.full_modules] == ["model.connector"] and not plan.targets


def test_bundled_reference_at_full_size():
    """SmolVLM-Instruct on the meta device: every layer of both towers, with the shapes its config gives."""
    path = IDEFICS3.references[0].config_path
    config = json.loads(path.read_text())
    vision, text = config["vision_config"], config["text_config"]
    plan = resolve({"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_projector": "lora"},
                   "SmolVLM-Instruct")
    assert plan.architecture == "idefics3"
    layers = {c: {t.layer for t in plan.targets if t.component == c} for c in ("vision", "language")}
    assert layers == {"vision": set(range(vision["num_hidden_layers"])),
                      "language": set(range(text["num_hidden_layers"]))}
    shapes = {t.name: (t.in_features, t.out_features) for t in plan.targets}
    assert shapes["model.text_model.layers.0.mlp.down_proj"] == (text["intermediate_size"], text["hidden_size"])
    assert shapes["model.vision_model.encoder.layers.0.mlp.fc1"] == (vision["hidden_size"],
                                                                     vision["intermediate_size"])
    # the connector reads scale_factor**2 pixel-shuffled vision features
    assert shapes["model.connector.modality_projection.proj"] == (vision["hidden_size"] * config["scale_factor"] ** 2,
                                                                  text["hidden_size"])

