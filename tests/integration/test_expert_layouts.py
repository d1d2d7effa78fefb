"""Fused expert adapters across transformers versions. Qwen3-VL-MoE's expert weights are (experts, hidden,
2 x inter) under transformers 4.57 and (experts, 2 x inter, hidden) under 5.x (measured on the published
Qwen3-VL-30B-A3B config: (128, 2048, 1536) against (128, 1536, 2048)); an adapter saved under one does not fit the
other. Here the 4.57 layout is the tiny model's expert weights transposed in place (PEFT reads only their
shapes): `adapter check` names it, `adapter migrate` rewrites the LoRA weights as the same update in the new
layout, and real PEFT agrees that each expert's delta is the old one transposed. (.ci/run does the same between
real 4.57 and 5.x environments and compares the model outputs: examples/adapters/cross_version.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from peft.tuners.lora.layer import ParamWrapper
from safetensors.torch import load_file

from vlora_core import apply, check_adapter, default_registry, migrate_adapter, read_adapter, tree_from_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from families import tiny

SPEC = {"finetune_vision_layers": False, "init_lora_weights": False}


def transposed_experts(model):
    """The model with every fused expert weight stored the other way round (the 4.57 layout of Qwen3-VL-MoE)."""
    for name, module in model.named_modules():
        if name.endswith("mlp.experts"):
            for leaf in ("gate_up_proj", "down_proj"):
                setattr(module, leaf, torch.nn.Parameter(getattr(module, leaf).detach().transpose(1, 2).contiguous()))
    return model


def deltas(peft_model) -> dict[str, torch.Tensor]:
    """Each adapted expert weight's delta, as PEFT computes it (name of the parameter -> delta)."""
    out = {}
    for name, module in peft_model.named_modules():
        if isinstance(module, ParamWrapper):
            owner = name.removeprefix("base_model.model.").replace(".base_layer", "")
            out[f"{owner}.{module.parameter_name}"] = module.get_delta_weight("default").detach()
    return out


@pytest.fixture
def saved(tmp_path):
    """An expert adapter saved on the 5.x layout, and its deltas."""
    peft_model = apply(tiny("qwen3_vl_moe"), SPEC)
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter", deltas(peft_model)


def test_nested_expert_weights_are_named_as_peft_nested_them(saved):
    folder, _ = saved
    model = tiny("qwen3_vl_moe")
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    adapter = read_adapter(folder, default_registry())  # files only: transformers' registration order
    experts = [m for m in adapter.modules if m.experts > 1]
    assert len(experts) == 6
    for m in experts:  # PEFT reads (experts, d1, d2) as d2 -> d1
        assert shapes[m.name] == (m.experts, m.out_features, m.in_features), m.name
    assert check_adapter(adapter, tree_from_module(model)).ok


def test_check_names_the_layout_and_migrate_transposes_the_update(saved, tmp_path):
    folder, before = saved
    old_layout = transposed_experts(tiny("qwen3_vl_moe"))
    registry = default_registry()
    tree = tree_from_module(old_layout)
    result = check_adapter(read_adapter(folder, registry), tree)
    assert not result.ok and len(result.transposed) == 6 and result.migratable
    assert "saved under another transformers version" in result.report()
    out = migrate_adapter(read_adapter(folder, registry), tree, tmp_path / "migrated")
    assert check_adapter(read_adapter(out, registry), tree).ok
    # real PEFT on the old layout, with the migrated weights: every expert's delta is the old one transposed
    peft_model = get_peft_model(old_layout, LoraConfig.from_pretrained(out))
    loaded = set_peft_model_state_dict(peft_model, load_file(out / "adapter_model.safetensors"))
    assert not loaded.unexpected_keys
    after = deltas(peft_model)
    assert after.keys() == before.keys()
    for name, delta in before.items():
        torch.testing.assert_close(after[name], delta.transpose(1, 2), rtol=1e-5, atol=1e-6)


def test_a_weight_of_another_size_is_no_layout_change(saved):
    folder, _ = saved
    other = tiny("qwen3_vl_moe")
    for name, module in other.named_modules():
        if name.endswith("mlp.experts"):
            module.down_proj = torch.nn.Parameter(torch.zeros(4, 32, 10))  # another intermediate size
    result = check_adapter(read_adapter(folder, default_registry()), tree_from_module(other))
    assert not result.ok and not result.transposed and not result.migratable
    assert any("the parameter is (4, 32, 10)" in why for _, why in result.mismatched)
