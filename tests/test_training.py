"""``param_groups`` on the tiny plain-torch VLM with real PEFT: learning rate per component and for
cross-attention, LoRA+, no weight decay on biases and norms, the spec's defaults, an exact partition."""

from __future__ import annotations

import pytest
import torch
from tinyvlm import ATTENTION, MLP_LEAVES, TinyVLM, batch, make_registry, tiny_architecture

from vlora_core import Component, SpecArchitectureMismatch, UsageError, apply, param_groups, resolve

REGISTRY = make_registry(tiny_architecture())
CROSS = make_registry(tiny_architecture(language=Component(
    name="language", prefix=r"language\.layers\.(?P<layer>\d+)",
    roles={"cross_attention": ATTENTION, "mlp": MLP_LEAVES})))


def component_of(name: str) -> str:
    """The test's own reading of the tiny model's names (no plan involved)."""
    base = name.removeprefix("base_model.model.")
    for prefix, component in (("vision.", "vision"), ("projector.", "projector"), ("language.", "language")):
        if base.startswith(prefix):
            return component
    return ""


def rates(groups) -> dict[int, tuple[float, float]]:
    return {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}


def test_the_groups_partition_the_trainable_parameters_with_a_rate_per_component():
    model = apply(TinyVLM(), {"finetune_projector": "lora", "bias": "all", "modules_to_save": ["lm_head"]},
                  registry=REGISTRY)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, lr_scale={"vision": 0.1, "projector": 10})
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(id(p) for g in groups for p in g["params"]) == sorted(id(p) for p in trainable)
    by_id = rates(groups)
    scale = {"vision": 0.1, "projector": 10.0, "language": 1.0, "": 1.0}
    for name, p in model.named_parameters():
        if p.requires_grad:
            lr, decay = by_id[id(p)]
            assert lr == pytest.approx(1e-3 * scale[component_of(name)]), name
            assert decay == (0.0 if p.ndim == 1 else 0.1), name  # biases and 1-D parameters: no decay
    assert {g["name"] for g in groups} >= {"vision", "vision no_decay", "projector", "language", "other"}


def test_lora_plus_raises_only_lora_b():
    model = apply(TinyVLM(), {}, registry=REGISTRY)
    by_id = rates(param_groups(model, lr=1e-4, loraplus_lr_ratio=16))
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert by_id[id(p)][0] == pytest.approx(1e-4 * (16 if ".lora_B." in name else 1)), name


def test_the_spec_carries_the_defaults_and_arguments_win():
    model = apply(TinyVLM(), {"lr_scale": {"language": 0.5}, "loraplus_lr_ratio": 4}, registry=REGISTRY)
    by_id = rates(param_groups(model, lr=1.0))
    for name, p in model.named_parameters():
        if p.requires_grad:
            want = (0.5 if component_of(name) == "language" else 1.0) * (4 if ".lora_B." in name else 1)
            assert by_id[id(p)][0] == pytest.approx(want), name
    overridden = rates(param_groups(model, lr=1.0, lr_scale={}, loraplus_lr_ratio=1))
    assert {lr for lr, _ in overridden.values()} == {1.0}


def test_cross_attention_scale_multiplies_its_component():
    model = apply(TinyVLM(), {}, registry=CROSS)
    by_id = rates(param_groups(model, lr=1.0, lr_scale={"language": 0.5, "cross_attention": 0.1}))
    for name, p in model.named_parameters():
        if p.requires_grad:
            cross = component_of(name) == "language" and ".attn." in name
            want = 0.05 if cross else 0.5 if component_of(name) == "language" else 1.0
            assert by_id[id(p)][0] == pytest.approx(want), name


def test_adamw_trains_with_the_groups():
    model = apply(TinyVLM(), {"lr_scale": {"vision": 0.5}}, registry=REGISTRY)
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.01))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(*batch()).square().mean().backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= {n for n, p in model.named_parameters() if p.requires_grad}


def test_scales_for_parts_the_model_lacks_are_spec_errors():
    with pytest.raises(SpecArchitectureMismatch, match="has no audio component") as info:
        resolve({"lr_scale": {"audio": 2.0}}, TinyVLM(), registry=REGISTRY)
    assert info.value.location.field == "lr_scale.audio"
    with pytest.raises(SpecArchitectureMismatch, match="has no cross-attention layers"):
        resolve({"lr_scale": {"cross_attention": 2.0}}, TinyVLM(), registry=REGISTRY)


def test_a_model_without_its_plan_is_a_clear_error():
    with pytest.raises(UsageError, match="param_groups needs the plan"):
        param_groups(TinyVLM(), lr=1e-3)
