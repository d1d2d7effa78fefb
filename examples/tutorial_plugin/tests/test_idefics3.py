"""Conformance of the tutorial plugin, on tiny Idefics3 and SmolVLM models built from configs."""

import pytest
import torch
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)

from vlora_core import resolve
from vlora_core.testing import check_plugin

VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=8,
              patch_size=4)
TEXT = dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128)
FAMILIES = {
    "idefics3": (Idefics3Config, Idefics3ForConditionalGeneration),
    "smolvlm": (SmolVLMConfig, SmolVLMForConditionalGeneration),
}


def tiny_model(family):
    config_class, model_class = FAMILIES[family]
    torch.manual_seed(0)
    config = config_class(vision_config=VISION, text_config=TEXT, scale_factor=2, image_token_id=100)
    return model_class(config)


def tiny_batch():
    ids = torch.tensor([[1, 5, 100, 6, 7, 2]])  # one image: 2x2 patches, merged 2x2 into one token
    return {"input_ids": ids, "pixel_values": torch.randn(1, 1, 3, 8, 8), "labels": ids}


@pytest.mark.parametrize("family", FAMILIES)
def test_conformance(family):
    check_plugin("vlora-idefics3", tiny_model(family), inputs=tiny_batch())


def test_bundled_reference():
    plan = resolve({"task": "vqa"}, "SmolVLM-Instruct")
    assert plan.architecture == "idefics3"
    assert {t.layer for t in plan.targets} == set(range(24))
