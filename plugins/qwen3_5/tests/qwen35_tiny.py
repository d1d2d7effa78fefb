"""Tiny Qwen3.5 / Qwen3.5-MoE models built from their config classes (random weights, CPU)."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import (
    Qwen3_5Config,
    Qwen3_5ForConditionalGeneration,
    Qwen3_5MoeConfig,
    Qwen3_5MoeForConditionalGeneration,
)

IMAGE_TOKEN = 98
TOKENS = dict(image_token_id=IMAGE_TOKEN, video_token_id=97, vision_start_token_id=96, vision_end_token_id=95)
VISION = dict(depth=2, hidden_size=16, intermediate_size=24, num_heads=2, out_hidden_size=32, patch_size=4,
              spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16)
LAYER_TYPES = ["linear_attention", "linear_attention", "full_attention", "linear_attention", "full_attention"]
TEXT = dict(hidden_size=32, intermediate_size=40, num_hidden_layers=len(LAYER_TYPES), layer_types=LAYER_TYPES,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=100, linear_num_key_heads=2,
            linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
            rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 0], "mrope_interleaved": True,
                             "rope_theta": 10000, "partial_rotary_factor": 0.5})
MOE = dict(moe_intermediate_size=12, shared_expert_intermediate_size=20, num_experts=4, num_experts_per_tok=2)


def tiny_config(family: str):
    if family == "qwen3_5":
        return Qwen3_5Config(text_config=TEXT, vision_config=VISION, **TOKENS)
    text = {k: v for k, v in TEXT.items() if k != "intermediate_size"}
    return Qwen3_5MoeConfig(text_config={**text, **MOE}, vision_config=VISION, **TOKENS)


def tiny_model(family: str) -> nn.Module:
    torch.manual_seed(0)
    cls = Qwen3_5ForConditionalGeneration if family == "qwen3_5" else Qwen3_5MoeForConditionalGeneration
    return cls(tiny_config(family))


def image_batch(model_config) -> dict[str, torch.Tensor]:
    """One 4x4-patch image (4 tokens after the 2x2 merge) inside a short text."""
    vc = model_config.vision_config
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    ids = torch.tensor([[1, 5, 96, *[IMAGE_TOKEN] * 4, 95, 6, 7, 2]])
    torch.manual_seed(2)
    return dict(input_ids=ids, pixel_values=torch.randn(16, patch_dim), image_grid_thw=torch.tensor([[1, 4, 4]]),
                mm_token_type_ids=(ids == IMAGE_TOKEN).long(), labels=ids)
