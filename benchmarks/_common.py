"""Shared by the benchmark scripts: timing, tiny models built from configs, and hand-written PEFT configs."""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

warnings.filterwarnings("ignore", category=FutureWarning)


def median_time(fn: Callable[[], Any], repeat: int, setup: Callable[[], Any] | None = None) -> float:
    """Median wall time of ``fn(setup())`` (or ``fn()``) over ``repeat`` runs; setup and GC are not timed."""
    return side_by_side([fn], repeat, setup)[0]


def side_by_side(fns: list[Callable[..., Any]], repeat: int, setup: Callable[[], Any] | None = None) -> list[float]:
    """Median wall times of several functions, run interleaved (a, b, a, b, ...) so that drift in the
    machine's speed hits them alike; each run gets a fresh ``setup()`` and a garbage collection first."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            arg = setup() if setup else None
            gc.collect()
            start = time.perf_counter()
            fn(arg) if setup else fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def tiny(family: str) -> nn.Module:
    """A small model of each family, random weights, on the CPU (a few million parameters)."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )

    torch.manual_seed(0)
    text = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=8, num_attention_heads=8,
                num_key_value_heads=4, vocab_size=1024)
    if family == "qwen2_vl":
        return Qwen2VLForConditionalGeneration(Qwen2VLConfig(
            text_config={**text, "rope_scaling": {"type": "mrope", "mrope_section": [8, 4, 4]}, "bos_token_id": 1,
                         "eos_token_id": 2},
            vision_config=dict(depth=8, embed_dim=128, hidden_size=256, num_heads=4, mlp_ratio=2),
            image_token_id=1000, video_token_id=1001, vision_start_token_id=1002, vision_end_token_id=1003))
    vision = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=8, num_attention_heads=4, image_size=32,
                  patch_size=8)
    if family == "llava":
        return LlavaForConditionalGeneration(LlavaConfig(
            vision_config={"model_type": "clip_vision_model", **vision, "projection_dim": 128},
            text_config={"model_type": "llama", **text}, image_token_index=1000))
    return PaliGemmaForConditionalGeneration(PaliGemmaConfig(
        vision_config={"model_type": "siglip_vision_model", **vision, "projection_dim": 256, "vision_use_head": False},
        text_config={"model_type": "gemma", **text, "head_dim": 32}, image_token_index=1000, projection_dim=256))


# What a careful user writes by hand for "both towers, attention and MLP" (one regex per family).
LANGUAGE = r"language_model\.layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
HAND_WRITTEN = {
    "qwen2_vl": rf"model\.(?:visual\.blocks\.\d+\.(?:attn\.(?:qkv|proj)|mlp\.fc[12])|{LANGUAGE})",
    "llava": rf"model\.(?:vision_tower\.(?:vision_model\.)?encoder\.layers\.\d+\.(?:self_attn\.(?:[qkv]|out)_proj"
             rf"|mlp\.fc[12])|{LANGUAGE})",
}
HAND_WRITTEN["paligemma"] = HAND_WRITTEN["llava"]
HAND_WRITTEN["llava_next"] = HAND_WRITTEN["llava"]
