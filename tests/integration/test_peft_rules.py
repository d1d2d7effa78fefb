"""PEFT's rules as vlora_core.peft writes them, checked against PEFT itself on real module trees; the config data
a plan emits, built without torch or peft; one placement for every room that asks where a module sits."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from peft.utils.other import ModulesToSaveWrapper, get_pattern_key
from transformers import LlavaConfig, LlavaForConditionalGeneration

from vlora_core import default_registry, resolve
from vlora_core.peft import base_name, pattern_value, saved_matches, target_matches, wrapped_owner
from vlora_core.placement import Placement

ROOT = Path(__file__).resolve().parents[2]


def tiny_llava() -> LlavaForConditionalGeneration:
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32,
                       "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 8, "patch_size": 4},
        text_config={"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 64},
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(config)


@pytest.fixture(scope="module")
def names() -> list[str]:
    return [n for n, _ in tiny_llava().named_modules() if n]


@pytest.mark.parametrize("target_modules", [
    ["q_proj", "v_proj"],
    ["self_attn.q_proj", "linear_1", "model.multi_modal_projector.linear_2"],
    ["proj"],  # a suffix that is no leaf: matches nothing, as in PEFT
    [r"layers\.\d+\.self_attn\.q_proj"],  # a regex inside a list is a literal suffix to PEFT
    r".*\.layers\.0\.(?:mlp\.fc1|self_attn\.k_proj)",
    r"model\.language_model\.layers\.1\.mlp\.down_proj",
])
def test_target_matches_is_peft_own_rule(names, target_modules):
    config = LoraConfig(target_modules=target_modules)
    theirs = [n for n in names if check_target_module_exists(config, n)]
    assert target_matches(target_modules, names) == theirs


@pytest.mark.parametrize("keys", [
    {"q_proj": 4, "mlp.fc1": 8},
    {r"model\.vision_tower\..*": 2, "q_proj": 4},
    {"(?:model\\.language_model\\.layers\\.(?:0)\\.self_attn\\.q_proj)": 6},
    {"proj": 3},  # "proj" alone must end the name after a dot: out_proj does not match
])
def test_pattern_value_is_peft_own_lookup(names, keys):
    for name in names:
        key = get_pattern_key(list(keys), name)
        expected = keys.get(key, 1) if key in keys else 1
        assert pattern_value(keys, name, 1) == expected, name


def test_saved_matches_is_the_modules_peft_wraps_in_full(names):
    saved = ["linear_1", "model.language_model.embed_tokens"]
    model = get_peft_model(tiny_llava(), LoraConfig(target_modules=["q_proj"], modules_to_save=saved))
    wrapped = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules()
                     if isinstance(m, ModulesToSaveWrapper))
    assert sorted(saved_matches(saved, names)) == wrapped


def test_base_name_places_every_parameter_of_a_wrapped_model(names):
    model = get_peft_model(tiny_llava(), LoraConfig(target_modules=["q_proj", "fc1"], modules_to_save=["linear_1"],
                                                    use_dora=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    bases = {base_name(n) for n in trainable}
    assert bases <= set(names)
    assert {b.rpartition(".")[2] for b in bases} == {"q_proj", "fc1", "linear_1"}
    assert wrapped_owner("a.b.base_layer.base_layer") == ("a.b", 2)
    assert wrapped_owner("a.b") == ("a.b", 0)


def test_the_config_data_is_the_lora_config_peft_gets():
    plan = resolve("examples/qwen2_vl_ocr.yaml")  # per-component ranks, the projector in full
    data = plan.lora_config_data()
    config = plan.to_lora_config()
    for key, value in data.items():
        assert getattr(config, key) == (set(value) if isinstance(getattr(config, key), set) else value), key
    rx = re.compile(data["target_modules"])
    assert all(rx.fullmatch(t.name) for t in plan.module_targets)
    assert data["rank_pattern"] and data["modules_to_save"] == [m.name for m in plan.full_modules]


def test_the_config_data_imports_neither_torch_nor_peft(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"} | {"VLORA_CACHE_DIR": str(tmp_path)}
    probe = ("import sys; from vlora_core import resolve; "
             "data = resolve('examples/qwen2_vl_ocr.yaml').lora_config_data(); "
             "print(sorted(data), sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    cold = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    warm = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
    assert "'torch'" in cold.stdout  # the first run builds the module tree
    assert warm.stdout.strip().endswith("[]"), warm.stdout
    assert "'target_modules'" in warm.stdout and "'modules_to_save'" in warm.stdout


@pytest.mark.parametrize("reference", ["Qwen2-VL-7B-Instruct", "Llama-3.2-11B-Vision", "gemma-3-4b-it",
                                       "Qwen3-VL-30B-A3B-Instruct"])
def test_every_target_holds_the_placement_its_architecture_gives_its_name(reference):
    registry = default_registry()
    plan = resolve({}, reference)
    arch = next(a for _, a in registry.architectures() if a.name == plan.architecture)
    assert plan.targets
    for t in plan.targets:
        placement = arch.place(t.name)
        assert isinstance(placement, Placement) and placement == t.placement, t.name
        assert placement.name == t.name and placement.key == t.key
        component, role, layer, stack, leaf, path = placement  # still unpacks as place() always returned
        assert (component, role, layer, stack, leaf, path) == (t.component, t.role, t.layer, t.stack, t.leaf, t.path)
