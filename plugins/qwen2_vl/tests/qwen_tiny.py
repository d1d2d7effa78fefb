"""Tiny Qwen2-VL / Qwen2.5-VL models built from configs (random weights, CPU), and the old 4.46 layout."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import (
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

from vlora_core.testing import relayout

IMAGE_TOKEN = 100
TEXT = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}, bos_token_id=1, eos_token_id=2)
TOKENS = dict(image_token_id=IMAGE_TOKEN, video_token_id=101, vision_start_token_id=102, vision_end_token_id=103)


def tiny_config(family: str):
    if family == "qwen2_vl":
        vision = dict(depth=4, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=2,
                      temporal_patch_size=2, spatial_merge_size=2, in_channels=3)
        return Qwen2VLConfig(text_config=TEXT, vision_config=vision, **TOKENS)
    vision = dict(depth=4, hidden_size=16, intermediate_size=24, out_hidden_size=32, num_heads=2, patch_size=2,
                  temporal_patch_size=2, spatial_merge_size=2, in_channels=3, window_size=8,
                  fullatt_block_indexes=[1, 3])
    return Qwen2_5_VLConfig(text_config=TEXT, vision_config=vision, **TOKENS)


def tiny_model(family: str) -> nn.Module:
    torch.manual_seed(0)
    cls = Qwen2VLForConditionalGeneration if family == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    return cls(tiny_config(family))


# transformers 4.46-4.51: ``visual.*`` at the top, the language model's layers at ``model.layers.*``
OLD_LAYOUT = {"visual": "model.visual", "model": "model.language_model", "lm_head": "lm_head"}


def old_layout(model: nn.Module) -> nn.Module:
    return relayout(model, OLD_LAYOUT)


def image_batch(model_config) -> dict[str, torch.Tensor]:
    """One 4x4-patch image (4 tokens after the 2x2 merge) inside a short text."""
    vc = model_config.vision_config
    patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2
    ids = torch.tensor([[1, 5, 102, *[IMAGE_TOKEN] * 4, 103, 6, 7, 2]])
    torch.manual_seed(2)
    return dict(input_ids=ids, pixel_values=torch.randn(16, patch_dim), image_grid_thw=torch.tensor([[1, 4, 4]]),
                mm_token_type_ids=(ids == IMAGE_TOKEN).long(), labels=ids)
