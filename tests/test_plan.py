"""The plan: regex exactness, the LoraConfig it emits, JSON, the table, and apply() with real PEFT."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tinyvlm import LANGUAGE_LAYERS, VISION_LAYERS, TinyVLM, batch, snapshot

from vlora_core import EmptySelectionError, LayerSelectionError, UserPatternError, apply, resolve
from vlora_core.patterns import layer_ranges


def _trainable(model) -> dict[str, int]:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def test_regex_matches_exactly_the_targets(model, registry):
    plan = resolve({"vision": {"layers": [1, 3]}, "finetune_projector": "lora",
                    "exclude_modules": [r"language\.layers\.1\.mlp\.up"]}, model, registry=registry)
    rx = re.compile(plan.target_regex)
    names = [n for n, _ in model.named_modules()]
    assert sorted(n for n in names if rx.fullmatch(n)) == sorted(t.name for t in plan.targets)
    assert plan.target_regex.startswith("^") and plan.target_regex.endswith("$")


def test_lora_config_is_fresh_and_uses_one_regex(model, registry):
    plan = resolve({"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "use_rslora": True}, model, registry=registry)
    a, b = plan.to_lora_config(), plan.to_lora_config()
    assert a is not b
    assert isinstance(a.target_modules, str) and a.target_modules == plan.target_regex
    assert (a.r, a.lora_alpha, a.lora_dropout, a.use_rslora) == (8, 16, 0.1, True)
    assert a.layers_to_transform is None and a.rank_pattern == {} and a.alpha_pattern == {}
    a.target_modules = "changed"
    assert plan.to_lora_config().target_modules == plan.target_regex


def test_per_component_rank_is_one_key_per_component(model, registry):
    plan = resolve({"r": 4, "vision": {"r": 2}, "language": {"lora_alpha": 32}}, model, registry=registry)
    config = plan.to_lora_config()
    assert len(config.rank_pattern) == 1 and list(config.rank_pattern.values()) == [2]
    assert len(config.alpha_pattern) == 1 and list(config.alpha_pattern.values()) == [32]
    peft_model = apply(model, {"r": 4, "vision": {"r": 2}, "language": {"lora_alpha": 32}}, registry=registry)
    for name, module in peft_model.named_modules():
        if name.endswith("lora_A.default"):
            want = 2 if ".vision." in name else 4
            assert module.out_features == want, name
    scaling = {n: m.scaling["default"] for n, m in peft_model.named_modules() if hasattr(m, "scaling")}
    assert all(s == (32 / 4 if ".language." in n else (16 / 2 if ".vision." in n else 16 / 4))
               for n, s in scaling.items())


def test_apply_trains_exactly_the_plan(model, registry):
    spec = {"r": 4, "vision": {"r": 2, "layers": [0, 3]}, "finetune_mlp_modules": False}
    plan = resolve(spec, model, registry=registry)
    peft_model = apply(model, spec, registry=registry)
    trainable = _trainable(peft_model)
    lora_modules = {n.split(".lora_")[0].removeprefix("base_model.model.") for n in trainable}
    assert lora_modules == {t.name for t in plan.targets}
    assert sum(trainable.values()) == sum(t.r * (t.in_features + t.out_features) for t in plan.targets)
    assert sum(trainable.values()) == plan.trainable_params
    assert peft_model.vlora_plan.targets == plan.targets


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
@pytest.mark.parametrize("projector", ["frozen", "lora", "full"])
@pytest.mark.parametrize("dora", [False, True])
def test_trainable_count_matches_for_every_mode(registry, bias, projector, dora):
    torch.manual_seed(0)
    model = TinyVLM()
    spec = {"bias": bias, "finetune_projector": projector, "use_dora": dora, "r": 2}
    plan = resolve(spec, model, registry=registry)
    peft_model = apply(model, spec, registry=registry)
    assert sum(_trainable(peft_model).values()) == plan.trainable_params
    if projector == "full":
        assert plan.full_params == sum(p.numel() for p in TinyVLM().projector.parameters())


def test_forward_backward_only_adapters_get_gradients(model, registry):
    peft_model = apply(model, {"finetune_projector": "full", "init_lora_weights": False}, registry=registry)
    pixels, ids = batch()
    peft_model(pixels, ids).float().pow(2).mean().backward()
    for name, param in peft_model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


@pytest.mark.parametrize(
    ("spec", "error"),
    [({"vision": {"layers": [42]}}, LayerSelectionError), ({"exclude_modules": ["nope"]}, UserPatternError)],
)
def test_failed_apply_leaves_the_model_unchanged(model, registry, spec, error):
    modules = [(n, type(m).__name__) for n, m in model.named_modules()]
    state = snapshot(model)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(error):
        apply(model, spec, registry=registry)
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == modules
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    after = model.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_json_is_deterministic_and_complete(registry):
    spec = {"task": "ocr", "finetune_projector": "full", "vision": {"r": 4}}
    one = resolve(spec, TinyVLM(), registry=registry).to_json()
    two = resolve(spec, TinyVLM(), registry=registry).to_json()
    assert one == two
    data = json.loads(one)
    assert data["architecture"] == "tiny" and data["plugin"] == {"distribution": "fake", "version": "0"}
    assert set(data["versions"]) == {"vlora", "plugin", "transformers", "peft"}
    assert data["spec"]["finetune_vision_layers"] is True and data["spec"]["vision"]["r"] == 4
    assert set(data["targets"][0]) >= {"name", "component", "role", "layer", "module_type", "in_features",
                                       "out_features", "r", "lora_alpha", "lora_params"}
    assert data["full_modules"] == [{"name": "projector", "component": "projector",
                                     "params": sum(p.numel() for p in TinyVLM().projector.parameters())}]
    totals = data["totals"]
    assert totals["lora_params"] == sum(t["lora_params"] for t in data["targets"])
    assert totals["trainable_params"] == totals["lora_params"] + totals["full_params"]
    assert totals["model_params"] == sum(p.numel() for p in TinyVLM().parameters())
    rows = {(r["component"], r["role"]): r for r in data["summary"]}
    assert rows[("vision", "mlp")]["layers"] == f"0-{VISION_LAYERS - 1}"
    assert rows[("language", "attention")]["modules"] == 4 * LANGUAGE_LAYERS
    assert sum(r["share"] for r in data["summary"]) == pytest.approx(1.0)


def test_table_shows_components_roles_and_totals(model, registry):
    text = resolve({"finetune_projector": "full"}, model, registry=registry).table()
    lines = text.splitlines()
    assert any(line.split()[:3] == ["vision", "attention", str(4 * VISION_LAYERS)] for line in lines)
    assert any(line.startswith("total") for line in lines)
    assert "fully trained: projector" in text
    assert "% of" in text and "model parameters" in text


def test_layer_ranges():
    assert layer_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert layer_ranges([]) == "-"
    assert layer_ranges([3]) == "3"


def test_full_projector_without_adapters_is_planned_but_not_applied(model, registry):
    spec = {"finetune_vision_layers": False, "finetune_language_layers": False, "finetune_projector": "full"}
    plan = resolve(spec, model, registry=registry)
    assert plan.targets == () and plan.trainable_params == plan.full_params > 0
    before = [(n, type(m).__name__) for n, m in model.named_modules()]
    with pytest.raises(EmptySelectionError, match="PEFT cannot build a LoRA model without one"):
        apply(model, spec, registry=registry)
    assert [(n, type(m).__name__) for n, m in model.named_modules()] == before


def test_memory_estimate_and_component_share(model, registry):
    plan = resolve({"finetune_projector": "full", "r": 2}, model, registry=registry)
    trainable = plan.lora_params + sum(p.numel() for p in TinyVLM().projector.parameters())
    assert plan.memory("bf16")["adapter_training_bytes"] == 4 * 2 * trainable
    assert plan.memory()["adapter_training_bytes"] == 4 * 4 * trainable
    total = sum(p.numel() for p in TinyVLM().parameters())
    assert plan.memory()["base_weights_bytes"] == {"bf16": 2 * total, "8-bit": total, "4-bit": total // 2}
    with pytest.raises(ValueError, match="dtype must be one of"):
        plan.memory("int3")
    vision_base = sum(p.numel() for p in TinyVLM().vision.parameters())
    row = next(r for r in plan.summary() if (r.component, r.role) == ("vision", "mlp"))
    assert row.component_share == pytest.approx(row.lora_params / vision_base)
    text = plan.table("bf16")
    assert "of component" in text and "adapter training memory (bf16 weights" in text


def test_compare_renders_plans_side_by_side(model, registry):
    from vlora_core.report import render_compare

    plans = [(task, resolve({"task": task}, model, registry=registry)) for task in ("vqa", "domain_adaptation")]
    text = render_compare(plans)
    lines = text.splitlines()
    header = next(line for line in lines if "vqa" in line)
    assert header.split() == ["vqa", "domain_adaptation"]
    vision = next(line for line in lines if line.startswith("vision attention"))
    assert vision.split()[2] == "-"  # vqa trains no vision layer
    totals = next(line for line in lines if line.startswith("LoRA parameters")).split()[2:]
    assert [int(t.replace(",", "")) for t in totals] == [p.lora_params for _, p in plans]


def test_int_pattern_matches_exactly_its_numbers():
    import random

    from vlora_core.patterns import int_pattern

    assert int_pattern(list(range(32))) == "[0-9]|[12][0-9]|3[01]"
    rng = random.Random(0)
    for _ in range(500):
        numbers = rng.sample(range(300), rng.randint(1, 80))
        rx = re.compile(f"(?:{int_pattern(numbers)})")
        assert {n for n in range(1200) if rx.fullmatch(str(n))} == set(numbers), numbers
