"""Tiny models shared by the adapter tests (random weights, CPU): Gemma-3, whose projector is a bare
parameter (PEFT's target_parameters)."""

from __future__ import annotations

import torch
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

GEMMA_IMAGE = 299


def gemma():
    torch.manual_seed(0)
    return Gemma3ForConditionalGeneration(Gemma3Config(
        text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=300, sliding_window=8),
        vision_config=dict(hidden_size=16, intermediate_size=24, num_hidden_layers=3, num_attention_heads=2,
                           image_size=16, patch_size=4, vision_use_head=False),
        mm_tokens_per_image=4, image_token_index=GEMMA_IMAGE, boi_token_index=297, eoi_token_index=298))


def gemma_batch() -> dict:
    torch.manual_seed(1)
    ids = torch.tensor([[2, 5, 297, *[GEMMA_IMAGE] * 4, 298, 6, 7]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16), token_type_ids=(ids == GEMMA_IMAGE).long())
