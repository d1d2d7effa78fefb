"""Tiny Gemma-4 models built from the real config classes (random weights, CPU): with vision and audio
like E2B / E4B, or with vision and a mixture of experts like 26B-A4B."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import Gemma4Config, Gemma4ForConditionalGeneration

IMAGE, AUDIO, BOI, EOI, BOA, EOA = 290, 291, 292, 293, 294, 295
TEXT = dict(vocab_size=300, vocab_size_per_layer_input=300, hidden_size=32, intermediate_size=48,
            num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=16, global_head_dim=16,
            hidden_size_per_layer_input=8, sliding_window=8,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"],
            max_position_embeddings=64)
MOE = dict(hidden_size_per_layer_input=0, enable_moe_block=True, num_experts=4, top_k_experts=2,
           moe_intermediate_size=12)
VISION = dict(hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
              head_dim=8, patch_size=2, pooling_kernel_size=2, position_embedding_size=16, default_output_length=4)
AUDIO_CONFIG = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, subsampling_conv_channels=[8, 4],
                    output_proj_dims=16, num_mel_bins=8, conv_kernel_size=3, attention_chunk_size=4,
                    attention_context_left=5, attention_context_right=0)
TOKENS = dict(image_token_id=IMAGE, audio_token_id=AUDIO, boi_token_id=BOI, eoi_token_id=EOI, boa_token_id=BOA,
              eoa_token_index=EOA, video_token_id=296)


def tiny_config(kind: str = "audio") -> Gemma4Config:
    """``audio``: vision + audio towers (E2B-like); ``moe``: vision and experts, no audio (26B-A4B-like)."""
    if kind == "audio":
        return Gemma4Config(text_config=TEXT, vision_config=VISION, audio_config=AUDIO_CONFIG, **TOKENS)
    return Gemma4Config(text_config={**TEXT, **MOE}, vision_config=VISION, **TOKENS)


def tiny_model(kind: str = "audio") -> nn.Module:
    torch.manual_seed(0)
    return Gemma4ForConditionalGeneration(tiny_config(kind))


def batch(kind: str = "audio") -> dict[str, torch.Tensor]:
    """A 4x4-patch image (4 soft tokens after 2x2 pooling) and, with audio, 16 mel frames (4 soft tokens)."""
    torch.manual_seed(2)
    inputs = dict(pixel_values=torch.randn(1, 16, 3 * 2 * 2),
                  image_position_ids=torch.tensor([[[x, y] for y in range(4) for x in range(4)]]))
    ids = [1, 5, BOI, *[IMAGE] * 4, EOI, 6]
    if kind == "audio":
        inputs |= dict(input_features=torch.randn(1, 16, 8), input_features_mask=torch.ones(1, 16, dtype=torch.bool))
        ids += [BOA, *[AUDIO] * 4, EOA]
    ids = torch.tensor([[*ids, 7, 2]])
    return dict(input_ids=ids, labels=ids, **inputs)
