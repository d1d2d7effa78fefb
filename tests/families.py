"""A tiny model (random weights, CPU) of every model type a built-in plugin handles, from the builders the plugins'
own tests use (plugins/<name>/tests): the serving and merging tests run one case per family on them."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


@cache
def _builders(plugin: str, module: str) -> ModuleType:
    folder = PLUGINS / plugin / "tests"
    path = folder / f"{module}.py"
    sys.path.insert(0, str(folder))  # a builder module may import its siblings
    spec = importlib.util.spec_from_file_location(f"_tiny_{plugin}_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def _llama4():
    from transformers import Llama4ForConditionalGeneration

    return Llama4ForConditionalGeneration(_builders("llama4", "llama4_tiny").tiny_config("scout"))


# model type -> (what transformers module it needs, how to build it)
FAMILIES: dict[str, tuple[str, Callable[[], object]]] = {
    "fuyu": ("fuyu", lambda: _builders("fuyu", "test_fuyu").tiny()),
    "gemma3": ("gemma3", lambda: _builders("gemma3", "test_gemma3").tiny()),
    "gemma4": ("gemma4", lambda: _builders("gemma4", "gemma4_tiny").tiny_model("moe")),
    "idefics3": ("idefics3", lambda: _builders("idefics3", "test_idefics3").tiny("idefics3")),
    "smolvlm": ("smolvlm", lambda: _builders("idefics3", "test_idefics3").tiny("smolvlm")),
    "internvl": ("internvl", lambda: _builders("internvl", "test_internvl").tiny()),
    "llama4": ("llama4", _llama4),
    "llava": ("llava", lambda: _builders("llava", "test_llava").tiny("llava")),
    "llava_next": ("llava_next", lambda: _builders("llava", "test_llava").tiny("llava_next")),
    "llava_onevision": ("llava_onevision", lambda: _builders("llava", "test_llava").tiny("llava_onevision")),
    "mistral3": ("mistral3", lambda: _builders("mistral3", "test_mistral3").tiny("mistral3")),
    "pixtral_llava": ("pixtral", lambda: _builders("mistral3", "test_mistral3").tiny("pixtral")),
    "mllama": ("mllama", lambda: _builders("mllama", "test_mllama").tiny()),
    "paligemma": ("paligemma", lambda: _builders("paligemma", "test_paligemma").tiny()),
    "qwen2_vl": ("qwen2_vl", lambda: _builders("qwen2_vl", "qwen_tiny").tiny_model("qwen2_vl")),
    "qwen2_5_vl": ("qwen2_5_vl", lambda: _builders("qwen2_vl", "qwen_tiny").tiny_model("qwen2_5_vl")),
    "qwen3_5": ("qwen3_5", lambda: _builders("qwen3_5", "qwen35_tiny").tiny_model("qwen3_5")),
    "qwen3_5_moe": ("qwen3_5_moe", lambda: _builders("qwen3_5", "qwen35_tiny").tiny_model("qwen3_5_moe")),
    "qwen3_vl": ("qwen3_vl", lambda: _builders("qwen3_vl", "qwen3_tiny").tiny_model("qwen3_vl")),
    "qwen3_vl_moe": ("qwen3_vl_moe", lambda: _builders("qwen3_vl", "qwen3_tiny").tiny_model("qwen3_vl_moe")),
}


def tiny(family: str):
    """The tiny model of ``family`` (skips where the installed transformers has no such model)."""
    needs, build = FAMILIES[family]
    if importlib.util.find_spec(f"transformers.models.{needs}") is None:
        import pytest

        pytest.skip(f"transformers has no {needs} here")
    return build()


NO_VISION_TOWER = {"fuyu"}  # image patches go through the projector alone


def spec_for(family: str, spec: dict) -> dict:
    """``spec`` for ``family``: a family without a vision tower leaves the vision toggle out (set on, it is an
    error naming the part the model lacks)."""
    return {k: v for k, v in spec.items() if not (family in NO_VISION_TOWER and k == "finetune_vision_layers")}
