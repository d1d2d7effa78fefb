"""Tiny Qwen3-VL / Qwen3-VL-MoE models built from their config classes (random weights, CPU)."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import (
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLMoeConfig,
    Qwen3VLMoeForConditionalGeneration,
)

IMAGE_TOKEN = 98
TOKENS = dict(image_token_id=IMAGE_TOKEN, video_token_id=97, vision_start_token_id=96, vision_end_token_id=95)
VISION = dict(depth=3, hidden_size=16, intermediate_size=24, num_heads=2, out_hidden_size=32, patch_size=4,
              spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16, deepstack_visual_indexes=[0, 1])
TEXT = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=100, rope_scaling={"rope_type": "default", "mrope_section": [2, 1, 1],
                                                      "mrope_interleaved": True})
MOE = dict(moe_intermediate_size=12, num_experts=4, num_experts_per_tok=2)


def tiny_config(family: str, **text):
    if family == "qwen3_vl":
        return Qwen3VLConfig(text_config={**TEXT, **text}, vision_config=VISION, **TOKENS)
    return Qwen3VLMoeConfig(text_config={**TEXT, **MOE, **text}, vision_config=VISION, **TOKENS)


def tiny_model(family: str, **text) -> nn.Module:
    torch.manual_seed(0)
    cls = Qwen3VLForConditionalGeneration if family == "qwen3_vl" else Qwen3VLMoeForConditionalGeneration
    return cls(tiny_config(family, **text))


def image_batch(model_config) -> dict[str, torch.Tensor]:
    """One 4x4-patch image (4 tokens after the 2x2 merge) inside a short text."""
    vc = model_config.vision_config
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    ids = torch.tensor([[1, 5, 96, *[IMAGE_TOKEN] * 4, 95, 6, 7, 2]])
    torch.manual_seed(2)
    return dict(input_ids=ids, pixel_values=torch.randn(16, patch_dim), image_grid_thw=torch.tensor([[1, 4, 4]]),
                mm_token_type_ids=(ids == IMAGE_TOKEN).long(), labels=ids)
