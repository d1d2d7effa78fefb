"""Conformance of the tutorial plugin, on a tiny VipLLaVA built from a config."""

import torch
from transformers import AutoConfig, VipLlavaConfig, VipLlavaForConditionalGeneration

from vlora_core import resolve
from vlora_core.testing import check_plugin

IMAGE = 100


def tiny_model(feature_layers=(-1, 1)):
    torch.manual_seed(0)
    config = VipLlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                           num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16),
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=128),
        vision_feature_layers=list(feature_layers), image_token_index=IMAGE,
    )
    return VipLlavaForConditionalGeneration(config)


def tiny_batch():
    ids = torch.tensor([[1, 5, *[IMAGE] * 4, 6, 7, 2]])  # one 8x8 image: 2x2 patches, one token each
    return {"input_ids": ids, "pixel_values": torch.randn(1, 3, 8, 8), "labels": ids}


def test_conformance():
    check_plugin("vlora-vipllava", tiny_model(), inputs=tiny_batch())


def test_vision_layers_after_the_deepest_feature_layer_are_left_out():
    plan = resolve({"task": "domain_adaptation"}, tiny_model(feature_layers=(-2, 1)))
    assert {t.layer for t in plan.targets if t.component == "vision"} == {0, 1}
    assert "unused-layers" in [d.code for d in plan.diagnostics]


def test_full_size_default_config():
    """transformers' default VipLlavaConfig on the meta device: 24 CLIP layers, the deepest read is -2."""
    plan = resolve({"finetune_vision_layers": True}, AutoConfig.for_model("vipllava"))
    assert plan.architecture == "vipllava"
    assert {t.layer for t in plan.targets if t.component == "vision"} == set(range(23))
