"""The Fuyu plugin: no vision tower; the patch projection is the projector, a Persimmon decoder the language
model. Exact targets for each toggle, forward and backward through ``apply`` on a tiny model, the toggle rule
for the vision tower it lacks, and the full-size default config's layer count on the meta device."""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import FuyuConfig, FuyuForCausalLM

from vlora_core import SpecArchitectureMismatch, apply, default_registry, resolve, tree_from_module

# transformers 5 takes the patches as pixel_values; 4.x as image_patches with the positions they fill
NEW_API = "image_patches_indices" not in inspect.signature(FuyuForCausalLM.forward).parameters
PATCH = 4  # pixels a side of the tiny model's patches


def tiny():
    torch.manual_seed(0)
    text = dict(model_type="persimmon", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, vocab_size=128)
    return FuyuForCausalLM(FuyuConfig(text_config=text, patch_size=PATCH, num_channels=3, image_token_id=100,
                                      hidden_size=32))


def inputs(model) -> dict:
    torch.manual_seed(1)
    image = model.config.image_token_id
    ids = torch.tensor([[image] * 4 + [5, 6, 7, 8]])
    patches = torch.randn(1, 4, PATCH * PATCH * 3)
    if NEW_API:
        return dict(input_ids=ids, pixel_values=patches, labels=ids)
    indices = torch.tensor([[0, 1, 2, 3] + [-1] * 4])  # transformers 4.x: where each patch goes
    return dict(input_ids=ids, image_patches=[patches[0]], image_patches_indices=indices, labels=ids)


def names(model, spec) -> set[str]:
    return {t.name for t in resolve(spec, tree_from_module(model), registry=default_registry()).targets}


def test_targets_per_toggle():
    model = tiny()
    modules = dict(model.named_modules())
    layers = next(n for n, m in modules.items() if n.endswith("layers") and isinstance(m, torch.nn.ModuleList))
    projector = next(n for n in modules if n.endswith("vision_embed_tokens"))
    attention = {f"{layers}.{i}.self_attn.{leaf}" for i in range(2) for leaf in ("query_key_value", "dense")}
    mlp = {f"{layers}.{i}.mlp.{leaf}" for i in range(2) for leaf in ("dense_h_to_4h", "dense_4h_to_h")}
    assert names(model, {}) == attention | mlp
    assert names(model, {"finetune_mlp_modules": False}) == attention
    assert names(model, {"finetune_projector": "lora"}) == attention | mlp | {projector}
    assert names(model, {"finetune_vision_layers": False, "finetune_projector": "lora",
                         "finetune_language_layers": False}) == {projector}


def test_the_vision_tower_it_lacks():
    model = tiny()
    plan = resolve({}, tree_from_module(model), registry=default_registry())
    assert any("no vision tower" in str(w) for w in plan.warnings)  # the plan says where images go
    with pytest.raises(SpecArchitectureMismatch, match="no vision component"):
        resolve({"finetune_vision_layers": True}, tree_from_module(model), registry=default_registry())
    off = resolve({"finetune_vision_layers": False}, tree_from_module(model), registry=default_registry())
    assert {t.name for t in off.targets} == {t.name for t in plan.targets}


@pytest.mark.parametrize("projector", ["lora", "full"])
def test_forward_and_backward_through_apply(projector):
    model = tiny()
    peft_model = apply(model, {"finetune_projector": projector})
    peft_model(**inputs(model)).loss.backward()
    grads = {n for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is not None
             and p.grad.abs().sum() > 0}
    assert any("vision_embed_tokens" in n for n in grads)  # the image path trains
    assert any("language_model" in n and "lora_B" in n for n in grads)


def test_the_full_size_default_config_on_the_meta_device():
    config = FuyuConfig()  # transformers' default: Fuyu-8B's sizes
    with torch.device("meta"):
        model = FuyuForCausalLM(config)
    plan = resolve({}, tree_from_module(model), registry=default_registry())
    assert plan.layer_counts == {"language": config.text_config.num_hidden_layers}
    assert not plan.inferred
